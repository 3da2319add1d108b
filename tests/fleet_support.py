"""A small generated fleet (bench/fleet_gen.py) compiled in-process, for the cache, parallel
and sharding tests."""

from __future__ import annotations

from pathlib import Path

from bench.fleet_gen import intent_path, intent_yaml, write_fleet
from compiler.diagnostics import Diagnostic
from compiler.k8s.validate import SchemaStore
from compiler.load import read_policy_files
from compiler.pipeline import ClusterSink, Options, Result, compile_policies, schema_roots
from compiler.secrets.factory import source_factory
from tests.support import NOW, REPO

INTENTS, CLUSTERS = 14, 3
EDITS = ("hostname", "mode", "add", "remove", "override", "cluster", "ca", "break")


def make_fleet(root: Path, intents: int = INTENTS, clusters: int = CLUSTERS) -> Path:
    write_fleet(root, intents, clusters)
    return root


def compile_fleet(root: Path, sink: ClusterSink | None = None, **options: object) -> Result:
    texts = read_policy_files(root / "policies", root)
    store = SchemaStore(schema_roots(REPO))
    result = compile_policies(texts, source_factory(root), store,
                              Options(**{"now": NOW, **options}),  # type: ignore[arg-type]
                              sink=sink)
    assert result.policies is not None
    return result


def outcome(result: Result) -> tuple[dict[str, bytes], list[Diagnostic]]:
    return result.files, result.diagnostics


def _swap(path: Path, old: str, new: str) -> None:
    if path.exists():
        body = path.read_text(encoding="utf-8")
        path.write_text(body.replace(old, new, 1), encoding="utf-8")


def apply_edit(root: Path, kind: str, i: int, step: int) -> None:
    """One edit of the kinds a pull request makes, on intent `i` where it concerns one."""
    intent = intent_path(root, i)
    if kind == "hostname":
        _swap(intent, f"hostname: gw-{i}.", f"hostname: gw-{i}-e{step}.")
    elif kind == "mode":
        body = intent.read_text(encoding="utf-8") if intent.exists() else ""
        a, b = "mode: AllowValidOnly", "mode: AllowInsecureFallback"
        _swap(intent, *((a, b) if a in body else (b, a)))
    elif kind == "add":
        extra = INTENTS + step
        intent_path(root, extra).parent.mkdir(parents=True, exist_ok=True)
        intent_path(root, extra).write_text(intent_yaml(extra), encoding="utf-8")
    elif kind == "remove":
        intent.unlink(missing_ok=True)
    elif kind == "override":
        (root / "policies" / "overrides" / f"edit-{step}.yaml").write_text(
            "apiVersion: mtlsc.dev/v1alpha1\nkind: GatewayOverride\n"
            f"metadata: {{name: edit-{step}}}\nspec:\n"
            f"  gateway: {{name: gw-{i}, namespace: team-{i}}}\n  cluster: c{step % CLUSTERS}\n"
            "  patch:\n    clientValidation:\n      default: {mode: AllowInsecureFallback}\n",
            encoding="utf-8")
    elif kind == "cluster":
        _swap(root / "policies" / "clusters.yaml", "namespaces: [shared-cas]",
              f"namespaces: [shared-cas, extra-{step}]")
    elif kind == "ca":
        ca = root / "pki" / f"ns-ca-{i}.pem"
        ca.write_bytes((root / "pki" / "corp-ca.pem").read_bytes())
    elif kind == "break":  # a schema violation: the compile stops after reading the files
        _swap(intent, "protocol: HTTPS", "protocol: HTTPSS")
    elif kind == "unknown-bundle":  # an error found once resolved: the compile stops there
        _swap(intent, "caBundles: [", "caBundles: [no-such-ca, ")
    elif kind == "override-edit":  # the intent's own override file (gw-0 has one)
        _swap(root / "policies" / "overrides" / f"gw-{i}.yaml", f"hostname: edge-{i}.",
              f"hostname: edge-{i}-e{step}.")
    elif kind == "route":  # one more object file on every cluster
        body = intent.read_text(encoding="utf-8")
        if "  routes:\n" not in body:
            body += "  routes:\n"
        intent.write_text(body + f"  - name: extra-{step}\n    hostnames: [gw-{i}.fleet.example]\n"
                          f"    pathPrefix: /extra{step}\n    backends:\n"
                          f"    - {{service: extra-{step}, port: 8080}}\n", encoding="utf-8")
    elif kind == "bundle":  # another CA bundle: what is fetched and checked changes
        _swap(intent, "caBundles: [", "caBundles: [ns-ca-39, ")
    elif kind == "rename":
        _swap(intent, f"name: gw-{i}\n", f"name: gw-{i}-renamed\n")
