"""Rendering in worker processes gives the bytes of rendering in one process, whatever the
number of workers; a fleet compiled in shards (`--cluster` groups, as CI jobs would) equals
one full compile."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from compiler.cli import main
from tests.fleet_support import CLUSTERS, compile_fleet, make_fleet, outcome


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_fleet(tmp_path_factory.mktemp("fleet"))


def test_one_and_many_workers_give_identical_output(fleet: Path, tmp_path: Path) -> None:
    alone = outcome(compile_fleet(fleet, jobs=1))
    assert alone[0]
    for jobs in (2, 3):
        assert outcome(compile_fleet(fleet, jobs=jobs, parallel_min=1)) == alone
    # workers also fill the cache, and a warm run reads it back identically
    cold = outcome(compile_fleet(fleet, jobs=2, parallel_min=1, cache=tmp_path / "cache"))
    warm = outcome(compile_fleet(fleet, jobs=1, cache=tmp_path / "cache"))
    assert cold == alone == warm


def test_small_compiles_stay_in_process(fleet: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from compiler import fanout

    def no_pool(*args: object, **kwargs: object) -> None:
        raise AssertionError("a pool was started for a small compile")

    monkeypatch.setattr(fanout, "_pool", no_pool)
    assert compile_fleet(fleet, jobs=4).ok  # default parallel_min: far above this fleet


def test_shards_equal_one_full_compile(fleet: Path) -> None:
    full = compile_fleet(fleet)
    shards = [("c0",), tuple(f"c{j}" for j in range(1, CLUSTERS))]
    files: dict[str, bytes] = {}
    for clusters in shards:
        part = compile_fleet(fleet, clusters=clusters)
        assert part.ok
        assert not set(files) & set(part.files)
        files.update(part.files)
    assert files == full.files


def test_sharded_cli_compiles_then_check(tmp_path: Path) -> None:
    """The CI recipe of docs/scale.md: one job per cluster group writes its overlays, a final
    job checks the whole tree."""
    root = make_fleet(tmp_path / "sharded")
    whole = make_fleet(tmp_path / "whole")
    runner = CliRunner()
    for args in (["--cluster", "c0"], ["--cluster", "c1", "--cluster", "c2"]):
        result = runner.invoke(main, ["compile", "-q", "--root", str(root), *args],
                               catch_exceptions=False)
        assert result.exit_code == 0, result.output
    check = runner.invoke(main, ["check", "-q", "--root", str(root)], catch_exceptions=False)
    assert check.exit_code == 0, check.output
    runner.invoke(main, ["compile", "-q", "--no-cache", "--root", str(whole)],
                  catch_exceptions=False)
    ours = {p.relative_to(root): p.read_bytes() for p in (root / "overlays").rglob("*")
            if p.is_file()}
    theirs = {p.relative_to(whole): p.read_bytes() for p in (whole / "overlays").rglob("*")
              if p.is_file()}
    assert ours == theirs and len(ours) > 100


def test_a_sink_receives_each_cluster_once_and_the_same_bytes(fleet: Path) -> None:
    full = compile_fleet(fleet)
    got: list[tuple[str, dict[str, bytes]]] = []
    streamed = compile_fleet(fleet, stream_min=1,
                             sink=lambda out, files: got.append((out, files)))
    assert streamed.ok and streamed.files == {}
    assert [out for out, _ in got] == [f"overlays/c{j}" for j in range(CLUSTERS)]
    assert all(path.startswith(out + "/") for out, files in got for path in files)
    assert {p: d for _, files in got for p, d in files.items()} == full.files


def test_the_next_cluster_is_queued_while_one_is_handed_on(
        fleet: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The workers never wait for the main process to assemble a cluster: when the sink gets
    cluster k, cluster k+1's gateways are already queued (and no further: memory stays at
    about two clusters' units)."""
    from compiler import fanout

    submitted: list[set[int]] = []  # cluster indexes of the tasks queued so far
    real_pool = fanout._pool

    def recording_pool(*args: object, **kwargs: object) -> object:
        pool = real_pool(*args, **kwargs)  # type: ignore[arg-type]
        submit = pool.submit

        def recording_submit(rank, fn, stage, chunk):  # type: ignore[no-untyped-def]
            submitted.append({index for index, _, _ in chunk})
            return submit(rank, fn, stage, chunk)
        pool.submit = recording_submit  # type: ignore[method-assign]
        return pool

    monkeypatch.setattr(fanout, "_pool", recording_pool)
    seen: list[set[int]] = []
    result = compile_fleet(fleet, jobs=2, parallel_min=1, stream_min=1,
                           sink=lambda out, files: seen.append(set().union(*submitted)))
    assert result.ok
    assert seen[0] == {0, 1}
    assert seen[1] == {0, 1, 2}
    assert len(seen) == CLUSTERS and seen[-1] == set(range(CLUSTERS))


def test_rendering_starts_before_certificates_are_checked_and_stops_when_they_fail(
        fleet: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The workers start on the units while the main process verifies certificates; a
    verification failure closes the stream (no worker is left running) and the result is the
    one of a single-process compile: the same diagnostics, no files."""
    import datetime as dt

    from compiler import fanout, pipeline

    started: list[object] = []
    closed: list[object] = []
    real_pool = fanout._pool
    real_close = fanout.UnitStream.close

    def recording_pool(*args: object, **kwargs: object) -> object:
        pool = real_pool(*args, **kwargs)  # type: ignore[arg-type]
        started.append(pool)
        return pool

    def recording_close(self: fanout.UnitStream) -> None:
        if self.pool is not None:
            closed.append(self.pool)
        real_close(self)

    monkeypatch.setattr(fanout, "_pool", recording_pool)
    monkeypatch.setattr(fanout.UnitStream, "close", recording_close)
    real_verify = pipeline.verify
    order: list[str] = []

    def verify(*args: object, **kwargs: object) -> object:
        order.append("pool started" if started else "no pool yet")
        return real_verify(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline, "verify", verify)
    later = dt.datetime(2099, 1, 1, tzinfo=dt.UTC)  # every certificate has expired
    failed = compile_fleet(fleet, jobs=2, parallel_min=1, now=later)
    assert order == ["pool started"] and closed == started and len(started) == 1
    assert not failed.ok and failed.files == {}
    alone = compile_fleet(fleet, jobs=1, now=later)
    assert failed.diagnostics == alone.diagnostics
    assert any("xpired" in d.code for d in failed.diagnostics), failed.diagnostics[:3]
