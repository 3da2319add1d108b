"""Read files as they are at a Git ref, straight from the repository's object store (no second
checkout): `git ls-tree` lists them, one `git cat-file --batch` process reads them all."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path


class GitError(Exception):
    """The repository or the ref cannot be used; the message says why."""


def _git(root: Path, *args: str, stdin: bytes | None = None) -> bytes:
    try:
        done = subprocess.run(["git", "-C", str(root), *args], input=stdin,
                              capture_output=True, check=False, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GitError(f"cannot run git: {exc}") from None
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise GitError(message[-1] if message else f"git {args[0]} failed")
    return done.stdout


def resolve(root: Path, ref: str) -> str:
    """The commit id `ref` names (a branch, tag, `HEAD~1`, `origin/main`, a sha...)."""
    try:
        return _git(root, "rev-parse", "--verify", "--quiet",
                    f"{ref}^{{commit}}").decode().strip()
    except GitError:
        _git(root, "rev-parse", "--git-dir")  # say "not a git repository" when that is why
        raise GitError(f"{ref!r} is not a commit in this repository") from None


def repo_prefix(root: Path) -> str:
    """Where `root` sits inside its repository ('' at the top), with a trailing slash."""
    return _git(root, "rev-parse", "--show-prefix").decode().strip()


def read_tree(root: Path, commit: str, paths: Sequence[str]) -> dict[str, bytes]:
    """Every file under `paths` (relative to `root`) at `commit`, keyed relative to `root`."""
    prefix = repo_prefix(root)
    listing = _git(root, "ls-tree", "-r", "-z", "--full-tree", "--name-only", commit, "--",
                   *(prefix + p for p in paths))
    names = [n.decode() for n in listing.split(b"\0") if n]
    if not names:
        return {}
    batch = _git(root, "cat-file", "--batch", stdin="".join(f"{commit}:{n}\n"
                                                            for n in names).encode())
    return {n.removeprefix(prefix): data for n, data in zip(names, _split_batch(batch),
                                                             strict=True)}


def _split_batch(output: bytes) -> list[bytes]:
    """Parse `git cat-file --batch` output: '<sha> <type> <size>\\n<content>\\n' per object."""
    blobs: list[bytes] = []
    at = 0
    while at < len(output):
        header_end = output.index(b"\n", at)
        header = output[at:header_end].split()
        if len(header) < 3:
            raise GitError(f"unexpected git output: {header!r}")
        size = int(header[2])
        start = header_end + 1
        blobs.append(output[start:start + size])
        at = start + size + 1
    return blobs
