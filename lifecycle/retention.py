"""Per-tenant retention overrides, and their re-application to existing copies.

An override applies to copies already stored, not only to new ones: every copy of the tier
gets its expiry recomputed (production from the call start, other tiers from the copy's
creation). A shortened retention is enforced by the next sweep. ``dry_run`` computes the
same change and reports it without writing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from core.vocabulary import AuditAction, Tier
from storage import audit
from storage.catalog import tables as t

from .exceptions import NotFound, RetentionOutOfBounds, UnknownTier
from .tiers import expires_at


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


def tenant_overrides(conn: sa.Connection, tenant: str) -> dict[str, int]:
    rows = conn.execute(sa.select(t.tenant_retention.c.tier, t.tenant_retention.c.months)
                        .where(t.tenant_retention.c.tenant_id == tenant))
    return {tier: months for tier, months in rows}


def set_retention(conn: sa.Connection, *, tenant: str, tier: str, months: int, bounds: Bounds, now: datetime,
                  dry_run: bool = False, actor: str = "system", role: str = "system") -> RetentionChange:
    tier_ = parse_tier(tier)
    check_bounds(tier_, months, bounds)
    if conn.execute(sa.select(t.tenants.c.id).where(t.tenants.c.id == tenant)).first() is None:
        raise NotFound(f"tenant {tenant!r} does not exist", hint="add it with `callvault tenants add`")
    rows = conn.execute(
        sa.select(t.copies.c.id, t.copies.c.created_at, t.copies.c.expires_at, t.recordings.c.started_at)
        .join(t.recordings, t.recordings.c.id == t.copies.c.recording_id)
        .where(t.recordings.c.tenant_id == tenant, t.copies.c.tier == tier_.value)).all()
    overrides = {tier_.value: months}
    updates = []
    for row in rows:
        new = expires_at(tier_, call_started_at=row.started_at, copy_created_at=row.created_at, overrides=overrides)
        if new != row.expires_at:
            updates.append({"copy_id": row.id, "new_expiry": new})
    expiries = [u["new_expiry"] for u in updates]
    change = RetentionChange(tenant, tier_, months, len(rows), len(updates),
                             sum(1 for e in expiries if e <= now), min(expiries, default=None),
                             max(expiries, default=None), applied=not dry_run)
    if dry_run:
        return change
    stmt = t.tenant_retention.update().where(t.tenant_retention.c.tenant_id == tenant,
                                             t.tenant_retention.c.tier == tier_.value).values(months=months)
    if conn.execute(stmt).rowcount == 0:
        conn.execute(t.tenant_retention.insert().values(tenant_id=tenant, tier=tier_.value, months=months))
    if updates:
        conn.execute(t.copies.update().where(t.copies.c.id == sa.bindparam("copy_id"))
                     .values(expires_at=sa.bindparam("new_expiry")), updates)
    audit.append(conn, tenant=tenant, actor=actor, role=role, action=AuditAction.RETENTION_SET, target_type="tenant", target_id=tenant,
                 outcome="done", at=now, detail={"tier": tier_.value, "months": months, "copies_changed": len(updates),
                                                 "expire_now": change.expire_now})
    return change
