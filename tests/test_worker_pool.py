"""`worker_pool`: work pinned to a worker by key, in interleaved chunks."""

from __future__ import annotations

import zlib

from hypothesis import given
from hypothesis import strategies as st

from compiler.worker_pool import pinned_chunks


@given(st.lists(st.text(max_size=8)), st.integers(1, 4), st.integers(1, 5))
def test_every_item_once_with_its_keys_worker_in_order(items: list[str], jobs: int,
                                                       size: int) -> None:
    chunks = pinned_chunks(items, lambda item: item, jobs, size)
    assert sorted(item for _, chunk in chunks for item in chunk) == sorted(items)
    for rank in range(jobs):
        mine = [item for r, chunk in chunks if r == rank for item in chunk]
        assert mine == [item for item in items
                        if zlib.crc32(item.encode("utf-8")) % jobs == rank]
    assert all(0 < len(chunk) <= size for _, chunk in chunks)


def test_the_same_key_goes_to_the_same_worker_whatever_else_is_queued() -> None:
    first = dict((key, rank) for rank, chunk in pinned_chunks(
        [f"ns/gw-{n}" for n in range(100)], str, 3, 7) for key in chunk)
    later = dict((key, rank) for rank, chunk in pinned_chunks(
        [f"ns/gw-{n}" for n in range(0, 100, 3)], str, 3, 2) for key in chunk)
    assert all(first[key] == rank for key, rank in later.items())
    assert len(set(first.values())) == 3


def test_the_workers_chunks_alternate() -> None:
    ranks = [rank for rank, _ in pinned_chunks([f"k{n}" for n in range(60)], str, 2, 5)]
    assert ranks[:4] == [0, 1, 0, 1]
