"""Standing restrictions: numbers (keyed hashes) whose recordings are restricted until lifted.

A restriction marks every recording of the number, so also those that come after it: a call
stored while it stands (ingest), a recording rectified onto the number. Its row goes when it is
lifted. The recording's own ``restricted`` flag stays what playback and search read, and its
``restricted_by`` names the number whose restriction it is: that number's lift ends it, also after
the recording was rectified onto another number (only a lift ends a restriction).

A restriction and a call of its number stored at the same moment would each miss the other
(the restriction's UPDATE does not see the uncommitted recording, the call does not see the
uncommitted restriction). So whoever writes a number's recordings or its restriction takes
``lock_numbers`` first, inside its transaction: on PostgreSQL a transaction-scoped advisory
lock per number; on SQLite the database's write lock, taken at once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Iterable, Mapping

import sqlalchemy as sa

from .catalog import tables as t

_s = t.restrictions.c


def lock_numbers(conn: sa.Connection, tenant: str, number_hashes: Iterable[str]) -> None:
    """Until the transaction ends, no one else restricts, lifts, or writes a recording of these
    numbers (taken in one order, so two holders never wait on each other). On SQLite, the
    database's write lock, taken now (an UPDATE of nothing: pysqlite begins the transaction at the
    first write, so a read before it would see a snapshot another writer may overtake)."""
    if conn.dialect.name != "postgresql":
        conn.execute(t.restrictions.update().where(sa.false()).values(created_by=_s.created_by))
        return
    for number_hash in sorted(set(number_hashes)):
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(
            sa.func.hashtextextended(f"callvault.restriction:{tenant}:{number_hash}", 0))))


def standing(tenant: str, number_hash: str) -> sa.Exists:
    """The number's restriction stands (for a SELECT list or a WHERE)."""
    return sa.exists().where(_s.tenant_id == tenant, _s.number_hash == number_hash)


def stand(conn: sa.Connection, *, tenant: str, since: Mapping[str, datetime], actor: str) -> int:
    """The restriction of each number (keyed hash) stands, from its time in ``since``, unless it
    already did; how many rows were added. The caller holds ``lock_numbers`` for them."""
    there = set(conn.execute(sa.select(_s.number_hash).where(_s.tenant_id == tenant,
                                                              _s.number_hash.in_(list(since)))).scalars())
    rows = [dict(tenant_id=tenant, number_hash=h, created_at=at, created_by=actor)
            for h, at in sorted(since.items()) if h not in there]
    if rows:
        conn.execute(t.restrictions.insert(), rows)
    return len(rows)


def lift(conn: sa.Connection, *, tenant: str, number_hashes: Iterable[str]) -> int:
    """The numbers' restriction no longer stands; how many rows went."""
    return conn.execute(t.restrictions.delete().where(_s.tenant_id == tenant,
                                                      _s.number_hash.in_(set(number_hashes)))).rowcount
