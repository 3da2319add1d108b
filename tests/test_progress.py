"""Progress shows on a terminal only: through a real pseudo-terminal on stderr, never in CI,
never with --quiet, and never mixed into JSON on stdout."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

MTLSC = Path(sys.executable).parent / "mtlsc"


def _run(root: Path, *args: str, ci: bool) -> tuple[str, str]:
    """Run mtlsc with stderr on a pseudo-terminal; returns (stdout, what the terminal got)."""
    leader, follower = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci:
        env["CI"] = "true"
    out_path = root / "stdout.txt"
    with out_path.open("wb") as out:  # a file, not a pipe: a full pipe would deadlock us
        proc = subprocess.Popen([str(MTLSC), *args, "--root", str(root)], stdout=out,
                                stderr=follower, env=env)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=120)
    os.close(leader)
    return out_path.read_text(), b"".join(chunks).decode("utf-8", "replace")




@pytest.mark.skipif(not MTLSC.exists(), reason="console script not installed")
def test_progress_bar_on_a_terminal_and_clean_json(example: Path) -> None:
    stdout, terminal = _run(example, "compile", "--format", "json", ci=False)
    assert "[#" in terminal and "/5 " in terminal  # 5 gateways x clusters in the example
    assert json.loads(stdout)["summary"]["errors"] == 0


@pytest.mark.skipif(not MTLSC.exists(), reason="console script not installed")
def test_no_progress_in_ci_or_with_quiet(example: Path) -> None:
    _, in_ci = _run(example, "check", ci=True)
    _, quiet = _run(example, "check", "--quiet", ci=False)
    assert "[#" not in in_ci and "[#" not in quiet
