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


def begin(engine: sa.Engine, deliveries: list[Delivery], *, now: datetime) -> list[int]:
    """Count one more attempt for each delivery; the attempts so far, this one included."""
    if not deliveries:
        return []
    rows = [{"topic": tp, "partition": p, "offset": o, "attempts": 1, "first_at": now, "last_at": now}
            for tp, p, o in deliveries]
    with engine.begin() as conn:
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(t.ingest_attempts).values(rows)
        stmt = stmt.on_conflict_do_update(
            index_elements=["topic", "partition", "offset"],
            set_={"attempts": t.ingest_attempts.c.attempts + 1, "last_at": now},
        ).returning(t.ingest_attempts.c.topic, t.ingest_attempts.c.partition, t.ingest_attempts.c.offset,
                    t.ingest_attempts.c.attempts)
        counted = {(r.topic, r.partition, r.offset): r.attempts for r in conn.execute(stmt)}
    return [counted[d] for d in deliveries]


def earlier(engine: sa.Engine, deliveries: list[Delivery]) -> set[Delivery]:
    """The deliveries that were started before (by a worker that did not finish them)."""
    if not deliveries:
        return set()
    c = t.ingest_attempts.c
    with engine.connect() as conn:
        return {(r.topic, r.partition, r.offset) for r in conn.execute(
            sa.select(c.topic, c.partition, c.offset).where(sa.tuple_(c.topic, c.partition, c.offset)
                                                            .in_(deliveries)))}


def finish(engine: sa.Engine, deliveries: Iterable[Delivery]) -> None:
    """The deliveries are done (stored, duplicate, dead-lettered): forget their attempts."""
    deliveries = list(deliveries)
    if not deliveries:
        return
    c = t.ingest_attempts.c
    with engine.begin() as conn:
        conn.execute(t.ingest_attempts.delete().where(sa.tuple_(c.topic, c.partition, c.offset).in_(deliveries)))
