"""What `mtlsc compile` starts before it knows whether a delta compile will run: a child
scanning the output tree (`live_scan`) and a child importing the compiler (`compute`).

A delta compile is bound by two pieces of work that do not depend on each other: checking
the base (mostly `lstat` of every output file) and compiling the edit (mostly importing the
compiler). Starting both as the command starts puts them on the second CPU while this
process reads the policy files' identities and the run record. When the run record is
replayed, or the delta compile does not apply, they are stopped (`close`): the compile
child is killed, the scan child leaves when its pipe closes. Forked children never run exit
handlers and write nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import compute, live_scan


@dataclass(slots=True)
class Early:
    """The children started as the command starts: the output-tree scan and the compile worker."""

    scan: live_scan.Scan
    worker: compute.Worker

    def close(self) -> None:
        self.worker.close()  # first: the compile child holds a copy of the scan's pipe
        self.scan.close()


def start(root: Path, overlays: str) -> Early:
    scan = live_scan.start(root, live_scan.subdirectories(root, overlays))
    return Early(scan, compute.start())
