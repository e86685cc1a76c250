"""Legal holds: nothing deletes a held copy until the hold is released.

A hold is recorded on the copy row (reason, actor, time) and mirrored to S3 object legal
hold where the bucket has object lock, so even a direct delete through the S3 API fails.
There is no cap on the number of holds. A copy the sweeper has already started deleting
(``deleting_at`` set: it expired) cannot be held; the two updates are atomic per row, so
either the hold or the deletion wins, never both.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache

import sqlalchemy as sa
from botocore.exceptions import ClientError

from access import audit
from storage.catalog import tables as t
from storage.objectstore import ObjectStore, translate

from .exceptions import NotFound


@dataclass
class HoldResult:
    changed: list[uuid.UUID] = field(default_factory=list)
    unchanged: list[uuid.UUID] = field(default_factory=list)
    refused: list[uuid.UUID] = field(default_factory=list)  # already being deleted (expired)
    mirrored: int = 0


def _target_copies(conn: sa.Connection, *, copy_ids: list[uuid.UUID] | None,
                   recording_id: uuid.UUID | None) -> list[sa.Row]:
    query = sa.select(t.copies.c.id, t.copies.c.bucket, t.copies.c.object_key, t.copies.c.hold,
                      t.copies.c.deleting_at)
    if recording_id is not None:
        query = query.where(t.copies.c.recording_id == recording_id)
    else:
        query = query.where(t.copies.c.id.in_(copy_ids or []))
    rows = conn.execute(query).all()
    if not rows:
        raise NotFound("no such copy or recording (expired or erased?)")
    return rows


def _object_lock(store: ObjectStore, bucket: str) -> bool:
    return _lock_cache(store, bucket)


@lru_cache(maxsize=64)
def _lock_cache(store: ObjectStore, bucket: str) -> bool:
    try:
        conf = store.client.get_object_lock_configuration(Bucket=bucket)
    except ClientError:
        return False
    return conf.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"


def _mirror(store: ObjectStore, rows: list[sa.Row], status: str) -> int:
    mirrored = 0
    for row in rows:
        if not _object_lock(store, row.bucket):
            continue
        try:
            store.client.put_object_legal_hold(Bucket=row.bucket, Key=row.object_key, LegalHold={"Status": status})
        except ClientError as exc:
            raise translate(exc, bucket=row.bucket, key=row.object_key) from exc
        mirrored += 1
    return mirrored


def set_hold(conn: sa.Connection, store: ObjectStore, *, reason: str, actor: str, now: datetime,
             copy_ids: list[uuid.UUID] | None = None, recording_id: uuid.UUID | None = None,
             mirror: bool = True, role: str = "system") -> HoldResult:
    if not reason.strip():
        raise ValueError("a legal hold needs a reason")
    result = HoldResult()
    rows = _target_copies(conn, copy_ids=copy_ids, recording_id=recording_id)
    for row in rows:
        (result.unchanged if row.hold else result.changed).append(row.id)
    ids = [row.id for row in rows if not row.hold]
    for chunk in range(0, len(ids), 1000):
        part = ids[chunk:chunk + 1000]
        updated = conn.execute(t.copies.update().where(t.copies.c.id.in_(part), t.copies.c.deleting_at.is_(None))
                               .values(hold=True, hold_reason=reason, hold_actor=actor, hold_at=now)
                               .returning(t.copies.c.id)).scalars().all()
        refused = set(part) - set(updated)
        result.refused.extend(refused)
    result.changed = [i for i in result.changed if i not in set(result.refused)]
    if mirror:
        held = set(result.changed)
        result.mirrored = _mirror(store, [r for r in rows if r.id in held], "ON")
    _audit(conn, "hold", result, actor=actor, role=role, reason=reason, now=now)
    return result


def release_hold(conn: sa.Connection, store: ObjectStore, *, actor: str, now: datetime,
                 copy_ids: list[uuid.UUID] | None = None, recording_id: uuid.UUID | None = None,
                 mirror: bool = True, role: str = "system", reason: str | None = None) -> HoldResult:
    result = HoldResult()
    rows = _target_copies(conn, copy_ids=copy_ids, recording_id=recording_id)
    ids = [row.id for row in rows if row.hold]
    result.unchanged = [row.id for row in rows if not row.hold]
    for chunk in range(0, len(ids), 1000):
        conn.execute(t.copies.update().where(t.copies.c.id.in_(ids[chunk:chunk + 1000]))
                     .values(hold=False, hold_reason=None, hold_actor=None, hold_at=None))
    result.changed = ids
    if mirror:
        released = set(ids)
        result.mirrored = _mirror(store, [r for r in rows if r.id in released], "OFF")
    _audit(conn, "release-hold", result, actor=actor, role=role, reason=reason, now=now)
    return result


def _audit(conn: sa.Connection, action: str, result: HoldResult, *, actor: str, role: str, reason: str | None,
           now: datetime) -> None:
    audit.append_many(conn, [
        *({"actor": actor, "role": role, "action": action, "target_type": "copy", "target_id": str(i),
           "outcome": "done", "reason": reason, "at": now} for i in result.changed),
        *({"actor": actor, "role": role, "action": action, "target_type": "copy", "target_id": str(i),
           "outcome": "failed", "reason": "copy is already being deleted (expired)", "at": now}
          for i in result.refused),
    ])
