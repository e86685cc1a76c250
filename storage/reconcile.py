"""``callvault storage reconcile``: make the bucket and the catalog agree again.

The write protocol (object first, row second) means a crash leaves at most an orphan
object; a lost or externally deleted object leaves a row pointing at nothing. Reconcile
finds both and repairs them: orphan objects (older than a grace period, so in-flight writes
are left alone) are deleted with all their versions; rows whose object is missing are
removed, and a recording left with no copy goes too. Idempotent: a second run reports zero.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable

import sqlalchemy as sa

from .catalog import tables as t
from .objectstore import ObjectStore


@dataclass
class ReconcileReport:
    objects_seen: int = 0
    rows_seen: int = 0
    orphan_objects: list[str] = field(default_factory=list)
    dangling_rows: list[uuid.UUID] = field(default_factory=list)
    recordings_removed: int = 0
    repaired: bool = False

    @property
    def clean(self) -> bool:
        return not self.orphan_objects and not self.dangling_rows

    def summary(self) -> str:
        verb = "removed" if self.repaired else "found"
        return (f"{self.objects_seen} objects, {self.rows_seen} catalog copies: "
                f"{len(self.orphan_objects)} orphan objects {verb}, {len(self.dangling_rows)} dangling rows {verb}, "
                f"{self.recordings_removed} empty recordings removed")


def reconcile(engine: sa.Engine, store: ObjectStore, bucket: str, *, repair: bool = True,
              grace: timedelta = timedelta(minutes=15), now: datetime | None = None,
              say: Callable[[str], None] = lambda _m: None) -> ReconcileReport:
    now = now or datetime.now(timezone.utc)
    report = ReconcileReport(repaired=repair)
    with engine.connect() as conn:
        rows = {key: copy_id for copy_id, key in conn.execute(
            sa.select(t.copies.c.id, t.copies.c.object_key).where(t.copies.c.bucket == bucket))}
    report.rows_seen = len(rows)
    say(f"catalog: {len(rows)} copies in {bucket}")
    present: set[str] = set()
    for info in store.list(bucket):
        report.objects_seen += 1
        present.add(info.key)
        if info.key not in rows and (info.last_modified is None or now - info.last_modified >= grace):
            report.orphan_objects.append(info.key)
    say(f"bucket: {report.objects_seen} objects listed")
    # A row is dangling only if its object was absent from a listing taken *after* the rows
    # were read: re-check each candidate so a copy written meanwhile is not mistaken.
    candidates = [key for key in rows if key not in present]
    report.dangling_rows = [rows[key] for key in candidates if store.head(bucket, key) is None]
    if not repair:
        return report
    if report.orphan_objects:
        # Re-check against the catalog right before deleting: a slow writer may have
        # committed its row since we read them.
        with engine.connect() as conn:
            known = set(conn.execute(sa.select(t.copies.c.object_key).where(
                t.copies.c.object_key.in_(report.orphan_objects))).scalars())
        report.orphan_objects = [k for k in report.orphan_objects if k not in known]
        store.delete_many(bucket, report.orphan_objects)
    if report.dangling_rows:
        with engine.begin() as conn:
            ids = report.dangling_rows
            recording_ids = set(conn.execute(sa.select(t.copies.c.recording_id).where(
                t.copies.c.id.in_(ids))).scalars())
            conn.execute(t.copies.delete().where(t.copies.c.id.in_(ids)))
            empty = [rid for rid in recording_ids if conn.execute(
                sa.select(sa.func.count()).select_from(t.copies).where(t.copies.c.recording_id == rid)).scalar() == 0]
            if empty:
                conn.execute(t.recordings.delete().where(t.recordings.c.id.in_(empty)))
            report.recordings_removed = len(empty)
    say(report.summary())
    return report

