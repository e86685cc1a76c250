"""``callvault storage reconcile``: find where the bucket and the catalog disagree; repair on request.

The write protocol (object first, row second) means a crash leaves at most an orphan object;
a lost or externally deleted object leaves a row pointing at nothing. Reconcile reports both
and, only with ``repair=True``, repairs them:

- an *orphan object* (no row, older than a grace period so in-flight writes are left alone)
  is deleted with all its versions, after a last look at the catalog (a slow writer may have
  committed its row meanwhile);
- a *dangling row* (its object answers 404, checked again after the listing) is deleted, and
  a recording left with no copy goes too.

Held copies are never touched (DESIGN: a held copy stays readable until its hold is
released). A held row whose object is missing is not repaired but reported as an incident
for an operator: the evidence is gone from the bucket, and deleting the row would hide that.
An orphan object marked held (``held-tier`` tag or S3 legal hold: its row was lost, e.g. to
a catalog restore) is reported and left alone too. Rows the sweeper has claimed
(``deleting_at`` set) are the sweeper's to finish.

Each repair writes one PII-free audit entry (ids only), in the transaction that deletes the
rows. Idempotent: a second repair run finds nothing to repair.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable

import sqlalchemy as sa

from core.vocabulary import AuditAction
from storage.admin import HELD_TIER_TAG
from storage.audit import append_many
from storage.catalog import tables as t
from storage.exceptions import ObjectNotFound
from storage.objectstore import ObjectStore

ACTOR = "reconcile"


@dataclass
class ReconcileReport:
    bucket: str = ""
    objects_seen: int = 0
    rows_seen: int = 0
    orphan_objects: list[str] = field(default_factory=list)        # no row: deleted on repair
    dangling_rows: list[uuid.UUID] = field(default_factory=list)   # unheld, object missing: deleted on repair
    empty_recordings: list[uuid.UUID] = field(default_factory=list)  # left with no copy by those rows
    held_missing: list[uuid.UUID] = field(default_factory=list)    # held, object missing: incident, kept
    held_orphans: list[str] = field(default_factory=list)          # marked held, no row: incident, kept
    repaired: bool = False

    @property
    def clean(self) -> bool:
        """Nothing to repair and no held copy missing (or held object without its row)."""
        return not (self.orphan_objects or self.dangling_rows or self.held_missing or self.held_orphans)

    @property
    def recordings_removed(self) -> int:
        return len(self.empty_recordings) if self.repaired else 0

    def summary(self) -> str:
        verb = "deleted" if self.repaired else "to delete"
        lines = [f"s3://{self.bucket}: {self.objects_seen} objects, {self.rows_seen} catalog copies: "
                 f"{len(self.orphan_objects)} orphan objects {verb}, {len(self.dangling_rows)} dangling rows "
                 f"{verb}, {len(self.empty_recordings)} empty recordings {verb}"]
        if self.held_missing:
            lines.append(f"INCIDENT: {len(self.held_missing)} held copies whose object is missing (left alone; "
                         "an operator must find the evidence): " + ", ".join(map(str, self.held_missing)))
        if self.held_orphans:
            lines.append(f"INCIDENT: {len(self.held_orphans)} held objects without a catalog row (left alone; "
                         "restore their rows): " + ", ".join(self.held_orphans))
        if not self.repaired and (self.orphan_objects or self.dangling_rows):
            lines.append("report only: run with --repair to delete them")
        return "\n".join(lines)


def reconcile(engine: sa.Engine, store: ObjectStore, bucket: str, *, repair: bool = False,
              grace: timedelta = timedelta(minutes=15), now: datetime | None = None,
              say: Callable[[str], None] = lambda _m: None) -> ReconcileReport:
    """Report (and with ``repair`` fix) one bucket against the catalog; each step is one function."""
    now = now or datetime.now(timezone.utc)
    report = find(engine, store, bucket, grace=grace, now=now, say=say)
    if repair:
        apply_repairs(engine, store, report, now=now)
    say(report.summary())
    return report


def _is_held_object(store: ObjectStore, bucket: str, key: str, locked: bool) -> bool:
    return HELD_TIER_TAG in store.get_tags(bucket, key) or (locked and store.legal_hold(bucket, key))


def find(engine: sa.Engine, store: ObjectStore, bucket: str, *, grace: timedelta, now: datetime,
         say: Callable[[str], None] = lambda _m: None) -> ReconcileReport:
    """Read both sides and classify every disagreement; changes nothing."""
    report = ReconcileReport(bucket=bucket)
    with engine.connect() as conn:
        rows = {r.object_key: r for r in conn.execute(
            sa.select(t.copies.c.id, t.copies.c.object_key, t.copies.c.recording_id, t.copies.c.hold,
                      t.copies.c.deleting_at).where(t.copies.c.bucket == bucket))}
    report.rows_seen = len(rows)
    say(f"catalog: {len(rows)} copies in {bucket}")
    present: set[str] = set()
    candidates: list[str] = []
    for info in store.list(bucket):
        report.objects_seen += 1
        present.add(info.key)
        if info.key not in rows and (info.last_modified is None or now - info.last_modified >= grace):
            candidates.append(info.key)
    say(f"bucket: {report.objects_seen} objects listed")
    locked = store.object_lock_enabled(bucket) if candidates else False
    for key in candidates:
        try:
            held = _is_held_object(store, bucket, key, locked)
        except ObjectNotFound:
            continue  # gone since the listing
        (report.held_orphans if held else report.orphan_objects).append(key)
    # A row is dangling only if its object was absent from a listing taken *after* the rows
    # were read: re-check each candidate so a copy written meanwhile is not mistaken.
    missing = [r for key, r in rows.items() if key not in present and r.deleting_at is None
               and store.head(bucket, key) is None]
    report.held_missing = [r.id for r in missing if r.hold]
    report.dangling_rows = [r.id for r in missing if not r.hold]
    if report.dangling_rows:
        with engine.connect() as conn:
            report.empty_recordings = _left_empty(conn, report.dangling_rows)
    return report


def _left_empty(conn: sa.Connection, copy_ids: list[uuid.UUID]) -> list[uuid.UUID]:
    """Recordings of these copies that have no other copy."""
    recording_ids = set(conn.execute(sa.select(t.copies.c.recording_id).where(t.copies.c.id.in_(copy_ids))).scalars())
    others = set(conn.execute(sa.select(t.copies.c.recording_id).where(
        t.copies.c.recording_id.in_(recording_ids), t.copies.c.id.not_in(copy_ids))).scalars())
    return sorted(recording_ids - others)


def apply_repairs(engine: sa.Engine, store: ObjectStore, report: ReconcileReport, *, now: datetime) -> None:
    """Delete the orphan objects, then the dangling rows and empty recordings with their audit entries.

    Held copies are out of reach twice: they were never candidates, and the row delete
    requires ``hold = false`` (a hold set since ``find`` wins; the copy moves to ``held_missing``).
    """
    bucket = report.bucket
    if report.orphan_objects:
        with engine.connect() as conn:
            known = set(conn.execute(sa.select(t.copies.c.object_key).where(
                t.copies.c.bucket == bucket, t.copies.c.object_key.in_(report.orphan_objects))).scalars())
        report.orphan_objects = [k for k in report.orphan_objects if k not in known]
        store.delete_many(bucket, report.orphan_objects)
    with engine.begin() as conn:
        deleted = []
        if report.dangling_rows:
            deleted = conn.execute(t.copies.delete().where(
                t.copies.c.id.in_(report.dangling_rows), t.copies.c.hold == sa.false(),
                t.copies.c.deleting_at.is_(None)).returning(t.copies.c.id, t.copies.c.recording_id,
                                                            t.copies.c.tier)).all()
        gone = {r.id for r in deleted}
        now_held = set(conn.execute(sa.select(t.copies.c.id).where(
            t.copies.c.id.in_(set(report.dangling_rows) - gone), t.copies.c.hold == sa.true())).scalars())
        report.held_missing.extend(i for i in report.dangling_rows if i in now_held)
        report.dangling_rows = [i for i in report.dangling_rows if i in gone]
        recording_ids = {r.recording_id for r in deleted}
        still_used = set(conn.execute(sa.select(t.copies.c.recording_id).where(
            t.copies.c.recording_id.in_(recording_ids))).scalars())
        report.empty_recordings = sorted(recording_ids - still_used)
        tenant_of = dict(conn.execute(sa.select(t.recordings.c.id, t.recordings.c.tenant_id).where(
            t.recordings.c.id.in_(recording_ids))).all()) if recording_ids else {}
        if report.empty_recordings:
            conn.execute(t.recordings.delete().where(t.recordings.c.id.in_(report.empty_recordings)))
        append_many(conn, [
            *(_entry(AuditAction.RECONCILE_ORPHAN_OBJECT, "object", key, "no catalog row", now, {"bucket": bucket})
              for key in report.orphan_objects),
            *(_entry(AuditAction.RECONCILE_DANGLING_COPY, "copy", str(r.id), "object missing from the bucket", now,
                     {"bucket": bucket, "recording_id": str(r.recording_id), "tier": r.tier},
                     tenant=tenant_of.get(r.recording_id)) for r in deleted),
            *(_entry(AuditAction.RECONCILE_EMPTY_RECORDING, "recording", str(rid), "no copy left", now,
                     tenant=tenant_of.get(rid)) for rid in report.empty_recordings),
        ])
    report.repaired = True


def _entry(action: str, target_type: str, target_id: str, reason: str, now: datetime,
           detail: dict | None = None, tenant: str | None = None) -> dict:
    return {"tenant": tenant, "actor": ACTOR, "role": "system", "action": action, "target_type": target_type,
            "target_id": target_id, "outcome": "done", "reason": reason, "at": now, "detail": detail}
