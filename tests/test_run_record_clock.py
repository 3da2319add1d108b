"""The run record's clock horizon through the real `mtlsc` (its test clock, MTLSC_TEST_NOW):
replayed before `validUntil`, compiled again from it on, with the full run's exact output."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from compiler.pki import create_dev_pki
from tests.record_support import both, example, mtlsc, record_files, record_of

NOT_AFTER = datetime(2027, 3, 10, 13, 37, 11, tzinfo=UTC)  # mid-day


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def _repo(tmp_path: Path, not_before: datetime, not_after: datetime) -> Path:
    root = example(tmp_path)
    create_dev_pki(root / ".mtlsc" / "dev-pki", not_before=not_before, not_after=not_after)
    return root


def _compile_at(root: Path, now: datetime) -> datetime:
    run = mtlsc(root, "compile", env={"MTLSC_TEST_NOW": _iso(now)})
    assert run.code == 0, run.stderr
    return datetime.fromisoformat(record_of(root)["validUntil"])


def _replayed_until(root: Path, until: datetime) -> None:
    """A hit an instant before `until`; from `until` on the full run, with its output."""
    before = mtlsc(root, "check", env={"MTLSC_TEST_NOW": _iso(until - timedelta(microseconds=1))})
    assert before.outcome == "hit"
    for moment in (until, until + timedelta(seconds=1)):
        recorded, full = both(root, "check", env={"MTLSC_TEST_NOW": _iso(moment)})
        assert recorded.outcome == "past the clock horizon"
        assert recorded.shown == full.shown


def test_a_days_left_message_changing(tmp_path: Path) -> None:
    root = _repo(tmp_path, datetime(2026, 1, 1, tzinfo=UTC), NOT_AFTER)
    now = datetime(2027, 3, 1, 10, 0, tzinfo=UTC)  # 9 days 3:37:11 left: warnings shown
    until = _compile_at(root, now)
    assert until == NOT_AFTER - timedelta(days=9)
    _replayed_until(root, until)
    later = mtlsc(root, "check", "--no-cache",
                  env={"MTLSC_TEST_NOW": _iso(until + timedelta(seconds=1))})
    assert b"(8 day(s) left)" in later.stderr


def test_a_certificate_expiring_mid_day(tmp_path: Path) -> None:
    root = _repo(tmp_path, datetime(2026, 1, 1, tzinfo=UTC), NOT_AFTER)
    until = _compile_at(root, datetime(2027, 3, 10, 8, 0, tzinfo=UTC))
    assert until == NOT_AFTER
    _replayed_until(root, until)
    expired = mtlsc(root, "check", env={"MTLSC_TEST_NOW": _iso(NOT_AFTER + timedelta(1))})
    assert b"CertificateExpired" in expired.stderr and expired.code != 0


def test_a_waiver_expiring_at_midnight(tmp_path: Path) -> None:
    root = _repo(tmp_path, datetime(2026, 1, 1, tzinfo=UTC),
                 datetime(2036, 1, 1, 13, 37, 11, tzinfo=UTC))
    intent = root / "policies" / "gateways" / "payments.yaml"
    intent.write_text(intent.read_text().replace(
        "  environments: [prod, staging]\n",
        "  environments: [prod, staging]\n  guardrailWaivers:\n"
        "  - {rule: no-insecure-fallback-in-prod, reason: test, owner: team, "
        "expires: 2027-03-05}\n"))
    until = _compile_at(root, datetime(2027, 3, 5, 22, 0, tzinfo=UTC))
    assert until == datetime(2027, 3, 6, tzinfo=UTC)
    _replayed_until(root, until)
    lapsed = mtlsc(root, "check", env={"MTLSC_TEST_NOW": _iso(until)})
    assert b"ExpiredGuardrailWaiver" in lapsed.stderr


@pytest.mark.parametrize("command", ["check", "compile"])
def test_a_not_yet_valid_certificate_becoming_valid(tmp_path: Path, command: str) -> None:
    valid_from = datetime(2027, 3, 1, 9, 15, tzinfo=UTC)
    root = _repo(tmp_path, valid_from, datetime(2036, 1, 1, tzinfo=UTC))
    early = mtlsc(root, "compile", env={"MTLSC_TEST_NOW": _iso(valid_from - timedelta(1))})
    assert b"CertificateNotYetValid" in early.stderr and early.code != 0
    assert record_files(root) == []  # a failing compile is never recorded
    _compile_at(root, valid_from)
    recorded, full = both(root, command, env={"MTLSC_TEST_NOW": _iso(valid_from)})
    assert recorded.outcome == "hit" and recorded.shown == full.shown


def test_a_malformed_test_clock_is_a_usage_error(tmp_path: Path) -> None:
    root = example(tmp_path)
    run = mtlsc(root, "check", env={"MTLSC_TEST_NOW": "yesterday"})
    assert run.code == 2
    err = run.stderr.decode()
    assert "MTLSC_TEST_NOW='yesterday' is not an ISO 8601 instant" in err
    assert "Traceback" not in err and "InternalError" not in err


def test_a_fixed_clock_is_announced_once(tmp_path: Path) -> None:
    """The test clock ships with the package: whoever sets it by mistake is told, on stderr."""
    root = _repo(tmp_path, NOT_AFTER - timedelta(days=90), NOT_AFTER)
    run = mtlsc(root, "compile", env={"MTLSC_TEST_NOW": "2027-01-02T03:04:05+00:00"})
    err = run.stderr.decode()
    assert run.code == 0, err
    assert err.count("MTLSC_TEST_NOW is set") == 1, err
    assert "judged at 2027-01-02T03:04:05+00:00, not now" in err
    assert "MTLSC_TEST_NOW" not in mtlsc(root, "check").stderr.decode()
