"""The fleet benchmark runs end to end (a smoke run: its figures are not checked here; targets
are measured by running bench/fleet.py itself, never as timed tests)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support import REPO


@pytest.mark.slow
def test_fleet_bench_small_runs() -> None:
    out = subprocess.run([sys.executable, str(REPO / "bench" / "fleet.py"), "--small"],
                         capture_output=True, text=True, timeout=600, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout)
    assert set(report["ratios"]) == {"cold/floor", "cold/check-jsonschema", "edit/cold",
                                     "edit-served/cold", "check/cold", "version/import-click"}
    assert all(value > 0 for value in report["ratios"].values())
    # CPU of each command's process tree: a cold compile does far more work than an edit
    cpu = report["cpu_seconds"]
    assert set(cpu) == {"cold", "edit", "check"} and all(v > 0 for v in cpu.values())
    assert cpu["edit"] < cpu["cold"] and report["cpu_ratios"]["edit/cold"] < 1
    assert 0.5 < report["two_cpu_speedup"] <= 2.5
    assert report["sampled_cold_seconds"] > 0
    assert report["peak_rss_mb"] > 0 and report["missed"] == []
