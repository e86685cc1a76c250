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

By version: a copy row records the object version it wrote (``object_version``, migration
0008), and a key may hold more than one (a catalog restore brings back a row whose version the
sweeper deleted while a later copy was written under the same key). So the bucket side is
``ListObjectVersions`` grouped by key (key-ordered too; one key's versions in memory at a time):

- a row whose recorded version is not among its key's data versions (or whose key is behind
  a delete marker) is a *dangling row*, repaired as any other;
- a data version no row names, under a key whose row records a version (or whose key has no
  row and no current data), is an *orphan version*: repair deletes it by its id, after a last
  look at the catalog; one marked held (``held-tier`` tag) or protected by object lock (legal
  hold, retention) is a *protected version*, reported as an incident and never deleted. The
  versions under a held row's key are left alone;
- a row with no recorded version keeps the key-level judgement (its object is there when a GET
  finds data; other versions under its key are its own: its deletion lists the key).

Each repair writes one PII-free audit entry (ids only), in the transaction that deletes the
rows. Idempotent: a second repair run finds nothing to repair.

Bounded memory at any size: both sides stream in key order and are merged (``merge``). The
catalog side is one SELECT ordered by the key's bytes (``COLLATE "C"`` on PostgreSQL; SQLite
compares bytes already), read through a server-side cursor; the bucket side is
``list_object_versions``, which lists in UTF-8 byte order; Python compares ``str`` by code point,
the same order. Disagreements are classified and (with ``repair``) repaired in batches of
``BATCH``; the report keeps counts, and ids only for the first ``SAMPLE`` of each kind.

Why a missing object needs no HEAD: the SELECT's snapshot is taken before the listing
starts, and an object is written before its row, so every row the SELECT sees had its
object before the listing reached it. Only rows written within the grace period are
re-checked with a HEAD (a listing may lag a fresh write). An orphan candidate is an object
older than the grace period; it gets a look at its hold markers and, before deletion, a last
look at the catalog (its writer may have committed the row since the SELECT's snapshot).
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from operator import itemgetter
from typing import Callable, Iterator

import sqlalchemy as sa

from core.vocabulary import AuditAction
from storage.admin import HELD_TIER_TAG
from storage.audit import append_many
from storage.catalog import tables as t
from storage.exceptions import ObjectNotFound
from storage.objectstore import KeyVersions, ObjectInfo, ObjectStore

ACTOR = "reconcile"
BATCH = 5_000     # disagreements classified, counted and repaired together
SAMPLE = 1_000    # ids the report keeps of each kind; beyond, counts only
PROGRESS_EVERY = 20  # batches between two progress lines
KINDS = ("orphan_objects", "dangling_rows", "empty_recordings", "held_missing", "held_orphans",
         "orphan_versions", "protected_versions")


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
    orphan_versions: list[tuple[str, str]] = field(default_factory=list)     # (key, version) no row names: deleted
    protected_versions: list[tuple[str, str]] = field(default_factory=list)  # same, under object lock: kept
    counts: Counter = field(default_factory=Counter)               # of each kind; the lists hold a sample
    repaired: bool = False

    def note(self, kind: str, items: list, as_id: Callable | None = None) -> None:
        """Count ``items`` of ``kind`` and keep their ids (``as_id`` of each) while the sample has room."""
        kept = getattr(self, kind)
        self.counts[kind] += len(items)
        sample = items[:max(SAMPLE - len(kept), 0)]
        kept.extend(map(as_id, sample) if as_id else sample)

    def reset(self, kind: str) -> None:
        self.counts[kind] = 0
        getattr(self, kind).clear()

    def count(self, kind: str) -> int:
        return self.counts[kind]

    @property
    def clean(self) -> bool:
        """Nothing to repair and no held copy missing (or held object without its row)."""
        return not any(self.counts[k] for k in KINDS if k != "empty_recordings")

    @property
    def recordings_removed(self) -> int:
        return self.counts["empty_recordings"] if self.repaired else 0

    def _listed(self, kind: str) -> str:
        more = self.counts[kind] - len(getattr(self, kind))
        items = ("@".join(i) if isinstance(i, tuple) else str(i) for i in getattr(self, kind))
        return ", ".join(items) + (f" and {more} more" if more else "")

    def summary(self) -> str:
        verb = "deleted" if self.repaired else "to delete"
        n = self.counts
        lines = [f"s3://{self.bucket}: {self.objects_seen} objects, {self.rows_seen} catalog copies: "
                 f"{n['orphan_objects']} orphan objects {verb}, {n['dangling_rows']} dangling rows "
                 f"{verb}, {n['empty_recordings']} empty recordings {verb}, "
                 f"{n['orphan_versions']} orphan versions {verb}"]
        if n["held_missing"]:
            lines.append(f"INCIDENT: {n['held_missing']} held copies whose object is missing (left alone; "
                         "an operator must find the evidence): " + self._listed("held_missing"))
        if n["held_orphans"]:
            lines.append(f"INCIDENT: {n['held_orphans']} held objects without a catalog row (left alone; "
                         "restore their rows): " + self._listed("held_orphans"))
        if n["protected_versions"]:
            lines.append(f"INCIDENT: {n['protected_versions']} object versions no catalog row names, protected by "
                         "object lock or marked held (left alone; restore their rows): "
                         + self._listed("protected_versions"))
        if not self.repaired and (n["orphan_objects"] or n["dangling_rows"] or n["orphan_versions"]):
            lines.append("report only: run with --repair to delete them")
        return "\n".join(lines)


@dataclass
class Batch:
    """Disagreements found together: objects without a row, rows (not the sweeper's) without an
    object (or without their recorded version), versions no row names under a key that has one."""
    orphans: list[ObjectInfo] = field(default_factory=list)
    missing: list[sa.Row] = field(default_factory=list)
    versions: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.orphans) + len(self.missing) + len(self.versions)


def reconcile(engine: sa.Engine, store: ObjectStore, bucket: str, *, repair: bool = False,
              grace: timedelta = timedelta(minutes=15), now: datetime | None = None,
              say: Callable[[str], None] = lambda _m: None) -> ReconcileReport:
    """Report (and with ``repair`` fix, batch by batch as the merge finds them) one bucket."""
    now = now or datetime.now(timezone.utc)
    report = ReconcileReport(bucket=bucket)
    checker = _HoldMarkers(store, bucket)
    for n, batch in enumerate(scan(engine, store, report, grace=grace, now=now), 1):
        orphans, dangling, versions = _classify(report, batch, checker, count_empty=not repair)
        if repair:
            _repair(engine, store, report, orphans, list(map(_as_uuid, dangling)), versions, now=now)
        if n % PROGRESS_EVERY == 0:
            say(f"{report.rows_seen} catalog copies and {report.objects_seen} objects merged so far")
    report.repaired = repair
    say(report.summary())
    return report


def find(engine: sa.Engine, store: ObjectStore, bucket: str, *, grace: timedelta, now: datetime,
         say: Callable[[str], None] = lambda _m: None) -> ReconcileReport:
    """Read both sides and classify every disagreement; changes nothing."""
    return reconcile(engine, store, bucket, grace=grace, now=now, say=say)


# A catalog row's fields by position (``catalog_in_key_order``), read a batch at a time in C.
_ID, _RECORDING, _HOLD, _COPIES = (itemgetter(i) for i in (1, 2, 3, 7))


def catalog_in_key_order(conn: sa.Connection, bucket: str, recent: datetime) -> sa.Select:
    """The bucket's copies ordered by the key's bytes, the order S3 lists in; each with the
    number of copies its recording has (in any bucket) and whether it was written after ``recent``.
    The key comes first: ``merge`` reads it by position. The counts come from one grouped pass
    joined by hash, not a subquery per row (a million index probes: a sixth of the time at scale)."""
    key, c = t.copies.c.object_key, t.copies.c
    order = key.collate("C") if conn.dialect.name == "postgresql" else key
    sibling = t.copies.alias("sibling")
    per_recording = (sa.select(sibling.c.recording_id, sa.func.count().label("n"))
                     .group_by(sibling.c.recording_id).subquery("per_recording"))
    return (sa.select(key, c.id, c.recording_id, c.hold, c.deleting_at, c.object_version,
                      (c.created_at >= recent).label("recent"), per_recording.c.n.label("copies_of_recording"))
            .join_from(t.copies, per_recording, per_recording.c.recording_id == c.recording_id)
            .where(c.bucket == bucket).order_by(order))


def merge(rows: Iterator, objects: Iterator, report: ReconcileReport | None = None) -> Iterator[tuple]:
    """Pair each row with its key's listing entry: (row, None) for a row without its object,
    (None, object) for an object without a row, (row, object) where both are there; ``report``
    counts what both sides held. A row's key is its first field (``catalog_in_key_order``);
    ``objects`` are anything with a ``key`` (``ObjectInfo``, or ``KeyVersions``: a key with its versions).

    Both inputs must ascend by key; one out of order would make the merge wrong, so it is
    refused (e.g. a catalog sorted by a locale's collation). One generator, the rows' order
    checked inline: the catalog is the long side (a million rows, in the mass-loss case
    nearly all without their object), so each row costs one comparison or two."""
    report = report or ReconcileReport()
    objects = _ascending(objects, lambda o: o.key, report, "objects_seen")
    obj = next(objects, None)
    last, seen = None, 0
    try:
        for row in rows:
            key = row[0]
            if last is not None and key <= last:
                raise _out_of_order(key, last)
            last, seen = key, seen + 1
            if not seen % 1000:
                report.rows_seen = seen
            while obj is not None and obj.key < key:
                yield None, obj
                obj = next(objects, None)
            if obj is not None and obj.key == key:
                yield row, obj
                obj = next(objects, None)
            else:
                yield row, None
    finally:
        report.rows_seen = seen
    while obj is not None:
        yield None, obj
        obj = next(objects, None)


def _out_of_order(here: str, last: str) -> RuntimeError:
    return RuntimeError(f"keys out of byte order ({here!r} after {last!r}): the merge needs both sides "
                        "sorted as S3 lists them (PostgreSQL: ORDER BY ... COLLATE \"C\")")


def _ascending(items: Iterator, key: Callable, report: ReconcileReport, attribute: str) -> Iterator:
    last, seen = None, 0
    try:
        for item in items:
            here = key(item)
            if last is not None and here <= last:
                raise _out_of_order(here, last)
            last, seen = here, seen + 1
            if seen % 1000 == 0:
                setattr(report, attribute, seen)
            yield item
    finally:
        setattr(report, attribute, seen)


def scan(engine: sa.Engine, store: ObjectStore, report: ReconcileReport, *, grace: timedelta,
         now: datetime) -> Iterator[Batch]:
    """Merge the catalog and the version listing; yield the disagreements in batches of ``BATCH``.

    Objects and versions younger than ``grace`` are in-flight writes, rows the sweeper claimed
    are its to finish: neither is a disagreement. A missing row written within ``grace`` is
    re-checked with a HEAD. Batches end between recordings, so a recording's copies are judged
    together (its keys share its prefix, so they meet in the merge one after the other)."""
    batch, settled = Batch(), now - grace
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":  # the sort and the hash join in memory, for this transaction only
            conn.exec_driver_sql("SET LOCAL work_mem = '64MB'")
        rows = _rows(conn, catalog_in_key_order(conn, report.bucket, settled))
        for row, listed in merge(rows, store.key_versions(report.bucket), report):
            missing = batch.missing
            if len(missing) + len(batch.orphans) + len(batch.versions) >= BATCH and (
                    row is None or not missing or row.recording_id != missing[-1].recording_id):
                yield batch
                batch = Batch()
                missing = batch.missing
            if listed is None and not row.recent:  # the mass-loss case's row: no HEAD, no version to look at
                if row.deleting_at is None:
                    missing.append(row)
            else:
                _judge(batch, row, listed, store=store, bucket=report.bucket, settled=settled)
    if len(batch):
        yield batch


def _rows(conn: sa.Connection, query: sa.Select) -> Iterator:
    """``query``'s rows, streamed. On PostgreSQL (psycopg) through a server-side cursor of the
    driver's own, as named tuples whose uuid columns stay text (a ``uuid.UUID`` costs ~1 µs to
    build, twice per row: a fifth of the time at a million rows): ids become UUIDs only where
    they are kept or acted on (``_as_uuid``). Elsewhere SQLAlchemy's rows, ``yield_per``."""
    if conn.dialect.name != "postgresql" or conn.dialect.driver != "psycopg":
        yield from conn.execution_options(yield_per=BATCH).execute(query)
        return
    from psycopg.rows import namedtuple_row
    from psycopg.types.string import TextLoader

    compiled = query.compile(dialect=conn.dialect)
    cursor = conn.connection.driver_connection.cursor(name="callvault_reconcile", row_factory=namedtuple_row)
    cursor.adapters.register_loader("uuid", TextLoader)
    cursor.itersize = BATCH
    try:
        cursor.execute(str(compiled), compiled.params)
        yield from cursor
    finally:
        cursor.close()


def _as_uuid(value: uuid.UUID | str) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(value)


def _judge(batch: Batch, row: sa.Row | None, listed: KeyVersions | None, *, store: ObjectStore, bucket: str,
           settled: datetime) -> None:
    """Note what one key's row and listing disagree on.

    A row with no recorded version (written before migration 0008, or under a key known to
    hold another version) is judged by key, as before: its object is there when a GET finds
    data. A row with a version is there only when that version is among the key's data (and
    the key is not behind a delete marker); every other data version of its key is one no row
    names, an orphan version, unless the row is held (left for an operator) or the sweeper's.
    A key with no row: an orphan object when a GET finds data, else its data versions are orphans."""
    def old(when: datetime | None) -> bool:
        return when is None or when <= settled

    if row is None:
        if listed.live:
            if old(listed.last_modified):
                batch.orphans.append(ObjectInfo(listed.key, 0, last_modified=listed.last_modified))
        else:
            batch.versions.extend((listed.key, v.version_id) for v in listed.data
                                  if v.version_id and old(v.last_modified))
        return
    if row.deleting_at is not None:
        return
    version = row.object_version
    present = listed is not None and listed.live and (
        version is None or any(v.version_id == version for v in listed.data))
    if not present and not (row.recent and store.head(bucket, row.object_key, version=version)):
        batch.missing.append(row)
    if listed is not None and version is not None and not row.hold:
        batch.versions.extend((listed.key, v.version_id) for v in listed.data
                              if v.version_id and v.version_id != version and old(v.last_modified))


class _HoldMarkers:
    """Whether an orphan object is marked held (``held-tier`` tag, or an S3 legal hold in a locked bucket)."""

    def __init__(self, store: ObjectStore, bucket: str) -> None:
        self.store, self.bucket, self._locked = store, bucket, None

    def held(self, key: str) -> bool:
        if HELD_TIER_TAG in self.store.get_tags(self.bucket, key):
            return True
        return self._lock_enabled() and self.store.legal_hold(self.bucket, key)

    def held_version(self, key: str, version: str) -> bool:
        """Whether one version is marked held (``held-tier`` tag) or protected by object lock."""
        if HELD_TIER_TAG in self.store.get_tags(self.bucket, key, version=version):
            return True
        return self._lock_enabled() and self.store.protected(self.bucket, key, version)

    def _lock_enabled(self) -> bool:
        """Whether the bucket has object lock (asked once)."""
        if self._locked is None:
            self._locked = self.store.object_lock_enabled(self.bucket)
        return self._locked


def _classify(report: ReconcileReport, batch: Batch, checker: _HoldMarkers, *,
              count_empty: bool) -> tuple[list[str], list[uuid.UUID], list[tuple[str, str]]]:
    """Note the batch's incidents in the report; return what a repair may delete (orphan keys,
    row ids, orphan versions). ``count_empty``: also note what a repair would delete (a report)."""
    orphans, held_orphans = [], []
    for info in batch.orphans:
        try:
            (held_orphans if checker.held(info.key) else orphans).append(info.key)
        except ObjectNotFound:
            continue  # gone since the listing
    versions, protected = [], []
    for key, version in batch.versions:
        try:
            (protected if checker.held_version(key, version) else versions).append((key, version))
        except ObjectNotFound:
            continue
    report.note("held_orphans", held_orphans)
    report.note("protected_versions", protected)
    dangling = batch.missing
    held = any(map(_HOLD, dangling))
    report.note("held_missing", [r.id for r in dangling if r.hold] if held else [], _as_uuid)
    if held:
        dangling = [r for r in dangling if not r.hold]
    ids = list(map(_ID, dangling))  # text on PostgreSQL (``_rows``): made UUIDs where kept or repaired
    if count_empty:
        report.note("orphan_objects", orphans)
        report.note("orphan_versions", versions)
        report.note("dangling_rows", ids, _as_uuid)
        report.note("empty_recordings", _left_empty(dangling), _as_uuid)
    return orphans, ids, versions


def _left_empty(dangling: list) -> list[uuid.UUID]:
    """Recordings whose every copy is among these rows (a batch holds all of a recording's
    rows in this bucket; ``copies_of_recording`` counts those in other buckets too)."""
    recordings = list(map(_RECORDING, dangling))
    gone, copies = Counter(recordings), dict(zip(recordings, map(_COPIES, dangling)))
    return [rid for rid, n in gone.items() if n == copies[rid]]


def apply_repairs(engine: sa.Engine, store: ObjectStore, report: ReconcileReport, *, now: datetime) -> None:
    """Repair what a report of ``find`` lists (its sample: ``reconcile(repair=True)`` repairs
    everything as it streams)."""
    orphans, dangling = list(report.orphan_objects), list(report.dangling_rows)
    versions = list(report.orphan_versions)
    for kind in ("orphan_objects", "dangling_rows", "empty_recordings", "orphan_versions"):
        report.reset(kind)
    _repair(engine, store, report, orphans, dangling, versions, now=now)
    report.repaired = True


def _repair(engine: sa.Engine, store: ObjectStore, report: ReconcileReport, orphans: list[str],
            dangling: list[uuid.UUID], versions: list[tuple[str, str]], *, now: datetime) -> None:
    """Delete one batch's orphan objects and versions, then its dangling rows and the recordings
    they leave empty, with their audit entries, and note what went in the report.

    Held copies are out of reach twice: they were never candidates, and the row delete
    requires ``hold = false`` (a hold set since the scan wins; the copy moves to ``held_missing``).
    A version object lock protects is kept by the store's deletion even if it was locked since.
    """
    bucket = report.bucket
    orphans, versions = _still_orphans(engine, bucket, orphans, versions)
    if orphans:
        store.delete_many(bucket, orphans)
    if versions:
        store.delete_versions(bucket, versions)
    report.note("orphan_objects", orphans)
    report.note("orphan_versions", versions)
    with engine.begin() as conn:
        deleted = []
        if dangling:
            deleted = conn.execute(t.copies.delete().where(
                t.copies.c.id.in_(dangling), t.copies.c.hold == sa.false(),
                t.copies.c.deleting_at.is_(None)).returning(t.copies.c.id, t.copies.c.recording_id,
                                                            t.copies.c.tier)).all()
        gone = {r.id for r in deleted}
        now_held = set(conn.execute(sa.select(t.copies.c.id).where(
            t.copies.c.id.in_(set(dangling) - gone), t.copies.c.hold == sa.true())).scalars()) if dangling else set()
        report.note("held_missing", [i for i in dangling if i in now_held])
        report.note("dangling_rows", [i for i in dangling if i in gone])
        recording_ids = {r.recording_id for r in deleted}
        still_used = set(conn.execute(sa.select(t.copies.c.recording_id).where(
            t.copies.c.recording_id.in_(recording_ids))).scalars()) if recording_ids else set()
        empty = sorted(recording_ids - still_used)
        report.note("empty_recordings", empty)
        tenant_of = dict(conn.execute(sa.select(t.recordings.c.id, t.recordings.c.tenant_id).where(
            t.recordings.c.id.in_(recording_ids))).all()) if recording_ids else {}
        if empty:
            conn.execute(t.recordings.delete().where(t.recordings.c.id.in_(empty)))
        append_many(conn, [
            *(_entry(AuditAction.RECONCILE_ORPHAN_OBJECT, "object", key, "no catalog row", now, {"bucket": bucket})
              for key in orphans),
            *(_entry(AuditAction.RECONCILE_ORPHAN_OBJECT, "object", key, "no catalog row names this version", now,
                     {"bucket": bucket, "version": version}) for key, version in versions),
            *(_entry(AuditAction.RECONCILE_DANGLING_COPY, "copy", str(r.id), "object missing from the bucket", now,
                     {"bucket": bucket, "recording_id": str(r.recording_id), "tier": r.tier},
                     tenant=tenant_of.get(r.recording_id)) for r in deleted),
            *(_entry(AuditAction.RECONCILE_EMPTY_RECORDING, "recording", str(rid), "no copy left", now,
                     tenant=tenant_of.get(rid)) for rid in empty),
        ])


def _still_orphans(engine: sa.Engine, bucket: str, orphans: list[str],
                   versions: list[tuple[str, str]]) -> tuple[list[str], list[tuple[str, str]]]:
    """A last look at the catalog before deleting (a slow writer may have committed its row since
    the scan's snapshot): an orphan key now has a row; an orphan version is now named by a row of
    its key, or its key has a row with no recorded version (judged by key: all versions its own)."""
    keys = set(orphans) | {key for key, _ in versions}
    if not keys:
        return orphans, versions
    c = t.copies.c
    with engine.connect() as conn:
        found = conn.execute(sa.select(c.object_key, c.object_version).where(
            c.bucket == bucket, c.object_key.in_(keys))).all()
    known = {r.object_key for r in found}
    claimed = {(r.object_key, r.object_version) for r in found}
    return ([k for k in orphans if k not in known],
            [(k, v) for k, v in versions if (k, v) not in claimed and (k, None) not in claimed])


def _entry(action: str, target_type: str, target_id: str, reason: str, now: datetime,
           detail: dict | None = None, tenant: str | None = None) -> dict:
    return {"tenant": tenant, "actor": ACTOR, "role": "system", "action": action, "target_type": target_type,
            "target_id": target_id, "outcome": "done", "reason": reason, "at": now, "detail": detail}
