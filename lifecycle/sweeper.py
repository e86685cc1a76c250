"""The sweeper: delete every expired, unheld copy, on time, and leave nothing behind.

Per batch, three steps, each safe to interrupt:

1. *mark*: ``deleting_at = now`` on up to ``batch_size`` expired, unheld copies (on
   PostgreSQL with ``FOR UPDATE SKIP LOCKED``, so several sweepers share the work). A copy
   being held is never marked, and a marked copy can no longer be held.
2. *delete objects*: each marked copy's object version, named by the version id its row
   recorded at write time (DeleteObjects, 1,000 a call, no listing); a row without one (older
   copies) has every version of its key listed and deleted.
3. *delete rows*: the marked copies, then every recording left without a copy; one PII-free
   audit entry per copy and per recording (ids and tier only: no number, no audio).

A sweep killed anywhere is finished by the next one: marked rows are taken first, deleting an
already-deleted object is a no-op. Its cost grows with the number of expired copies (an index
on ``expires_at`` over unheld copies), not with the size of the catalog.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

import sqlalchemy as sa

from core.vocabulary import AuditAction
from storage.anchors import AuditAnchors
from storage.audit import anchor, append_many
from storage.catalog import tables as t
from storage.objectstore import ObjectStore


@dataclass
class SweepReport:
    expired: int = 0            # copies found expired and unheld (dry run: would be deleted)
    held_expired: int = 0       # expired copies kept because of a legal hold
    deleted_copies: int = 0
    deleted_recordings: int = 0
    batches: int = 0
    events: list[dict] = field(default_factory=list)

    def summary(self, dry_run: bool = False) -> str:
        if dry_run:
            return (f"{self.expired} expired copies would be deleted; {self.held_expired} expired copies are "
                    "kept under legal hold")
        return (f"deleted {self.deleted_copies} copies and {self.deleted_recordings} recordings in "
                f"{self.batches} batches; {self.held_expired} expired copies kept under legal hold")


def _expired(now: datetime):
    return sa.and_(t.copies.c.expires_at <= now, t.copies.c.hold == sa.false())


def count_due_queries(now: datetime) -> tuple[sa.Select, sa.Select]:
    """Due (expired and unheld, or marked) and held-and-expired: each reads a partial index
    (``ix_copies_expires_not_held`` + ``ix_copies_deleting``, ``ix_copies_held_expires``), not the table."""
    due = sa.select(sa.func.count()).select_from(t.copies).where(
        sa.or_(_expired(now), t.copies.c.deleting_at.is_not(None)))
    held = sa.select(sa.func.count()).select_from(t.copies).where(
        t.copies.c.expires_at <= now, t.copies.c.hold == sa.true())
    return due, held


def count_due(conn: sa.Connection, now: datetime) -> tuple[int, int]:
    due, held = count_due_queries(now)
    return conn.execute(due).scalar(), conn.execute(held).scalar()


def _mark(engine: sa.Engine, now: datetime, batch_size: int) -> list[sa.Row]:
    """Step 1: claim a batch (interrupted ones first) and commit the claim."""
    cols = (t.copies.c.id, t.copies.c.recording_id, t.copies.c.tier, t.copies.c.bucket, t.copies.c.object_key,
            t.copies.c.object_version,
            sa.select(t.recordings.c.tenant_id).where(t.recordings.c.id == t.copies.c.recording_id)
            .scalar_subquery().label("tenant"))
    with engine.begin() as conn:
        pending = sa.select(*cols).where(t.copies.c.deleting_at.is_not(None)).limit(batch_size)
        fresh = sa.select(*cols).where(_expired(now), t.copies.c.deleting_at.is_(None)) \
            .order_by(t.copies.c.expires_at).limit(batch_size)
        if conn.dialect.name == "postgresql":
            pending = pending.with_for_update(skip_locked=True)
            fresh = fresh.with_for_update(skip_locked=True)
        rows = conn.execute(pending).all()
        if not rows:
            rows = conn.execute(fresh).all()
            ids = [r.id for r in rows]
            if ids:
                # ``hold = false`` again: a hold set since the select wins over the deletion.
                marked = set(conn.execute(t.copies.update().where(
                    t.copies.c.id.in_(ids), t.copies.c.hold == sa.false()).values(deleting_at=now)
                    .returning(t.copies.c.id)).scalars())
                rows = [r for r in rows if r.id in marked]
    return rows


def _delete_rows(engine: sa.Engine, rows: list[sa.Row], now: datetime) -> tuple[int, list[uuid.UUID]]:
    """Step 3: the copies, then recordings left empty, with their audit entries (stamped with the
    real clock; a sweep run "as of" another time keeps that time in the detail)."""
    tenant_of = {r.recording_id: r.tenant for r in rows}
    ids = [r.id for r in rows]
    recording_ids = {r.recording_id for r in rows}
    with engine.begin() as conn:
        conn.execute(t.copies.delete().where(t.copies.c.id.in_(ids), t.copies.c.deleting_at.is_not(None)))
        still_used = set(conn.execute(sa.select(t.copies.c.recording_id).where(
            t.copies.c.recording_id.in_(recording_ids))).scalars())
        empty = [rid for rid in recording_ids if rid not in still_used]
        if empty:
            conn.execute(t.recordings.delete().where(t.recordings.c.id.in_(empty)))
        append_many(conn, [
            *({"tenant": r.tenant, "actor": "sweeper", "role": "system", "action": AuditAction.COPY_DELETE, "target_type": "copy",
               "target_id": str(r.id), "outcome": "done", "reason": "retention expired", "at": now,
               "detail": {"recording_id": str(r.recording_id), "tier": r.tier}} for r in rows),
            *({"tenant": tenant_of.get(rid), "actor": "sweeper", "role": "system", "action": AuditAction.COPY_DELETE,
               "target_type": "recording", "target_id": str(rid), "outcome": "done", "reason": "no copy left",
               "at": now} for rid in empty),
        ])
    return len(ids), empty


def sweep(engine: sa.Engine, store: ObjectStore, *, now: datetime, batch_size: int = 500, dry_run: bool = False,
          progress: Callable[[int], None] = lambda _n: None, max_batches: int | None = None,
          anchors: AuditAnchors | None = None) -> SweepReport:
    """Sweep, then anchor the audit chain (``anchors``: the chain's, if configured)."""
    report = SweepReport()
    with engine.connect() as conn:
        report.expired, report.held_expired = count_due(conn, now)
    if dry_run:
        return report
    while max_batches is None or report.batches < max_batches:
        rows = _mark(engine, now, batch_size)
        if not rows:
            break
        store.delete_located((r.bucket, r.object_key, r.object_version) for r in rows)
        deleted, empty = _delete_rows(engine, rows, now)
        report.batches += 1
        report.deleted_copies += deleted
        report.deleted_recordings += len(empty)
        report.events.extend({"type": "expired", "copy_id": str(r.id), "recording_id": str(r.recording_id),
                              "tier": r.tier, "at": now.isoformat()} for r in rows)
        progress(deleted)
    anchor(engine, anchors)
    return report
