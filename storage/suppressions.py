"""The suppression list: numbers that objected to recording, stored as keyed hashes only."""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa

from .catalog import tables as t


def is_suppressed(conn: sa.Connection, *, tenant: str, number_hash: str) -> bool:
    return conn.execute(sa.select(t.suppressions.c.number_hash).where(
        t.suppressions.c.tenant_id == tenant, t.suppressions.c.number_hash == number_hash)).first() is not None


def suppress(conn: sa.Connection, *, tenant: str, number_hash: str, actor: str,
             now: datetime | None = None) -> bool:
    """Add a number (by hash) to the tenant's suppression list; False if it was already there."""
    if is_suppressed(conn, tenant=tenant, number_hash=number_hash):
        return False
    conn.execute(t.suppressions.insert().values(tenant_id=tenant, number_hash=number_hash, created_by=actor,
                                                created_at=now or datetime.now(timezone.utc)))
    return True
