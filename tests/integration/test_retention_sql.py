"""Retention changes computed in SQL: the catalog's month arithmetic equals ``tiers.add_months``
(month-end clamping, leap days) on the real PostgreSQL and on SQLite, and ``set_retention``
writes exactly those expiries, held copies included, with its counts in the audit entry."""

from __future__ import annotations

import calendar
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lifecycle.holds import set_hold
from lifecycle.retention import Bounds, new_expiry, set_retention
from lifecycle.tiers import DEFAULT_MAX_MONTHS, DEFAULT_MIN_MONTHS, add_months
from storage.catalog import tables as t
from tests.support.catalog import NOW, new_recording, store_copy

pytestmark = pytest.mark.integration
BOUNDS = Bounds({k.value: v for k, v in DEFAULT_MIN_MONTHS.items()},
                {k.value: v for k, v in DEFAULT_MAX_MONTHS.items()})
MOMENTS = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2199, 12, 31),
                       timezones=st.just(timezone.utc))


def _in_sql(conn: sa.Connection, moment: datetime, months: int) -> datetime:
    anchor = sa.literal(moment, t.copies.c.expires_at.type)
    return conn.execute(sa.select(new_expiry(conn, anchor, months))).scalar_one()


def _month_ends() -> list[datetime]:
    """The last four days of every month of 2023..2029 (31sts, 30ths, Feb 28/29), at odd times."""
    return [datetime(y, m, d, 23, 59, 59, 999_999, tzinfo=timezone.utc) if d % 2 else
            datetime(y, m, d, 0, 0, 0, 1, tzinfo=timezone.utc)
            for y in range(2023, 2030) for m in range(1, 13)
            for d in range(calendar.monthrange(y, m)[1] - 3, calendar.monthrange(y, m)[1] + 1)]


def test_month_ends_and_leap_days_clamp_as_tiers_does(catalog):
    with catalog.connect() as conn:
        mismatches = [(d, n) for d in _month_ends() for n in (1, 2, 3, 6, 12, 13, 36, 48)
                      if _in_sql(conn, d, n) != add_months(d, n)]
    assert mismatches == []


def test_any_moment_and_any_months_match_tiers(catalog):
    with catalog.connect() as conn:
        @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
        @given(moment=MOMENTS, months=st.integers(min_value=1, max_value=1200))
        def check(moment: datetime, months: int) -> None:
            assert _in_sql(conn, moment, months) == add_months(moment, months)

        check()


def test_set_retention_writes_the_tiers_expiries_held_included_and_audits_the_counts(
        catalog, store, keys, scratch_bucket):
    starts = [datetime(2026, 8, 31, 9, tzinfo=timezone.utc), datetime(2024, 2, 29, tzinfo=timezone.utc),
              NOW - timedelta(days=75), NOW - timedelta(days=10)]
    ids = []
    for started in starts:
        with catalog.begin() as conn:
            rid, nh = new_recording(conn, keys, started=started)
        ids.append(store_copy(catalog, store, keys, scratch_bucket, b"x" * 64, rid=rid, number_hash=nh,
                              expires_at=add_months(started, 3))[2])
    with catalog.begin() as conn:
        set_hold(conn, store, copy_ids=[ids[1]], reason="case 12", actor="ic-1", now=NOW)
    with catalog.begin() as conn:
        preview = set_retention(conn, tenant="acme", tier="production", months=2, bounds=BOUNDS, now=NOW, ledger=None,
                                dry_run=True)
    with catalog.begin() as conn:
        applied = set_retention(conn, tenant="acme", tier="production", months=2, bounds=BOUNDS, now=NOW, ledger=None,
                                actor="it-1", role="it")
    expected = [add_months(s, 2) for s in starts]
    assert (preview.copies, preview.changed, preview.expire_now) == (4, 4, 3)
    assert (preview.earliest, preview.latest) == (min(expected), max(expected))
    assert (applied.copies, applied.changed, applied.expire_now, applied.earliest, applied.latest) == (
        4, 4, 3, min(expected), max(expected))
    with catalog.connect() as conn:
        by_id = dict(conn.execute(sa.select(t.copies.c.id, t.copies.c.expires_at)).all())
        held = conn.execute(sa.select(t.copies.c.hold).where(t.copies.c.id == ids[1])).scalar_one()
        detail = conn.execute(sa.select(t.audit_events.c.detail).where(
            t.audit_events.c.action == "tenant:retention:set")).scalars().all()
    assert [by_id[i] for i in ids] == expected and held  # the hold stays; only the expiry moved
    assert detail == [{"tier": "production", "months": 2, "copies": 4, "copies_changed": 4, "expire_now": 3,
                       "earliest": min(expected).isoformat(), "latest": max(expected).isoformat(), "as_of": NOW.isoformat()}]
