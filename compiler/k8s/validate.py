"""Validate a Kubernetes object against its schema the way the API server would.

Order of work, mirroring the API server's create path for custom resources:
1. apply schema defaults to a copy of the object;
2. OpenAPI (here: JSON Schema 2020-12) validation, reporting unknown fields that the API
   server would prune, because a pruned field in Git is drift nobody intended;
3. ObjectMeta checks (name, namespace, label and annotation syntax);
4. `x-kubernetes-list-type` map/set uniqueness;
5. `x-kubernetes-validations` CEL rules, unless step 2 found a "blocking" error (wrong
   type, enum, required, max limits), in which case the API server skips them too and
   says so.
Before steps 2, 4 and 5, the object is put to the schema compiled into Python
(`schema_codegen`): when that proves it valid, only the ObjectMeta checks remain; otherwise the
generic steps run and report exactly what they always did.
Schemas come from `SchemaStore`, which resolves the target cluster's Gateway API bundle
version and channel to the imported schema files.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

from compiler.k8s._jsonschema_support import make_validator, structural_errors
from compiler.k8s._objectmeta import metadata_errors
from compiler.k8s._schema_error import (
    CEL_RULE_VIOLATION,
    DUPLICATE_LIST_KEY,
    SCHEMA_VIOLATION,
    SchemaError,
    format_path,
)
from compiler.k8s._schema_plan import PlanNode, apply_defaults, build_plan, check
from compiler.k8s.schema_codegen import Check, compile_fast_path
from compiler.schema_roots import IMPLEMENTATION_FAMILIES, SCHEMA_FAMILY, shipped_schema_root

__all__ = [
    "CEL_RULE_VIOLATION", "DUPLICATE_LIST_KEY", "SCHEMA_VIOLATION", "KubeSchema",
    "SchemaError", "SchemaStore", "format_path", "shipped_schema_root", "validate_object",
]

CORE_FAMILY = "kubernetes"  # hand-written schemas of core kinds, valid for any bundle
RULES_SKIPPED = ("some validation rules were not checked because the object was invalid; "
                 "correct the existing errors to complete validation")

_NAME_RE = re.compile(r"[A-Za-z0-9]+")
_BUNDLE_RE = re.compile(r"v?[0-9][0-9A-Za-z.+-]*")


class KubeSchema:
    """One imported schema; its validator and rule plan are built on first use, once."""

    def __init__(self, document: Mapping[str, Any], origin: str = "<schema>") -> None:
        self.document = document
        self.origin = origin
        # Verdicts by object (exact JSON text, key order included): fleets emit the same
        # ConfigMap or ReferenceGrant for many gateways, and each is validated once.
        self.verdicts: dict[bytes, tuple[SchemaError, ...]] = {}
        self.validated = 0  # objects validated so far (`_validate` compiles the fast path late)

    @property
    def source(self) -> Mapping[str, str]:
        source = self.document.get("x-mtlsc-source")
        return source if isinstance(source, Mapping) else {}

    @cached_property
    def validator(self) -> Any:
        return make_validator(self.document)

    @cached_property
    def certainly_valid(self) -> Check:
        """The schema compiled into a fast, sound "no structural error" predicate."""
        return compile_fast_path(self.document, rules=False)

    @cached_property
    def passes_all(self) -> Check:
        """Sound "no structural error, no rule failure, no duplicate list key" predicate:
        with ObjectMeta checks, everything `validate_object` reports."""
        return compile_fast_path(self.document)

    @cached_property
    def plan(self) -> PlanNode | None:
        return build_plan(self.document)

    def __repr__(self) -> str:
        return f"KubeSchema({self.origin!r})"


FAST_AFTER = 8  # objects a schema validates the generic way before its fast path is compiled


def validate_object(schema: KubeSchema, obj: Mapping[str, Any],
                    emitted: bytes | None = None) -> list[SchemaError]:
    """Every problem the API server would report for creating `obj`, sorted by path.

    Memoized per schema on the object's exact JSON text: the verdict is a pure function of
    (schema, object). Objects that are not plain JSON data are validated every time.
    `emitted`: the SHA-256 digest of the object's emitted bytes (`emit.to_yaml`: equal for
    equal objects, different for different ones), which then serves as the key instead of
    a JSON dump made just for it."""
    if emitted is not None:
        key = b"emitted:" + emitted  # never equal to a digest of JSON text (32 bytes)
        found = schema.verdicts.get(key)
        if found is None:
            found = schema.verdicts[key] = tuple(_validate(schema, obj))
        return list(found)
    try:
        text = json.dumps(obj, ensure_ascii=False, allow_nan=False, check_circular=False)
    except (TypeError, ValueError, RecursionError):
        return _validate(schema, obj)
    key = hashlib.sha256(text.encode("utf-8")).digest()
    found = schema.verdicts.get(key)
    if found is None:
        found = schema.verdicts[key] = tuple(_validate(schema, obj))
    return list(found)


def _validate(schema: KubeSchema, obj: Mapping[str, Any]) -> list[SchemaError]:
    value = _plain(obj)
    plan = schema.plan
    apply_defaults(plan, value)
    # The generated fast path (sound: "valid" only when the generic walk finds nothing) costs
    # 5-20 ms to generate and compile per schema, several generic walks: a run that checks
    # only a few objects against a schema (a delta compile) walks them.
    fast = schema.validated >= FAST_AFTER
    schema.validated += 1
    if fast and schema.passes_all(value):  # unsure means the generic walk
        return sorted(dict.fromkeys(metadata_errors(value)), key=SchemaError.sort_key)
    errors: list[SchemaError]
    if fast and schema.certainly_valid(value):
        errors, blocking = [], False  # what the generic walk below would find, found fast
    else:
        errors, blocking = structural_errors(schema.validator, value)
    errors.extend(metadata_errors(value))
    errors.extend(check(plan, value, (), run_rules=not blocking))
    if blocking:
        errors.append(SchemaError((), RULES_SKIPPED, SCHEMA_VIOLATION))
    return sorted(dict.fromkeys(errors), key=SchemaError.sort_key)


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _plain(value: Any) -> Any:
    """A deep copy made of dicts and lists only, which is what jsonschema and CEL expect."""
    kind = type(value)
    if kind is dict:  # the common case first, without ABC checks; scalars are shared
        return {key: item if type(item) in _SCALARS else _plain(item)
                for key, item in value.items()}
    if kind is list:
        return [item if type(item) in _SCALARS else _plain(item) for item in value]
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


# ---------------------------------------------------------------------------- store


class SchemaStore:
    """Schema files under one or more roots; the first root holding a file wins."""

    def __init__(self, roots: Sequence[Path]) -> None:
        self._roots = tuple(Path(root) for root in roots)
        self._files: dict[Path, KubeSchema] = {}
        self._lookups: dict[tuple[str, str, str, str], KubeSchema | None] = {}
        self._fingerprints: dict[tuple[str, str], str] = {}

    def __reduce__(self) -> tuple[type[SchemaStore], tuple[tuple[Path, ...]]]:
        return (SchemaStore, (self._roots,))  # workers of another start method reload

    def fingerprint(self, bundle_version: str, channel: str) -> str:
        """A digest of every schema file a lookup for this bundle could read (any root)."""
        key = (bundle_version, channel)
        if key not in self._fingerprints:
            digest = hashlib.sha256()
            bundle = bundle_version if bundle_version.startswith("v") else f"v{bundle_version}"
            for index, root in enumerate(self._roots):
                dirs = [root / CORE_FAMILY]
                dirs += sorted(d for family in sorted(set(IMPLEMENTATION_FAMILIES.values()))
                               for d in (root / family).glob("*") if d.is_dir())
                if _BUNDLE_RE.fullmatch(bundle) and _NAME_RE.fullmatch(channel):
                    dirs.append(root / SCHEMA_FAMILY / bundle / channel)
                for directory in dirs:
                    files = sorted(directory.glob("*.json")) if directory.is_dir() else []
                    for path in files:
                        # root position and relative path: the digest survives moving the
                        # checkout or the virtualenv
                        digest.update(f"{index}:{path.relative_to(root).as_posix()}\0".encode())
                        digest.update(hashlib.sha256(path.read_bytes()).digest())
            self._fingerprints[key] = digest.hexdigest()
        return self._fingerprints[key]

    def get(self, bundle_version: str, channel: str, api_version: str,
            kind: str) -> KubeSchema | None:
        key = (bundle_version, channel, api_version, kind)
        if key not in self._lookups:
            self._lookups[key] = self._find(*key)
        return self._lookups[key]

    def available(self) -> list[tuple[str, str]]:
        """(bundle version, channel) pairs with at least one schema, oldest version first."""
        found = {
            (directory.parent.name, directory.name)
            for root in self._roots
            for directory in (root / SCHEMA_FAMILY).glob("*/*")
            if directory.is_dir() and any(directory.glob("*.json"))
        }
        return sorted(found, key=lambda pair: (_version_key(pair[0]), pair[1]))

    def _find(self, bundle_version: str, channel: str, api_version: str,
              kind: str) -> KubeSchema | None:
        group, _, version = api_version.rpartition("/")
        if group in IMPLEMENTATION_FAMILIES:
            candidates = self._implementation_files(IMPLEMENTATION_FAMILIES[group], version, kind)
        else:
            relative = _relative_path(bundle_version, channel, group, version, kind)
            candidates = [root / relative for root in self._roots] if relative else []
        for candidate in candidates:
            if candidate.is_file():
                schema = self._load(candidate)
                source = schema.source
                if source.get("group") == group and source.get("kind") == kind:
                    return schema
        return None

    def _implementation_files(self, family: str, version: str, kind: str) -> list[Path]:
        """An implementation's own kind: its newest imported release, first root first."""
        if not (_NAME_RE.fullmatch(version) and _NAME_RE.fullmatch(kind)):
            return []
        filename = f"{kind.lower()}.{version}.json"
        out = []
        for root in self._roots:
            found = [d / filename for d in (root / family).glob("*") if (d / filename).is_file()]
            out += sorted(found, key=lambda p: _version_key(p.parent.name), reverse=True)
        return out

    def _load(self, path: Path) -> KubeSchema:
        if path not in self._files:
            document = json.loads(path.read_text(encoding="utf-8"))
            self._files[path] = KubeSchema(document, str(path))
        return self._files[path]


def _relative_path(bundle_version: str, channel: str, group: str, version: str,
                   kind: str) -> Path | None:
    # Names become path components: accept only plain names, never separators or "..".
    if not (_NAME_RE.fullmatch(version) and _NAME_RE.fullmatch(kind)):
        return None
    filename = f"{kind.lower()}.{version}.json"
    if not group:
        return Path(CORE_FAMILY, filename)
    bundle = bundle_version if bundle_version.startswith("v") else f"v{bundle_version}"
    if not (_BUNDLE_RE.fullmatch(bundle) and _NAME_RE.fullmatch(channel)):
        return None
    return Path(SCHEMA_FAMILY, bundle, channel, filename)


def _version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    parts = re.split(r"[.+-]", version.lstrip("v"))
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in parts)
