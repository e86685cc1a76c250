"""The erasure ledger: every erasure, also written outside the catalog, append-only.

A catalog backup holds what an erasure destroyed (the wrapped caller keys, the rows). So
that restoring one cannot undo an erasure, each erasure is first written here: one JSON
object per erasure in a bucket with object lock, each object under COMPLIANCE retention
(nobody, not even the root account, can delete or overwrite it before it ends). After a
restore, ``storage.erasure.replay`` applies every entry again to the catalog.

An entry names ids and keyed hashes only, never a number or audio::

    {"id", "at", "tenant", "number_hashes", "key_ids", "recording_ids", "copy_ids", "kept_copy_ids"}

Keys sort by time (``<prefix>erase/<ns since epoch>-<id>.json``), so replay applies them in order.

Legal holds are journalled beside them (``<prefix>hold/``: copy ids, on or off, actor, time;
no free-text reason, since nothing here can ever be deleted), so a hold set after a backup
survives its restore too: replay brings each copy to its latest journalled hold state.

So are the data subjects' standing requests (``<prefix>subject/``: ``object``, ``restrict`` or
``lift``, tenant, the numbers' keyed hashes, actor, time): an objection made after a backup
still refuses the number's calls once it is restored, and a restriction still keeps its
recordings from all but internal control (``storage.rights``).

So are the changes of the rules a restore must not take back (``<prefix>policy/``): a tenant's
retention of a tier (a shortened one must still delete on time) and a user's revocation (by
the user id's keyed hash: a revoked user stays revoked) (``lifecycle.erasures``).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterator

from .exceptions import StorageError
from .objectstore import ObjectStore
from .settings import StorageSettings


@dataclass(frozen=True)
class LedgerEntry:
    tenant: str
    key_ids: list[str]
    recording_ids: list[str]
    copy_ids: list[str]
    number_hashes: list[str] = field(default_factory=list)
    kept_copy_ids: list[str] = field(default_factory=list)
    at: str = ""
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes, name: str) -> "LedgerEntry":
        try:
            data = json.loads(raw)
            return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        except (ValueError, TypeError, KeyError) as exc:
            raise StorageError(f"erasure ledger entry {name} is unreadable: {exc}",
                               hint="the ledger is object-locked: report it, do not edit it") from exc


SUBJECT_KINDS = ("object", "restrict", "lift")


@dataclass(frozen=True)
class SubjectEvent:
    """A journalled standing request of a data subject (by the numbers' keyed hashes)."""

    kind: str  # one of SUBJECT_KINDS
    tenant: str
    number_hashes: list[str]
    actor: str
    at: datetime


POLICY_KINDS = ("retention", "revoke")


@dataclass(frozen=True)
class PolicyEvent:
    """A journalled change of the rules that a restore must not take back: a tenant's retention
    of a tier (``retention``: tenant, tier, months) or a user's revocation (``revoke``: the user
    id's keyed hash, ``KeyRing.user_hash``; no user id in clear, since nothing here is deleted)."""

    kind: str  # one of POLICY_KINDS
    target: str  # the tier, or the user's keyed hash
    actor: str
    at: datetime
    tenant: str | None = None
    months: int | None = None


def written_ns(name: str) -> int:
    """When an entry was written (the writer's wall clock, ns), from its key."""
    try:
        return int(name.rsplit("/", 1)[-1].split("-", 1)[0])
    except ValueError:
        return 0  # not one of ours: as old as can be


@dataclass
class Cursor:
    """Where a replay of the journals starts, and where the next one may.

    ``start``: per journal (``erase``, ``hold``, ``subject``, ``policy``), the key to list after
    (absent: from the first). ``settled_ns``: entries written before this are applied by the
    replay that reads them; a newer one may belong to a request whose catalog transaction has not
    committed yet, so the next replay reads it again. ``reached``: per journal, the newest key read
    that was written before ``settled_ns``: where the next replay may start."""

    start: dict[str, str] = field(default_factory=dict)
    settled_ns: int = 0
    reached: dict[str, str] = field(default_factory=dict)
    read: dict[str, str] = field(default_factory=dict)  # per journal, the newest key read, settled or not

    def saw(self, kind: str, name: str) -> None:
        self.read[kind] = name
        if written_ns(name) < self.settled_ns:
            self.reached[kind] = name

    def tail(self, kind: str) -> "Cursor":
        """A cursor for what was journalled in ``kind`` since this one's reading (``settled_ns`` 0:
        it settles nothing, so the next replay reads it again)."""
        after = self.read.get(kind) or self.start.get(kind)
        return Cursor(start={kind: after} if after else {})


class ErasureLedger:
    """Append and read erasure entries under one prefix of an object-locked bucket."""

    def __init__(self, store: ObjectStore, bucket: str, prefix: str = "callvault/", retention_days: int = 3650) -> None:
        self.store, self.bucket, self.prefix, self.retention_days = store, bucket, prefix, retention_days

    @classmethod
    def from_settings(cls, store: ObjectStore, settings: StorageSettings) -> "ErasureLedger":
        return cls(store, settings.ledger_bucket, settings.ledger_prefix, settings.ledger_retention_days)

    def _put(self, kind: str, body: bytes, *, entry_id: str) -> str:
        # Ordered by the writer's wall clock in nanoseconds, not by ``now`` (a caller's clock may
        # repeat a value): a hold and its release in the same second must replay in order.
        key = f"{self.prefix}{kind}/{time.time_ns():020d}-{entry_id}.json"
        self.store.put_locked(self.bucket, key, body, retain_days=self.retention_days)
        return key

    def record(self, entry: LedgerEntry, *, now: datetime) -> str:
        """Write one erasure, locked in COMPLIANCE mode; an error here must abort the erasure."""
        entry = LedgerEntry(**{**asdict(entry), "at": now.astimezone(timezone.utc).isoformat()})
        return self._put("erase", entry.to_json(), entry_id=entry.id)

    def record_hold(self, copy_ids: list[str], *, on: bool, actor: str, now: datetime) -> str | None:
        """Journal a hold or a release of copies; an error here must abort the change."""
        if not copy_ids:
            return None
        body = json.dumps({"copy_ids": sorted(copy_ids), "on": on, "actor": actor,
                           "at": now.astimezone(timezone.utc).isoformat()}, sort_keys=True).encode()
        return self._put("hold", body, entry_id=uuid.uuid4().hex)

    def record_subject(self, kind: str, *, tenant: str, number_hashes: list[str], actor: str,
                       now: datetime) -> str:
        """Journal a data subject's standing request (``SUBJECT_KINDS``) before it is applied; an
        error here must abort it."""
        if kind not in SUBJECT_KINDS:
            raise ValueError(f"unknown subject request {kind!r}")
        body = json.dumps({"kind": kind, "tenant": tenant, "number_hashes": sorted(set(number_hashes)),
                           "actor": actor, "at": now.astimezone(timezone.utc).isoformat()}, sort_keys=True).encode()
        return self._put("subject", body, entry_id=uuid.uuid4().hex)

    def record_policy(self, kind: str, *, target: str, actor: str, now: datetime, tenant: str | None = None,
                      months: int | None = None) -> str:
        """Journal a retention change or a revocation (``PolicyEvent``) before it is applied; an
        error here must abort it."""
        if kind not in POLICY_KINDS:
            raise ValueError(f"unknown policy change {kind!r}")
        body = json.dumps({"kind": kind, "target": target, "tenant": tenant, "months": months, "actor": actor,
                           "at": now.astimezone(timezone.utc).isoformat()}, sort_keys=True).encode()
        return self._put("policy", body, entry_id=uuid.uuid4().hex)

    def policy_events(self, cursor: Cursor | None = None) -> Iterator[PolicyEvent]:
        """Every journalled retention change and revocation, oldest first."""
        for name, body in self._journal("policy", cursor):
            try:
                e = json.loads(body)
                yield PolicyEvent(e["kind"], e["target"], e["actor"], datetime.fromisoformat(e["at"]),
                                  e.get("tenant"), e.get("months"))
            except (ValueError, KeyError, TypeError) as exc:
                raise StorageError(f"policy journal entry {name} is unreadable: {exc}",
                                   hint="the ledger is object-locked: report it, do not edit it") from exc

    def _journal(self, kind: str, cursor: Cursor | None) -> Iterator[tuple[str, bytes]]:
        """Every object of one kind (``erase``, ``hold``, ``subject``, ``policy``), oldest first:
        (key, body); from ``cursor``'s start of that journal on, if given (and noted in it once read)."""
        after = cursor.start.get(kind) if cursor is not None else None
        for name in sorted(info.key for info in self.store.list(self.bucket, f"{self.prefix}{kind}/",
                                                                start_after=after)):
            yield name, self.store.get(self.bucket, name)
            if cursor is not None:
                cursor.saw(kind, name)

    def subject_events(self, cursor: Cursor | None = None) -> Iterator[SubjectEvent]:
        """Every journalled subject request, oldest first."""
        for name, body in self._journal("subject", cursor):
            try:
                event = json.loads(body)
                yield SubjectEvent(event["kind"], event["tenant"], list(event["number_hashes"]), event["actor"],
                                   datetime.fromisoformat(event["at"]))
            except (ValueError, KeyError, TypeError) as exc:
                raise StorageError(f"subject journal entry {name} is unreadable: {exc}",
                                   hint="the ledger is object-locked: report it, do not edit it") from exc

    def entries(self, cursor: Cursor | None = None) -> Iterator[tuple[str, LedgerEntry]]:
        """Every erasure, oldest first."""
        for name, body in self._journal("erase", cursor):
            yield name, LedgerEntry.from_json(body, name)

    def hold_states(self, cursor: Cursor | None = None) -> dict[str, tuple[bool, str, str]]:
        """The latest journalled hold state of every copy: copy id -> (held, actor, time)."""
        states: dict[str, tuple[bool, str, str]] = {}
        for name, body in self._journal("hold", cursor):
            try:
                event = json.loads(body)
                for copy_id in event["copy_ids"]:
                    states[copy_id] = (bool(event["on"]), event["actor"], event["at"])
            except (ValueError, KeyError, TypeError) as exc:
                raise StorageError(f"hold journal entry {name} is unreadable: {exc}") from exc
        return states


def init_ledger_bucket(client, settings: StorageSettings, *, say: Callable[[str], None] = print) -> list[str]:
    """Create the ledger bucket with versioning and object lock (idempotent; minio SDK client).

    Object lock can only be chosen when a bucket is created: an existing bucket without it
    is refused rather than used, since its entries could be deleted."""
    from minio.error import S3Error

    bucket, changes = settings.ledger_bucket, []
    try:
        if not client.bucket_exists(bucket):
            client.make_bucket(bucket, location=settings.region, object_lock=True)
            changes.append(f"{bucket}: created in {settings.region} with object lock (erasure ledger)")
        try:
            client.get_object_lock_config(bucket)
        except S3Error as exc:
            raise StorageError(f"erasure ledger bucket {bucket} has no object lock: its entries could be deleted",
                               hint="object lock is chosen at creation: set CALLVAULT_STORAGE_LEDGER_BUCKET to a "
                                    "new bucket name and run `callvault storage init`") from exc
    except S3Error as exc:
        raise StorageError(f"storage init failed on bucket {bucket}: {exc.code}: {exc.message}",
                           hint="check the credentials' permissions and the endpoint") from exc
    for line in changes:
        say(line)
    return changes
