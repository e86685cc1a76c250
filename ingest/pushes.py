"""Calls handed over through a front door (HTTP push, S3 drop), and what became of them.

A push is recorded when its audio has landed (``accept``), before its message is sent, so a
second push of the same telephony id is answered from here: the same audio again is the same
call (nothing is sent twice), other audio is a conflict, unless the first one was
dead-lettered (then the new one takes its place: a corrected call under the same id).
The worker settles each row (``settle``): stored, suppressed, expired on arrival, or
dead-lettered with its reason code. ``status`` is what the pusher is told: a state and a
reason code, never a number. Calls sent straight to Kafka have no row; their status comes
from the catalog (stored) and the dead letters alone. A settled row is kept
``push_status_days`` (``forget_settled``, the worker's sweep), then forgotten: a push's record
does not outlive its use (a call still queued stays, for an operator to see).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import sqlalchemy as sa

from storage.catalog import tables as t

_p = t.pushes


class State(StrEnum):
    QUEUED = "queued"
    STORED = "stored"
    SUPPRESSED = "suppressed"
    EXPIRED_ON_ARRIVAL = "expired-on-arrival"
    ERASED_ON_ARRIVAL = "erased-on-arrival"  # an erasure reached it before it arrived
    DEAD_LETTERED = "dead-lettered"
    DELETED = "deleted"  # stored, then gone: expired and swept, or erased


@dataclass(frozen=True)
class Status:
    tenant: str
    external_id: str
    recording_id: uuid.UUID
    state: State
    reason: str | None = None
    at: datetime | None = None


@dataclass(frozen=True)
class Pushed:
    """A push already on record for this telephony id."""

    fingerprint: str
    outcome: str | None

    @property
    def retryable(self) -> bool:
        """Dead-lettered and never stored: a new push under the same id takes its place."""
        return self.outcome == State.DEAD_LETTERED.value


def find(conn: sa.Connection, recording_id: uuid.UUID) -> Pushed | None:
    row = conn.execute(sa.select(_p.c.fingerprint, _p.c.outcome).where(_p.c.recording_id == recording_id)).first()
    return None if row is None else Pushed(row.fingerprint, row.outcome)


def accept(conn: sa.Connection, *, recording_id: uuid.UUID, tenant: str, external_id: str, door: str,
           principal: str, fingerprint: str, now: datetime, replace: bool = False) -> None:
    """Record a push as queued (``replace``: over a dead-lettered one). A concurrent push of
    the same id makes the insert fail on the primary key: the caller answers it as a replay."""
    values = dict(door=door, principal=principal[:100], fingerprint=fingerprint, accepted_at=now, outcome=None,
                  reason=None, settled_at=None)
    if replace:
        conn.execute(_p.update().where(_p.c.recording_id == recording_id).values(**values))
    else:
        conn.execute(_p.insert().values(recording_id=recording_id, tenant_id=tenant, external_id=external_id,
                                        **values))


def settle(conn: sa.Connection, recording_id: uuid.UUID | None, outcome: str, *, now: datetime,
           reason: str | None = None) -> None:
    """What the worker made of a pushed call (a no-op for calls that came straight from Kafka).
    A stored call stays stored: a later dead letter of a replay does not undo it."""
    if recording_id is None:
        return
    conn.execute(_p.update().where(_p.c.recording_id == recording_id,
                                   sa.or_(_p.c.outcome.is_(None), _p.c.outcome != State.STORED.value))
                 .values(outcome=outcome, reason=reason, settled_at=now))


def status(conn: sa.Connection, *, tenant: str, external_id: str, recording_id: uuid.UUID) -> Status | None:
    """The state of one call of ``tenant``; None when callvault never heard of it."""
    stored = conn.execute(sa.select(t.recordings.c.created_at).where(
        t.recordings.c.tenant_id == tenant, t.recordings.c.external_id == external_id)).first()
    if stored is not None:
        return Status(tenant, external_id, recording_id, State.STORED, at=stored.created_at)
    row = conn.execute(sa.select(_p).where(_p.c.recording_id == recording_id)).mappings().first()
    if row is not None and row["outcome"] is not None:
        state = State.DELETED if row["outcome"] == State.STORED.value else State(row["outcome"])
        return Status(tenant, external_id, recording_id, state, row["reason"], row["settled_at"])
    dead = conn.execute(sa.select(t.dead_letters.c.reason, t.dead_letters.c.created_at).where(
        t.dead_letters.c.tenant_id == tenant, t.dead_letters.c.recording_id == recording_id,
        *([t.dead_letters.c.created_at >= row["accepted_at"]] if row is not None else []))
        .order_by(t.dead_letters.c.created_at.desc())).first()
    if dead is not None:
        return Status(tenant, external_id, recording_id, State.DEAD_LETTERED, dead.reason, dead.created_at)
    if row is not None:
        return Status(tenant, external_id, recording_id, State.QUEUED, at=row["accepted_at"])
    return None


FORGET_BATCH = 5_000  # rows a statement: a backlog never holds the catalog (SQLite: its one writer) for long


def forget_settled(conn: sa.Connection, *, now: datetime, days: int, limit: int = FORGET_BATCH) -> int:
    """Delete up to ``limit`` of the pushes settled more than ``days`` ago (by ``ix_pushes_settled_at``);
    how many."""
    doomed = sa.select(_p.c.recording_id).where(_p.c.settled_at < now - timedelta(days=days)).limit(limit)
    return conn.execute(_p.delete().where(_p.c.recording_id.in_(doomed.scalar_subquery()))).rowcount
