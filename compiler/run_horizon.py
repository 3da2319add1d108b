"""The clock horizon of a compile: the earliest instant at which any verdict or message of it
could read differently. Pure.

Everything a compile derives from the clock (audited for `compiler/run_record.py`; see
docs/scale.md#the-run-record):

- certificate checks (`verify._validity_problems`, through `fetch.verify`), per certificate of
  every fetched CA bundle and server chain: `CertificateNotYetValid` while now < notBefore,
  `CertificateExpired` once now > notAfter, `CertificateExpiringSoon` once
  notAfter - now <= a cluster's warning window, whose message carries the whole days left,
  `(notAfter - now).days`, which changes at every notAfter - k days;
- guardrail waivers (`guardrails.enforce`): a waiver is active while today (UTC) <= its
  `expires` date, so it lapses at the midnight (UTC) after that date;
- the guardrails' typed view (`guardrails.view`): `daysLeft` of every trust anchor and server
  certificate, floor((notAfter - now) / 1 day), read by rules that read certificate data;
- nothing else in `compile` or `check`: the rotation overlap and anchor history belong to
  `diff`, the lock's pins record certificate data (notAfter) rather than the clock, and the
  offline Vault source's expiry check only runs with `--offline`, which is never recorded.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Validity:
    """The validity window of one certificate: all the horizon reads of it."""

    not_before: datetime  # aware, UTC
    not_after: datetime


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def certificate_events(cert: Validity, now: datetime,
                       windows: Iterable[timedelta]) -> list[datetime]:
    """Instants >= now where `verify`'s verdict or message for `cert` may change.

    A verdict that turns *at* an instant (valid from notBefore on, warned from notAfter - window
    on) has already turned when now is that instant; one that turns just *after* an instant
    (expired after notAfter, one day less after notAfter - N days) is due at once then."""
    nb, na = _aware(cert.not_before), _aware(cert.not_after)
    turns_at = [nb, *(na - window for window in windows)]
    turns_after = [na]  # conservative by one instant: valid while now < notAfter
    if any(now >= na - window for window in windows) and now <= na:
        # "(N day(s) left)": N = (notAfter - now).days drops when now passes notAfter - N days
        turns_after.append(na - (na - now).days * DAY)
    return [t for t in turns_at if t > now] + [t for t in turns_after if t >= now]


def view_events(cert: Validity, now: datetime) -> list[datetime]:
    """When the guardrail view's `daysLeft` (floor of the fractional days left) changes."""
    na = _aware(cert.not_after)
    return [na - ((na - now) // DAY) * DAY]


def waiver_events(expires: Iterable[date | None], now: datetime) -> list[datetime]:
    """A waiver is active while today <= expires: it lapses at the next midnight after it."""
    today = now.date()
    return [datetime.combine(day + DAY, time(), UTC) for day in expires
            if day is not None and day >= today]


def horizon(now: datetime, certificates: Iterable[Validity], windows: Iterable[timedelta],
            expires: Iterable[date | None], *, view_days: bool) -> datetime | None:
    """The earliest instant > now at which a compile at `now` could come out differently, or
    None when nothing of it depends on the clock. A result equals `now` (never valid) when a
    change happens at `now` itself."""
    now = _aware(now)
    spans = list(windows)
    events: list[datetime] = []
    for cert in certificates:
        events += certificate_events(cert, now, spans)
        if view_days:
            events += view_events(cert, now)
    events += waiver_events(expires, now)
    return min(events, default=None)


def earliest(until: str | None, lapse: datetime | None) -> str | None:
    """A recorded horizon (a run record's `validUntil`: ISO 8601, None for none) moved to
    `lapse` when that comes first."""
    if lapse is None or (until is not None and datetime.fromisoformat(until) <= lapse):
        return until
    return _aware(lapse).astimezone(UTC).isoformat()
