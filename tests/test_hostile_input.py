"""Hostile policy files end fast and small: a real `mtlsc validate` process per input, run with
its address space capped at 1 GiB (RLIMIT_AS) and a wall-clock bound, must exit 1 with a located
diagnostic and no traceback. The time bound is generous (the machine may be loaded); a hang or a
memory blow-up would exceed it by orders of magnitude.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

ONE_GIB = 1024 ** 3
HEAD = "apiVersion: mtlsc.dev/v1alpha1\nkind: GatewayIntent\nmetadata: {name: gw, namespace: ns}\n"


def _laughs(levels: int = 12, width: int = 10) -> str:
    lines = [HEAD + "spec:", '  l0: &l0 "lol"']
    lines += [f"  l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]"
              for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def _write(name: str, data: str | bytes) -> Callable[[Path], None]:
    def make(policies: Path) -> None:
        (policies / name).write_bytes(data.encode() if isinstance(data, str) else data)
    return make


def _fifo(policies: Path) -> None:
    os.mkfifo(policies / "pipe.yaml")


def _zero_link(policies: Path) -> None:
    os.symlink("/dev/zero", policies / "zero.yaml")


def _fifo_inside(policies: Path) -> None:
    os.mkfifo(policies / "pipe.fifo")
    os.symlink("pipe.fifo", policies / "pipe.yaml")


def _big(policies: Path) -> None:
    with (policies / "big.yaml").open("wb") as out:
        for _ in range(50):
            out.write(b"# filler line of a fifty megabyte policy file\n" * 22_000)


HOSTILE: dict[str, tuple[Callable[[Path], None], str]] = {
    "alias-bomb": (_write("bomb.yaml", _laughs()), "YAMLTooManyNodes"),
    "50-MB-file": (_big, "FileTooLarge"),
    "1M-flow-levels": (_write("deep.yaml", HEAD + "spec: " + "[" * 1_000_000), "YAMLTooDeep"),
    "deep-lines": (_write("deep.yaml", HEAD + "spec: " + "[\n" * 400_000), "YAMLTooDeep"),
    "long-list": (_write("long.yaml", HEAD + "spec: [" + "1," * 500_000 + "]"),
                  "YAMLTooManyNodes"),
    "python-tag": (_write("tag.yaml", HEAD + "spec: !!python/object/apply:os.system [id]\n"),
                   "YAMLTag"),
    "merge-key": (_write("merge.yaml", HEAD + "spec:\n  a: &a {x: 1}\n  b: {<<: *a}\n"),
                  "YAMLMergeKey"),
    "fifo": (_fifo, "SpecialFile"),
    "link-to-fifo": (_fifo_inside, "SpecialFile"),
    "link-to-dev-zero": (_zero_link, "LinkOutsideRepository"),
    "utf-16": (_write("u16.yaml", (HEAD + "spec: {}\n").encode("utf-16")), "YAMLEncoding"),
}


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ONE_GIB, ONE_GIB))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_input_ends_fast_within_1_gib(name: str, tmp_path: Path) -> None:
    make, code = HOSTILE[name]
    policies = tmp_path / "policies"
    policies.mkdir()
    make(policies)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", "from compiler.cli import main; main()", "validate", "--root",
         str(tmp_path), "--format", "github"],
        capture_output=True, text=True, timeout=60, preexec_fn=_limit_memory, check=False)
    elapsed = time.monotonic() - started
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "MemoryError" not in done.stdout + done.stderr
    assert f"title={code}::" in done.stdout, done.stdout
    assert elapsed < 30, f"{name} took {elapsed:.1f} s"
