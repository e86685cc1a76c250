"""Legal holds: nothing deletes a held copy until the hold is released.

A hold is recorded on the copy row (reason, actor, time), which the sweeper and reconcile
respect, and carried to the copy's object, out of reach of whatever acts on S3 alone:

- **the lifecycle backstop** (``storage.admin``) expires objects tagged ``tier=X``. S3 legal
  hold does not stop it: on a versioned bucket an Expiration rule still puts a delete marker
  on a legally held current version, and a plain GET then answers 404. So a held copy's
  object is retagged ``held-tier=X`` (its other tags kept), which no rule matches, and gets
  ``tier=X`` back on release.
- **a direct delete** through the S3 API: where the bucket has object lock, the copy's
  version (the one its row records, ``object_version``; the key's current one for older rows
  that record none) also gets an S3 object legal hold, so deleting that version fails (our deleters all
  delete by version id; a delete without one only adds a marker, undone by removing it).

S3 is changed before the caller commits the row. A failed protection raises, so the hold
rolls back (objects already protected stay so until a release: it errs towards keeping). A
failed release puts back every protection before raising, since its rows stay held. Setting
a hold again re-protects the objects of copies already held (idempotent): the repair for an
object rewritten since, or for a release whose S3 step went through but whose commit did not.
A held copy whose object is missing is listed in ``missing`` (``reconcile`` reports it too).

There is no cap on the number of holds. A copy the sweeper has already started deleting
(``deleting_at`` set: it expired) cannot be held; the two updates are atomic per row, so
either the hold or the deletion wins, never both.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

import sqlalchemy as sa

from core.vocabulary import AuditAction
from storage import audit
from storage.admin import held_tags, released_tags
from storage.catalog import tables as t
from storage.exceptions import ObjectNotFound
from storage.ledger import ErasureLedger
from storage.objectstore import ObjectStore

from .exceptions import NotFound

S3_CONCURRENCY = 8  # two or three S3 calls per held copy: a recording's copies go in parallel


@dataclass
class HoldResult:
    changed: list[uuid.UUID] = field(default_factory=list)
    unchanged: list[uuid.UUID] = field(default_factory=list)
    refused: list[uuid.UUID] = field(default_factory=list)  # already being deleted (expired)
    mirrored: int = 0   # objects whose S3 legal hold was set or cleared
    retagged: int = 0   # objects whose tags changed (out of, or back under, the backstop rules)
    missing: list[uuid.UUID] = field(default_factory=list)  # copies whose object is not in the bucket


def _target_copies(conn: sa.Connection, *, copy_ids: list[uuid.UUID] | None,
                   recording_id: uuid.UUID | None) -> list[sa.Row]:
    query = sa.select(t.copies.c.id, t.copies.c.tier, t.copies.c.bucket, t.copies.c.object_key, t.copies.c.hold,
                      t.copies.c.deleting_at, t.copies.c.object_version)
    if recording_id is not None:
        query = query.where(t.copies.c.recording_id == recording_id)
    else:
        query = query.where(t.copies.c.id.in_(copy_ids or []))
    rows = conn.execute(query).all()
    if not rows:
        raise NotFound("no such copy or recording (expired or erased?)")
    return rows


@dataclass(frozen=True)
class _Done:
    copy_id: uuid.UUID
    retagged: bool = False
    mirrored: bool = False
    missing: bool = False


def _step(store: ObjectStore, locked: dict[str, bool], on: bool) -> Callable[[sa.Row], _Done]:
    """Protect (``on``) or unprotect one copy's object: tags, then legal hold where there is object lock.
    The version is the one the copy's row records (``object_version``), else the key's current one:
    a later version under the same key (a replay, a stray write) is not the held copy's."""
    def apply(row: sa.Row) -> _Done:
        version = row.object_version
        try:
            tags = store.get_tags(row.bucket, row.object_key, version=version)
            wanted = (held_tags if on else released_tags)(tags, row.tier)
            if wanted != tags:
                store.put_tags(row.bucket, row.object_key, wanted, version=version)
            if locked[row.bucket]:
                store.set_legal_hold(row.bucket, row.object_key, on, version=version)
        except ObjectNotFound:
            return _Done(row.id, missing=True)
        return _Done(row.id, retagged=wanted != tags, mirrored=locked[row.bucket])
    return apply


def _apply(store: ObjectStore, rows: list[sa.Row], on: bool, result: HoldResult) -> None:
    """Run the S3 step on every row; if one fails, re-protect them all (when unprotecting) and raise."""
    if not rows:
        return
    locked = {bucket: store.object_lock_enabled(bucket) for bucket in {r.bucket for r in rows}}
    step = _step(store, locked, on)
    done: list[_Done] = []
    failure: Exception | None = None
    with ThreadPoolExecutor(max_workers=S3_CONCURRENCY) as pool:
        for future in [pool.submit(step, row) for row in rows]:
            try:
                done.append(future.result())
            except Exception as exc:  # noqa: BLE001 - re-raised below, after the undo
                failure = failure or exc
    if failure is not None:
        if not on:  # the rows stay held (the caller rolls back): protect their objects again,
            redo = _step(store, locked, True)  # the failed ones too (a step may fail half way)
            for row in rows:
                try:
                    redo(row)
                except Exception:  # noqa: BLE001 - best effort; the first failure is what we report
                    pass
        raise failure
    result.retagged += sum(d.retagged for d in done)
    result.mirrored += sum(d.mirrored for d in done)
    result.missing.extend(d.copy_id for d in done if d.missing)


def set_hold(conn: sa.Connection, store: ObjectStore, *, reason: str, actor: str, now: datetime,
             copy_ids: list[uuid.UUID] | None = None, recording_id: uuid.UUID | None = None,
             mirror: bool = True, role: str = "system", ledger: ErasureLedger | None = None) -> HoldResult:
    """Hold copies (or every copy of a recording); ``mirror=False`` records the hold in the catalog only."""
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
    refused = set(result.refused)
    result.changed = [i for i in result.changed if i not in refused]
    if ledger is not None:  # outside the catalog, so a restore of an older catalog keeps the hold
        ledger.record_hold([str(i) for i in result.changed], on=True, actor=actor, now=now)
    if mirror:
        _apply(store, [r for r in rows if r.id not in refused], True, result)
    _audit(conn, AuditAction.COPY_HOLD_SET, result, actor=actor, role=role, reason=reason, now=now)
    return result


def release_hold(conn: sa.Connection, store: ObjectStore, *, actor: str, now: datetime,
                 copy_ids: list[uuid.UUID] | None = None, recording_id: uuid.UUID | None = None,
                 mirror: bool = True, role: str = "system", reason: str | None = None,
                 ledger: ErasureLedger | None = None) -> HoldResult:
    """Release holds: the copies' retention applies again (sweeper and backstop rules)."""
    result = HoldResult()
    rows = _target_copies(conn, copy_ids=copy_ids, recording_id=recording_id)
    ids = [row.id for row in rows if row.hold]
    result.unchanged = [row.id for row in rows if not row.hold]
    for chunk in range(0, len(ids), 1000):
        conn.execute(t.copies.update().where(t.copies.c.id.in_(ids[chunk:chunk + 1000]))
                     .values(hold=False, hold_reason=None, hold_actor=None, hold_at=None))
    result.changed = ids
    if ledger is not None:
        ledger.record_hold([str(i) for i in ids], on=False, actor=actor, now=now)
    if mirror:
        # Only the copies released here: touching a copy not held in our snapshot could undo
        # a hold set concurrently.
        released = set(ids)
        _apply(store, [r for r in rows if r.id in released], False, result)
    _audit(conn, AuditAction.COPY_HOLD_RELEASE, result, actor=actor, role=role, reason=reason, now=now)
    return result


def _audit(conn: sa.Connection, action: str, result: HoldResult, *, actor: str, role: str, reason: str | None,
           now: datetime) -> None:
    tenants = audit.copy_tenants(conn, [*result.changed, *result.refused])
    audit.append_many(conn, [
        *({"tenant": tenants.get(str(i)), "actor": actor, "role": role, "action": action, "target_type": "copy",
           "target_id": str(i), "outcome": "done", "reason": reason, "at": now} for i in result.changed),
        *({"tenant": tenants.get(str(i)), "actor": actor, "role": role, "action": action, "target_type": "copy",
           "target_id": str(i), "outcome": "failed", "reason": "copy is already being deleted (expired)", "at": now}
          for i in result.refused),
    ])
