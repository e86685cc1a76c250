"""Per-tenant retention overrides, and their re-application to existing copies.

An override applies to copies already stored, not only to new ones: every copy of the tier
gets its expiry recomputed (production from the call start, other tiers from the copy's
creation). A shortened retention is enforced by the next sweep. ``dry_run`` computes the
same change and reports it without writing.

Both run in SQL, so a tier of millions of copies never passes through Python: the dry run
is one aggregate SELECT, the change one UPDATE (with its counts, on PostgreSQL, in the same
statement), inside the caller's transaction with the audit entry that records the counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable

import sqlalchemy as sa

from core.vocabulary import AuditAction, Tier
from storage import audit
from storage.catalog import tables as t
from storage.ledger import ErasureLedger, PolicyEvent

from .exceptions import NotFound, RetentionOutOfBounds, UnknownTier
from .tiers import add_months

SQLITE_FORMAT = "%Y-%m-%d %H:%M:%S.%f"  # SQLAlchemy's storage format for DateTime on SQLite


@dataclass(frozen=True)
class Bounds:
    min_months: dict[str, int]
    max_months: dict[str, int]


def parse_tier(value: str) -> Tier:
    try:
        return Tier(value)
    except ValueError:
        raise UnknownTier(f"unknown tier {value!r}", hint=f"one of {', '.join(t.value for t in Tier)}") from None


def check_bounds(tier: Tier, months: int, bounds: Bounds) -> None:
    low, high = bounds.min_months[tier.value], bounds.max_months[tier.value]
    if not low <= months <= high:
        raise RetentionOutOfBounds(f"{months} months for tier {tier.value} is outside the legal bounds "
                                   f"{low}..{high} months", hint="CALLVAULT_LIFECYCLE_MIN_MONTHS / MAX_MONTHS")


@dataclass(frozen=True)
class RetentionChange:
    tenant: str
    tier: Tier
    months: int
    copies: int
    changed: int
    expire_now: int
    earliest: datetime | None
    latest: datetime | None
    applied: bool

    def summary(self) -> str:
        verb = "now expire" if self.applied else "would expire"
        span = f"; new expiries {self.earliest:%Y-%m-%d} .. {self.latest:%Y-%m-%d}" if self.earliest else ""
        return (f"{self.tenant}/{self.tier.value}: {self.months} months; {self.changed} of {self.copies} copies "
                f"{'changed' if self.applied else 'would change'}, {self.expire_now} {verb} at the next sweep{span}")

    def counts(self) -> dict:
        """What the audit entry records: the override and how many copies it moved (no ids)."""
        return {"tier": self.tier.value, "months": self.months, "copies": self.copies,
                "copies_changed": self.changed, "expire_now": self.expire_now,
                "earliest": self.earliest.isoformat() if self.earliest else None,
                "latest": self.latest.isoformat() if self.latest else None}


def tenant_overrides(conn: sa.Connection, tenant: str) -> dict[str, int]:
    rows = conn.execute(sa.select(t.tenant_retention.c.tier, t.tenant_retention.c.months)
                        .where(t.tenant_retention.c.tenant_id == tenant))
    return {tier: months for tier, months in rows}


def _sqlite_add_months(stored: str | None, months: int) -> str | None:
    """``tiers.add_months`` on SQLite's stored text (UTC, ``YYYY-MM-DD HH:MM:SS.ffffff``)."""
    if stored is None:
        return None
    moment = add_months(datetime.fromisoformat(stored).replace(tzinfo=timezone.utc), months)
    return moment.strftime(SQLITE_FORMAT)


def new_expiry(conn: sa.Connection, anchor: sa.ColumnElement, months: int) -> sa.ColumnElement:
    """``anchor`` + ``months`` calendar months in UTC, clamped to the month's end, in SQL.

    PostgreSQL's month interval clamps exactly as ``tiers.add_months`` does (Nov 30 + 3 =
    Feb 28), once the timestamp is taken as UTC wall-clock time (else the session's zone
    would decide where a month ends). SQLite has no such arithmetic: ``tiers.add_months``
    itself is registered on the connection as a SQL function.
    """
    kind = t.copies.c.expires_at.type
    if conn.dialect.name == "postgresql":
        shifted = sa.func.timezone("UTC", anchor) + sa.func.make_interval(0, sa.literal(months, sa.Integer))
        return sa.func.timezone("UTC", shifted, type_=kind)
    conn.connection.driver_connection.create_function("cv_add_months", 2, _sqlite_add_months, deterministic=True)
    return sa.func.cv_add_months(anchor, sa.literal(months, sa.Integer), type_=kind)


def _scope(tenant: str, tier: Tier) -> tuple[sa.ColumnElement, ...]:
    return (t.recordings.c.id == t.copies.c.recording_id, t.recordings.c.tenant_id == tenant,
            t.copies.c.tier == tier.value)


def _preview(conn: sa.Connection, tenant: str, tier: Tier, months: int, now: datetime) -> tuple:
    """(copies, changed, expire_now, earliest, latest) counted in SQL: no row reaches Python."""
    anchor = t.recordings.c.started_at if tier is Tier.PRODUCTION else t.copies.c.created_at
    new = new_expiry(conn, anchor, months)
    changed = t.copies.c.expires_at != new
    one = sa.literal(1, sa.Integer)
    copies, changed_, expire_now, earliest, latest = conn.execute(sa.select(
        sa.func.count(), sa.func.coalesce(sa.func.sum(sa.case((changed, one), else_=0)), 0),
        sa.func.coalesce(sa.func.sum(sa.case((sa.and_(changed, new <= now), one), else_=0)), 0),
        sa.func.min(sa.case((changed, new))), sa.func.max(sa.case((changed, new))),
    ).select_from(t.copies).join(t.recordings, t.recordings.c.id == t.copies.c.recording_id)
        .where(*_scope(tenant, tier)[1:])).one()
    return int(copies), int(changed_), int(expire_now), earliest, latest


def _apply(conn: sa.Connection, tenant: str, tier: Tier, months: int, now: datetime) -> tuple:
    """One UPDATE of every copy whose expiry changes; (changed, expire_now, earliest, latest).

    PostgreSQL counts what its UPDATE returned in the same statement (a CTE), so the tier is
    read once; SQLite counts first, then updates (one transaction: the caller's)."""
    anchor = t.recordings.c.started_at if tier is Tier.PRODUCTION else t.copies.c.created_at
    new = new_expiry(conn, anchor, months)
    update = (t.copies.update().where(*_scope(tenant, tier), t.copies.c.expires_at != new)
              .values(expires_at=new))
    if conn.dialect.name != "postgresql":
        counted = _preview(conn, tenant, tier, months, now)
        conn.execute(update)
        return tuple(counted[1:])
    done = update.returning(t.copies.c.expires_at).cte("done")
    return tuple(conn.execute(sa.select(
        sa.func.count(), sa.func.count().filter(done.c.expires_at <= now),
        sa.func.min(done.c.expires_at), sa.func.max(done.c.expires_at))).one())


def _copies_in_tier(conn: sa.Connection, tenant: str, tier: Tier) -> int:
    return conn.execute(sa.select(sa.func.count()).select_from(t.copies)
                        .join(t.recordings, t.recordings.c.id == t.copies.c.recording_id)
                        .where(*_scope(tenant, tier)[1:])).scalar_one()


def _set(conn: sa.Connection, tenant: str, tier: Tier, months: int, now: datetime) -> RetentionChange:
    """The override stored and the tier's expiries recomputed."""
    copies = _copies_in_tier(conn, tenant, tier)
    changed, expire_now, earliest, latest = _apply(conn, tenant, tier, months, now)
    stmt = t.tenant_retention.update().where(t.tenant_retention.c.tenant_id == tenant,
                                             t.tenant_retention.c.tier == tier.value).values(months=months)
    if conn.execute(stmt).rowcount == 0:
        conn.execute(t.tenant_retention.insert().values(tenant_id=tenant, tier=tier.value, months=months))
    return RetentionChange(tenant, tier, months, copies, changed, expire_now, earliest, latest, applied=True)


def lock_tenants(conn: sa.Connection) -> None:
    """Until the transaction ends, no tenant's retention changes (PostgreSQL: every tenant row, in
    one order; SQLite: the write lock, taken now)."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(t.tenants.c.id).order_by(t.tenants.c.id).with_for_update())
    else:
        conn.execute(t.tenants.update().where(sa.false()).values(name=t.tenants.c.name))


def reapply(conn: sa.Connection, events: Iterable[PolicyEvent], *, now: datetime) -> list[RetentionChange]:
    """Each tenant's tiers back to their last journalled retention, where the catalog differs (a
    restored backup older than the change); a tenant the catalog does not have is skipped."""
    last = {(e.tenant, e.target): e.months for e in events if e.kind == "retention"}
    if not last:
        return []
    r = t.tenant_retention.c
    held = {(row.tenant_id, row.tier): row.months for row in conn.execute(sa.select(r.tenant_id, r.tier, r.months))}
    tenants = set(conn.execute(sa.select(t.tenants.c.id)).scalars())
    return [_set(conn, tenant, parse_tier(tier), months, now) for (tenant, tier), months in sorted(last.items())
            if tenant in tenants and months is not None and held.get((tenant, tier)) != months]


def set_retention(conn: sa.Connection, *, tenant: str, tier: str, months: int, bounds: Bounds, now: datetime,
                  ledger: ErasureLedger | None, dry_run: bool = False, actor: str = "system",
                  role: str = "system") -> RetentionChange:
    """Store the override and recompute the tier's expiries in SQL (bounded memory at any size).

    Held copies get their new expiry too (the hold, not the expiry, keeps them); copies that
    now lie in the past are left to the next sweep. Journalled in the ledger first (a failed
    write aborts), so a catalog restored from an older backup gets it back (``reapply``);
    ``ledger=None``: not journalled (a test's or a benchmark's catalog only)."""
    tier_ = parse_tier(tier)
    check_bounds(tier_, months, bounds)
    # Locked (PostgreSQL) until the commit: two changes of the tenant's retention are journalled in
    # the order they commit in, so the journal's last word is the catalog's.
    found = sa.select(t.tenants.c.id).where(t.tenants.c.id == tenant)
    if conn.execute(found if dry_run else found.with_for_update()).first() is None:
        raise NotFound(f"tenant {tenant!r} does not exist", hint="add it with `callvault tenants add`")
    if dry_run:
        return RetentionChange(tenant, tier_, months, *_preview(conn, tenant, tier_, months, now), applied=False)
    if ledger is not None:
        ledger.record_policy("retention", tenant=tenant, target=tier_.value, months=months, actor=actor, now=now)
    change = _set(conn, tenant, tier_, months, now)
    audit.append(conn, tenant=tenant, actor=actor, role=role, action=AuditAction.RETENTION_SET, target_type="tenant",
                 target_id=tenant, outcome="done", at=now, detail=change.counts())
    return change
