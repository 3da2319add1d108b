"""Running the real `mtlsc` executable for the run-record tests, and telling a replayed run
from a compiled one (the test-only `MTLSC_TEST_RECORD_LOG` file: outcome and loaded modules)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support import REPO

MTLSC = str(Path(sys.executable).parent / "mtlsc")


@dataclass(frozen=True)
class Run:
    code: int
    stdout: bytes
    stderr: bytes
    outcome: str | None  # "hit", or why the record was not replayed; None: not looked up
    modules: tuple[str, ...]

    @property
    def shown(self) -> tuple[int, bytes, bytes]:
        """What a user sees: exit code and both streams."""
        return self.code, self.stdout, self.stderr


def mtlsc(root: Path, *args: str, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> Run:
    """The executable with `--root root`, run from `cwd` (default: this process's directory;
    a `mtlsc serve` answering there takes the command)."""
    log = root.parent / f"{root.name}-record-log.json"
    log.unlink(missing_ok=True)
    full = {k: v for k, v in os.environ.items() if not k.startswith("MTLSC_")}
    if cwd is None:  # never a server of this process's directory (the repository, say)
        full["MTLSC_NO_SERVER"] = "1"
    full.update({"MTLSC_TEST_RECORD_LOG": str(log), "CI": "1"})
    full.update(env or {})
    done = subprocess.run([MTLSC, *args[:1], "--root", str(root), *args[1:]], env=full,
                          capture_output=True, timeout=300, check=False, cwd=cwd)
    found: dict[str, Any] = json.loads(log.read_text()) if log.exists() else {}
    return Run(done.returncode, done.stdout, done.stderr, found.get("outcome"),
               tuple(found.get("modules", ())))


def both(root: Path, *args: str, env: dict[str, str] | None = None) -> tuple[Run, Run]:
    """The command with the run record, then the same command without any cache."""
    return mtlsc(root, *args, env=env), mtlsc(root, *args, "--no-cache", env=env)


def example(parent: Path, name: str = "repo") -> Path:
    root = parent / name
    shutil.copytree(REPO / "policies", root / "policies")
    return root


def record_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / ".mtlsc" / "cache" / "run").glob("*/*") if p.is_file())


def record_of(root: Path, kind: str = "run") -> dict[str, Any]:
    """The payload of the only run record (format: cache_store.EntryStore); `kind="run-files"`:
    its recorded files (run_record.FILES_KIND)."""
    [path] = sorted(p for p in (root / ".mtlsc" / "cache" / kind).glob("*/*") if p.is_file())
    payload: dict[str, Any] = json.loads(path.read_bytes().split(b"\n", 3)[3])
    return payload
