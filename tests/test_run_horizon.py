"""The run record's clock horizon: no verdict or message of a compile can change before it.

The properties compare the real clock-dependent functions (`verify.check_ca_bundle`, the
guardrail view's days left, `Waiver.active`) at `now` and at instants before the horizon.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from functools import cache

from hypothesis import given, settings
from hypothesis import strategies as st

from compiler.diagnostics import Location
from compiler.guardrails import Waiver
from compiler.pki import derive_private_key, derive_serial, make_ca
from compiler.run_horizon import Validity, earliest, horizon
from compiler.verify import check_ca_bundle

NOT_BEFORE = datetime(2027, 3, 1, 9, 15, tzinfo=UTC)
NOT_AFTER = datetime(2027, 3, 10, 13, 37, 11, tzinfo=UTC)  # expires mid-day
WINDOWS = (timedelta(days=30), timedelta(days=3))


@cache
def ca_pem() -> bytes:
    from cryptography.hazmat.primitives import serialization

    cert, _ = make_ca("Horizon CA", not_before=NOT_BEFORE, not_after=NOT_AFTER,
                      key=derive_private_key("tests", "horizon"),
                      serial=derive_serial("tests", "horizon"))
    return cert.public_bytes(serialization.Encoding.PEM)


def view_days_left(not_after: datetime, now: datetime) -> int:
    """`daysLeft` of the guardrail view (docs/guardrails.md): whole days, rounded down."""
    return math.floor((not_after - now).total_seconds() / 86400)


def messages(now: datetime) -> list[list[tuple[str, str]]]:
    return [[(p.code, p.message) for p in check_ca_bundle(ca_pem(), now=now, warn_within=w)]
            for w in WINDOWS]


CERT = Validity(NOT_BEFORE, NOT_AFTER)
instants = st.datetimes(min_value=datetime(2027, 2, 1), max_value=datetime(2027, 3, 20),
                        timezones=st.just(UTC))


@settings(max_examples=200, deadline=None)
@given(now=instants, fraction=st.floats(min_value=0, max_value=1, exclude_max=True))
def test_certificate_messages_hold_until_the_horizon(now: datetime, fraction: float) -> None:
    until = horizon(now, [CERT], WINDOWS, [], view_days=True)
    assert until is not None and until >= now
    if until == now:
        return  # a change is due at once: never replayed
    later = min(now + (until - now) * fraction, until - timedelta(microseconds=1))
    assert messages(later) == messages(now)
    assert view_days_left(NOT_AFTER, later) == view_days_left(NOT_AFTER, now)


@settings(max_examples=100, deadline=None)
@given(now=st.datetimes(min_value=datetime(2027, 3, 1, 9, 15), max_value=datetime(2027, 3, 20),
                        timezones=st.just(UTC)))
def test_the_horizon_is_tight_where_a_message_changes(now: datetime) -> None:
    """Once the certificate is valid, just past the horizon a message does change."""
    until = horizon(now, [CERT], WINDOWS, [], view_days=False)
    if until is None:  # expired: nothing changes any more
        assert now > NOT_AFTER
    elif until > now:
        assert messages(until + timedelta(seconds=1)) != messages(now)


def test_a_certificate_expiring_mid_day() -> None:
    now = datetime(2027, 3, 10, 8, 0, tzinfo=UTC)  # "0 day(s) left" already: expiry next
    assert horizon(now, [CERT], WINDOWS, [], view_days=False) == NOT_AFTER
    assert "0 day(s) left" in messages(NOT_AFTER)[0][0][1]
    assert messages(NOT_AFTER + timedelta(microseconds=1))[0][0][0] == "CertificateExpired"


def test_a_days_left_message_changes_at_not_after_minus_whole_days() -> None:
    now = datetime(2027, 3, 1, 10, 0, tzinfo=UTC)  # 9 days 3:37:11 left
    until = horizon(now, [CERT], WINDOWS, [], view_days=False)
    assert until == NOT_AFTER - timedelta(days=9)
    assert "(9 day(s) left)" in messages(until)[0][0][1]
    assert "(8 day(s) left)" in messages(until + timedelta(seconds=1))[0][0][1]


def test_a_waiver_expires_at_midnight_utc() -> None:
    waiver = Waiver("ns/gw", "rule", "why", "owner", date(2027, 3, 5), Location("f", 1, 1),
                    Location("f", 2, 1))
    now = datetime(2027, 3, 5, 22, 0, tzinfo=UTC)
    until = horizon(now, [], WINDOWS, [waiver.expires, None, date(2027, 1, 1)], view_days=True)
    assert until == datetime(2027, 3, 6, tzinfo=UTC)
    assert waiver.active((until - timedelta(microseconds=1)).date())
    assert not waiver.active(until.date())


def test_a_not_yet_valid_certificate_becomes_valid() -> None:
    now = datetime(2027, 2, 20, tzinfo=UTC)
    assert messages(now)[1][0][0] == "CertificateNotYetValid"
    assert horizon(now, [CERT], (timedelta(days=3),), [], view_days=False) == NOT_BEFORE
    assert messages(NOT_BEFORE)[1] == []


def test_no_clock_dependency_means_no_horizon() -> None:
    assert horizon(datetime(2027, 1, 1, tzinfo=UTC), [], WINDOWS, [None], view_days=True) is None


def test_a_delta_compile_moves_the_horizon_only_to_an_earlier_lapse() -> None:
    """`earliest`: a delta compile's record keeps its base's horizon unless an edited
    intent's waiver lapses first; an unbounded horizon (None) takes the lapse."""
    base = datetime(2027, 3, 10, 13, 37, 11, tzinfo=UTC)
    sooner, later = base - timedelta(hours=1), base + timedelta(days=1)
    recorded = base.isoformat()
    assert earliest(recorded, None) == recorded
    assert earliest(recorded, later) == recorded
    assert earliest(recorded, base) == recorded
    assert datetime.fromisoformat(str(earliest(recorded, sooner))) == sooner
    assert earliest(None, None) is None
    assert datetime.fromisoformat(str(earliest(None, later))) == later
    naive = datetime(2027, 3, 1)  # taken as UTC, as the horizon takes a naive clock
    assert earliest(None, naive) == "2027-03-01T00:00:00+00:00"
