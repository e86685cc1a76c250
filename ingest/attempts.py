"""Delivery attempts that outlive the worker: how a poison message is recognised.

A message whose processing kills the worker process (out of memory, a crashing library,
SIGKILL) raises nothing: the process is gone, the offset is not committed, and Kafka hands
the same message to the next worker, which dies the same way; the partition never moves.
So before a batch is processed, each of its messages gets ``attempts + 1`` in the catalog
(one statement, committed), and the rows go once the batch is done. A message found with
earlier attempts is suspect: suspects are processed one at a time, each counted just before
its own turn, so only the message being processed when the worker dies is blamed again (an
innocent neighbour of a poison message is not); past ``max_crash_attempts`` a suspect is
dead-lettered as ``worker_crash`` without being processed again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Iterable

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from storage.catalog import tables as t

Delivery = tuple[str, int, int]  # topic, partition, offset


def _insert(conn: sa.Connection, deliveries: list[Delivery], now: datetime):
    rows = [{"topic": tp, "partition": p, "offset": o, "attempts": 1, "first_at": now, "last_at": now}
            for tp, p, o in deliveries]
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(t.ingest_attempts).values(rows)


def _autocommit(engine: sa.Engine) -> sa.Connection:
    """Each bookkeeping step is one statement: committed by itself, without a BEGIN and a COMMIT
    round trip around it."""
    return engine.connect().execution_options(isolation_level="AUTOCOMMIT")


def _key(row) -> Delivery:
    return row.topic, row.partition, row.offset


def start(engine: sa.Engine, deliveries: list[Delivery], *, now: datetime) -> set[Delivery]:
    """Count a first attempt for every delivery not seen before, in one statement; return the
    ones that were (started by a worker that did not finish them: the suspects, not counted yet)."""
    if not deliveries:
        return set()
    c = t.ingest_attempts.c
    with _autocommit(engine) as conn:
        stmt = _insert(conn, deliveries, now).on_conflict_do_nothing(
            index_elements=["topic", "partition", "offset"]).returning(c.topic, c.partition, c.offset)
        fresh = {_key(r) for r in conn.execute(stmt)}
    return set(deliveries) - fresh


def begin(engine: sa.Engine, deliveries: list[Delivery], *, now: datetime) -> list[int]:
    """Count one more attempt for each delivery; the attempts so far, this one included."""
    if not deliveries:
        return []
    c = t.ingest_attempts.c
    with _autocommit(engine) as conn:
        stmt = _insert(conn, deliveries, now).on_conflict_do_update(
            index_elements=["topic", "partition", "offset"], set_={"attempts": c.attempts + 1, "last_at": now},
        ).returning(c.topic, c.partition, c.offset, c.attempts)
        counted = {_key(r): r.attempts for r in conn.execute(stmt)}
    return [counted[d] for d in deliveries]


def finish(engine: sa.Engine, deliveries: Iterable[Delivery]) -> None:
    """The deliveries are done (stored, duplicate, dead-lettered): forget their attempts."""
    deliveries = list(deliveries)
    if not deliveries:
        return
    c = t.ingest_attempts.c
    with _autocommit(engine) as conn:
        conn.execute(t.ingest_attempts.delete().where(sa.tuple_(c.topic, c.partition, c.offset).in_(deliveries)))
