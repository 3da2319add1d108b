"""The Argo CD and Flux examples (docs/examples/, shown in docs/gitops.md) point at exactly the
overlay directories mtlsc produces for the example policies, and kustomize builds each of them
(`kubectl kustomize`, skipped when kubectl is not on PATH)."""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from tests.support import REPO, compile_root

EXAMPLES = REPO / "docs/examples"
APPLICATIONSET = EXAMPLES / "argocd/applicationset.yaml"
FLUX = sorted((EXAMPLES / "flux").glob("*.yaml"))
GITOPS_DOC = REPO / "docs/gitops.md"


def load_all_text(text: str) -> list[Any]:
    return [doc for doc in YAML(typ="safe").load_all(text) if doc]


def load_all(path: Path) -> list[Any]:
    return load_all_text(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def produced(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository root holding the overlays compiled from a copy of the example policies."""
    root = tmp_path_factory.mktemp("gitops") / "repo"
    shutil.copytree(REPO / "policies", root / "policies")
    result = compile_root(root)
    assert result.ok, [str(d.location) + " " + d.message for d in result.diagnostics]
    for rel, data in result.files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def cluster_dirs(root: Path) -> set[str]:
    return {p.parent.relative_to(root).as_posix()
            for p in root.glob("overlays/*/kustomization.yaml")}


def test_the_example_produces_four_cluster_overlays(produced: Path) -> None:
    assert cluster_dirs(produced) == {"overlays/demo", "overlays/prod-eu", "overlays/prod-us",
                                      "overlays/staging"}
    assert cluster_dirs(REPO) == cluster_dirs(produced)  # the committed overlays too


# --- Argo CD -------------------------------------------------------------------------------------


def test_applicationset_parses() -> None:
    (appset,) = load_all(APPLICATIONSET)
    assert appset["apiVersion"] == "argoproj.io/v1alpha1"
    assert appset["kind"] == "ApplicationSet"
    assert appset["spec"]["goTemplate"] is True


def test_applicationset_generator_matches_exactly_the_cluster_overlays(produced: Path) -> None:
    (appset,) = load_all(APPLICATIONSET)
    (generator,) = appset["spec"]["generators"]
    directories = generator["git"]["directories"]
    include = [d["path"] for d in directories if not d.get("exclude")]
    exclude = [d["path"] for d in directories if d.get("exclude")]
    assert include == ["overlays/*"]
    for root in (produced, REPO):
        # Argo CD matches each pattern against repository directories, `*` within one level.
        candidates = {p.relative_to(root).as_posix() for p in root.glob("*/*") if p.is_dir()}
        matched = {d for d in candidates
                   if any(fnmatch.fnmatchcase(d, pattern) for pattern in include)
                   and not any(fnmatch.fnmatchcase(d, pattern) for pattern in exclude)}
        assert matched == cluster_dirs(root), root


def test_applicationset_template_is_one_application_per_overlay() -> None:
    (appset,) = load_all(APPLICATIONSET)
    template = appset["spec"]["template"]
    generator_repo = appset["spec"]["generators"][0]["git"]["repoURL"]
    assert template["metadata"]["name"] == "mtlsc-{{.path.basename}}"
    source = template["spec"]["source"]
    assert source["repoURL"] == generator_repo
    assert source["path"] == "{{.path.path}}"
    assert template["spec"]["destination"] == {"name": "{{.path.basename}}"}
    assert template["spec"]["syncPolicy"]["automated"]["prune"] is True


def render_application(appset: dict[str, Any], directory: str) -> dict[str, Any]:
    """The Application the git directory generator makes for `directory` (only the two
    parameters the template uses)."""
    params = {"{{.path.path}}": directory, "{{.path.basename}}": directory.rsplit("/", 1)[-1]}

    def fill(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fill(v) for v in value]
        if isinstance(value, str):
            for key, param in params.items():
                value = value.replace(key, param)
            assert "{{" not in value, value
        return value

    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            **fill(appset["spec"]["template"])}


def test_generated_applications_are_named_after_their_cluster(produced: Path) -> None:
    (appset,) = load_all(APPLICATIONSET)
    apps = [render_application(appset, d) for d in sorted(cluster_dirs(produced))]
    assert [(a["metadata"]["name"], a["spec"]["source"]["path"],
             a["spec"]["destination"]["name"]) for a in apps] == [
        ("mtlsc-demo", "overlays/demo", "demo"),
        ("mtlsc-prod-eu", "overlays/prod-eu", "prod-eu"),
        ("mtlsc-prod-us", "overlays/prod-us", "prod-us"),
        ("mtlsc-staging", "overlays/staging", "staging"),
    ]


# --- Flux ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", FLUX, ids=lambda p: p.name)
def test_flux_file_is_a_source_and_a_kustomization_for_its_cluster(path: Path) -> None:
    source, kustomization = load_all(path)
    assert (source["apiVersion"], source["kind"]) == ("source.toolkit.fluxcd.io/v1",
                                                      "GitRepository")
    assert (kustomization["apiVersion"], kustomization["kind"]) == (
        "kustomize.toolkit.fluxcd.io/v1", "Kustomization")
    spec = kustomization["spec"]
    assert spec["path"] == f"./overlays/{path.stem}"
    assert spec["prune"] is True
    assert spec["sourceRef"] == {"kind": "GitRepository", "name": source["metadata"]["name"]}
    assert kustomization["metadata"]["namespace"] == source["metadata"]["namespace"]


def test_flux_files_cover_exactly_the_cluster_overlays(produced: Path) -> None:
    paths = {load_all(p)[1]["spec"]["path"].removeprefix("./") for p in FLUX}
    assert paths == cluster_dirs(produced)


def test_flux_files_differ_only_in_the_cluster_name() -> None:
    reference = (EXAMPLES / "flux/prod-eu.yaml").read_text(encoding="utf-8")
    for path in FLUX:
        assert path.read_text(encoding="utf-8") == reference.replace("prod-eu", path.stem)


# --- kustomize -----------------------------------------------------------------------------------


def _referenced() -> list[str]:
    (appset,) = load_all(APPLICATIONSET)
    from_argo = [render_application(appset, f"overlays/{p.stem}")["spec"]["source"]["path"]
                 for p in FLUX]
    from_flux = [load_all(p)[1]["spec"]["path"].removeprefix("./") for p in FLUX]
    assert sorted(from_argo) == sorted(from_flux)
    return sorted(from_flux)


@pytest.mark.parametrize("overlay", _referenced())
def test_kustomize_builds_the_referenced_overlay(overlay: str, produced: Path) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not on PATH")
    done = subprocess.run([kubectl, "kustomize", str(produced / overlay)], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    objects = load_all_text(done.stdout)
    kinds = {o["kind"] for o in objects}
    assert {"Gateway", "ConfigMap"} <= kinds
    envoy = [o["metadata"]["name"] for o in objects
             if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("envoy-")]
    assert envoy and all(len(name.rsplit("-", 1)[-1]) == 10 for name in envoy), envoy
    assert all(o["metadata"].get("namespace") for o in objects), "every object has a namespace"


# --- the documentation shows the same files ------------------------------------------------------


def _body(path: Path) -> str:
    """The file without its leading comment lines, as docs/gitops.md shows it."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    return "".join(lines)


@pytest.mark.parametrize("path", [APPLICATIONSET, EXAMPLES / "flux/prod-eu.yaml"],
                         ids=lambda p: p.relative_to(EXAMPLES).as_posix())
def test_docs_show_the_example_files(path: Path) -> None:
    doc = GITOPS_DOC.read_text(encoding="utf-8")
    assert _body(path) in doc
    assert path.relative_to(REPO).as_posix().removeprefix("docs/") in doc
