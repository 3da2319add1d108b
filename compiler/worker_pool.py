"""Worker processes with a queue each, so that work goes to the worker that did the related
work before.

`fanout` sends a gateway's units to the same worker on every cluster (chosen by the
gateway's key): that worker's `emit_memo` holds what the gateway's objects emitted to on the
clusters before. Each worker is a `ProcessPoolExecutor` of one process, started by its first
`submit` (forked from the calling thread, see `fsops.die_with_parent`). The results do not
depend on which worker computes what: only the time does.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing.context import BaseContext
from typing import Any, TypeVar

T = TypeVar("T")


class PinnedPool:
    """`jobs` worker processes; `submit(rank, ...)` queues work for worker `rank % jobs`."""

    def __init__(self, jobs: int, context: BaseContext, initializer: Callable[..., None],
                 initargs: tuple[Any, ...]) -> None:
        self.workers = [ProcessPoolExecutor(max_workers=1, mp_context=context,
                                            initializer=initializer, initargs=initargs)
                        for _ in range(max(jobs, 1))]

    def submit(self, rank: int, fn: Callable[..., T], /, *args: Any) -> Future[T]:
        return self.workers[rank % len(self.workers)].submit(fn, *args)

    def shutdown(self, pending: Iterable[Future[Any]] = ()) -> None:
        """Stop every worker once it has finished the work it is doing; `pending`: queued
        work to cancel first (so that no worker starts more while another is stopped)."""
        for future in pending:
            future.cancel()
        for worker in self.workers:
            worker.shutdown(wait=True, cancel_futures=True)


def pinned_chunks(items: Sequence[T], key: Callable[[T], str], jobs: int,
                  size: int) -> list[tuple[int, list[T]]]:
    """`items` as (worker rank, chunk of at most `size` items), each item with the rank that
    its key's CRC-32 gives (the same on every run and in every process), the workers' chunks
    interleaved so that all workers start at once. Items keep their order within a rank."""
    shares: list[list[T]] = [[] for _ in range(max(jobs, 1))]
    for item in items:
        shares[zlib.crc32(key(item).encode("utf-8")) % len(shares)].append(item)
    rows = [[share[at:at + size] for at in range(0, len(share), size)] for share in shares]
    return [(rank, chunk) for row in itertools.zip_longest(*rows)
            for rank, chunk in enumerate(row) if chunk is not None]
