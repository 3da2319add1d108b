"""ObjectMeta checks the API server applies to every object, whatever its schema says.

Custom resources and ConfigMaps both require a DNS-1123 subdomain name; namespaces are
DNS-1123 labels; label and annotation keys are qualified names (optional DNS subdomain
prefix + `/` + a 63-character name), and label values are at most 63 characters.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from compiler.k8s._schema_error import SCHEMA_VIOLATION, Path, SchemaError, show

_SUBDOMAIN_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_QUALIFIED_NAME_RE = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")

_SUBDOMAIN_HINT = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                   "characters, '-' or '.', and must start and end with an alphanumeric character")
_LABEL_HINT = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters "
               "or '-', and must start and end with an alphanumeric character")
_NAME_PART_HINT = ("name part must consist of alphanumeric characters, '-', '_' or '.', and "
                   "must start and end with an alphanumeric character")
_ANNOTATIONS_MAX_BYTES = 256 * 1024


def metadata_errors(obj: Mapping[str, Any]) -> Iterator[SchemaError]:
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        return  # absence or a wrong type is already a schema violation
    yield from _name_errors(meta)
    namespace = meta.get("namespace")
    if isinstance(namespace, str) and namespace:
        yield from _invalid(("metadata", "namespace"), namespace, dns1123_label(namespace))
    yield from _label_errors(meta.get("labels"))
    yield from _annotation_errors(meta.get("annotations"))


def _name_errors(meta: Mapping[str, Any]) -> Iterator[SchemaError]:
    name = meta.get("name")
    if name is None or name == "":
        if not meta.get("generateName"):
            yield SchemaError(("metadata", "name"), "Required value: name or generateName is "
                              "required", SCHEMA_VIOLATION)
        return
    if isinstance(name, str):
        yield from _invalid(("metadata", "name"), name, dns1123_subdomain(name))


def _label_errors(labels: Any) -> Iterator[SchemaError]:
    if not isinstance(labels, Mapping):
        return
    for key, value in labels.items():
        path: Path = ("metadata", "labels", str(key))
        yield from _invalid(path, key, qualified_name(str(key)))
        if isinstance(value, str):
            yield from _invalid(path, value, label_value(value))


def _annotation_errors(annotations: Any) -> Iterator[SchemaError]:
    if not isinstance(annotations, Mapping):
        return
    total = 0
    for key, value in annotations.items():
        yield from _invalid(("metadata", "annotations", str(key)), key, qualified_name(str(key)))
        total += len(str(key).encode()) + len(str(value).encode())
    if total > _ANNOTATIONS_MAX_BYTES:
        yield SchemaError(("metadata", "annotations"), f"Too long: must have at most "
                          f"{_ANNOTATIONS_MAX_BYTES} bytes", SCHEMA_VIOLATION)


def _invalid(path: Path, value: Any, problems: list[str]) -> Iterator[SchemaError]:
    for problem in problems:
        yield SchemaError(path, f"Invalid value: {show(value)}: {problem}", SCHEMA_VIOLATION)


def dns1123_subdomain(value: str) -> list[str]:
    problems = []
    if len(value) > 253:
        problems.append("must be no more than 253 characters")
    if not _SUBDOMAIN_RE.fullmatch(value):
        problems.append(_SUBDOMAIN_HINT + " (e.g. 'example.com')")
    return problems


def dns1123_label(value: str) -> list[str]:
    problems = []
    if len(value) > 63:
        problems.append("must be no more than 63 characters")
    if not _LABEL_RE.fullmatch(value):
        problems.append(_LABEL_HINT + " (e.g. 'my-name')")
    return problems


def qualified_name(value: str) -> list[str]:
    """Label/annotation key: `[prefix/]name` with a DNS subdomain prefix."""
    prefix, slash, name = value.rpartition("/")
    if value.count("/") > 1:
        return ["a qualified name must be a name with an optional DNS subdomain prefix and '/' "
                "(e.g. 'example.com/MyName')"]
    problems = []
    if slash and not prefix:
        problems.append("prefix part must be non-empty")
    elif prefix:
        problems.extend(f"prefix part {p}" for p in dns1123_subdomain(prefix))
    if not name:
        problems.append("name part must be non-empty")
    elif len(name) > 63:
        problems.append("name part must be no more than 63 characters")
    if name and not _QUALIFIED_NAME_RE.fullmatch(name):
        problems.append(_NAME_PART_HINT)
    return problems


def label_value(value: str) -> list[str]:
    problems = []
    if len(value) > 63:
        problems.append("must be no more than 63 characters")
    if value and not _QUALIFIED_NAME_RE.fullmatch(value):
        problems.append("a valid label must be an empty string or consist of alphanumeric "
                        "characters, '-', '_' or '.', and must start and end with an "
                        "alphanumeric character")
    return problems
