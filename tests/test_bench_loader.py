"""bench/loader.py runs and reports its figures (a smoke test: the ratio itself is only
meaningful at full size, run by hand; see bench/README.md)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support import REPO


def test_loader_benchmark_reports_its_ratios() -> None:
    done = subprocess.run([sys.executable, str(REPO / "bench" / "loader.py"), "--files", "30",
                           "--rounds", "1", "--ruamel-sample", "3"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode in (0, 1), done.stderr  # 1: target missed, fine at this size
    report = json.loads(done.stdout)
    assert report["files"] == 30
    assert set(report["ratios_to_floor"]) == {"mtlsc_parse", "mtlsc_load_with_schema_check",
                                              "ruamel_before"}
    assert all(ratio > 0 for ratio in report["ratios_to_floor"].values())
