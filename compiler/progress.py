"""Progress over gateways x clusters for long runs: on a terminal only, on stderr only, never
in CI or with --quiet, so machine-readable stdout (JSON, SARIF, Markdown) stays clean."""

from __future__ import annotations

import os
import sys
from typing import Protocol, TextIO


class Progress(Protocol):
    def begin(self, total: int) -> None: ...
    def step(self, label: str) -> None: ...
    def end(self) -> None: ...


class Silent:
    def begin(self, total: int) -> None:
        return

    def step(self, label: str) -> None:
        return

    def end(self) -> None:
        return


class Bar:
    """A one-line bar redrawn in place with carriage returns."""

    WIDTH = 30

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._total = 0
        self._done = 0

    def begin(self, total: int) -> None:
        self._total, self._done = total, 0

    def step(self, label: str) -> None:
        self._done += 1
        filled = self.WIDTH * self._done // max(self._total, 1)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        self._stream.write(f"\r[{bar}] {self._done}/{self._total} {label[:40]:<40}")
        self._stream.flush()

    def end(self) -> None:
        if self._total:
            self._stream.write("\r" + " " * (self.WIDTH + 90) + "\r")
            self._stream.flush()


def for_terminal(quiet: bool, stream: TextIO | None = None) -> Progress:
    stream = stream or sys.stderr
    in_ci = bool(os.environ.get("CI"))
    if quiet or in_ci or not stream.isatty():
        return Silent()
    return Bar(stream)
