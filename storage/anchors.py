"""Anchors of the audit chain: its head, signed, in object-locked storage outside the catalog.

The hash chain in ``audit_events`` shows an edit, a deletion or a reordering, but whoever can
write the catalog can also recompute every hash after an edit, or cut the newest entries. So
the head of the chain (``seq``, ``hash``, how many entries up to it, when) is regularly
written here, HMAC-SHA256-signed with a key the catalog does not hold
(``CALLVAULT_STORAGE_AUDIT_ANCHOR_KEY``), one object per anchored head::

    <ledger_prefix>audit-anchor/<seq, 20 digits>.json
    {"v": 1, "seq", "hash", "count", "at", "sig"}

in the erasure ledger's bucket (object lock, COMPLIANCE retention of
``audit_anchor_retention_days``: nobody can delete or overwrite a version before it ends).
``storage.audit.verify`` then checks that every anchored entry is still there with the same
hash and the same number of entries up to it: a recomputed chain or a cut tail no longer
matches a signed anchor. Entries newer than the last anchor are protected by the chain only,
hence anchors at least every ``audit_anchor_interval_seconds`` (each API or CLI process, after a
unit of work's commit once the interval has passed since its own last anchor; the worker, on
its sweep timer), and right after every sweep, erasure and export.

Reading lists every *version* (delete markers are ignored): in a versioned bucket a plain
DELETE only hides an object behind a marker, which object lock does not prevent.

Several processes may anchor the same head: same key, a second version, same content but the
time; harmless. Appends are serialised and ``seq`` is taken under the lock, so the entries up
to a committed head never change afterwards: the count is stable.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import threading
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Iterator

import sqlalchemy as sa

from core.errors import ConfigurationError

from .catalog import tables as t
from .exceptions import StorageError
from .objectstore import ObjectStore
from .settings import StorageSettings

log = logging.getLogger(__name__)
FOLDER = "audit-anchor/"


@dataclass(frozen=True)
class Anchor:
    seq: int
    hash: str
    count: int
    at: str
    v: int = 1

    def payload(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()


def sign(key: bytes, anchor: Anchor) -> str:
    return hmac.new(key, anchor.payload(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class StoredAnchor:
    name: str
    anchor: Anchor | None       # None: unreadable
    signed: bool                # the signature is the anchor key's


def decode_key(raw: str) -> bytes:
    try:
        key = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise ConfigurationError("CALLVAULT_STORAGE_AUDIT_ANCHOR_KEY", "must be 32 bytes, base64-encoded",
                                 hint="python -c 'import base64,os; print(base64.b64encode(os.urandom(32)).decode())'")
    return key


def chain_head(conn: sa.Connection) -> Anchor | None:
    """The newest entry and the number of entries up to it (None: an empty trail)."""
    a = t.audit_events
    head = conn.execute(sa.select(a.c.seq, a.c.hash).order_by(a.c.seq.desc()).limit(1)).first()
    if head is None:
        return None
    count = conn.execute(sa.select(sa.func.count()).select_from(a).where(a.c.seq <= head.seq)).scalar_one()
    return Anchor(seq=head.seq, hash=head.hash, count=count,
                  at=datetime.now(timezone.utc).isoformat(timespec="seconds"))


class AuditAnchors:
    """Write and read the signed anchors of one catalog's audit chain."""

    def __init__(self, store: ObjectStore, bucket: str, prefix: str, key: bytes, *, retention_days: int = 400,
                 interval_seconds: float = 300.0) -> None:
        self.store, self.bucket, self.prefix = store, bucket, f"{prefix}{FOLDER}"
        self._key, self.retention_days, self.interval_seconds = key, retention_days, interval_seconds
        self._lock = threading.Lock()
        self._last_seq: int | None = None
        self._last_time = 0.0  # monotonic time of this process's last anchor

    @classmethod
    def from_settings(cls, store: ObjectStore, settings: StorageSettings) -> "AuditAnchors | None":
        """None when no anchor key is configured (the chain is then verified without anchors)."""
        if settings.audit_anchor_key is None:
            return None
        return cls(store, settings.ledger_bucket, settings.ledger_prefix,
                   decode_key(settings.audit_anchor_key.get_secret_value()),
                   retention_days=settings.audit_anchor_retention_days,
                   interval_seconds=settings.audit_anchor_interval_seconds)

    def _name(self, seq: int) -> str:
        return f"{self.prefix}{seq:020d}.json"

    def write(self, engine: sa.Engine, conn: sa.Connection | None = None) -> Anchor | None:
        """Anchor the committed head now (nothing when it is already this process's last anchor).
        ``conn``: a connection of the caller's, outside any write of its own (a unit of work just
        committed), read with instead of taking a second one from the pool."""
        with self._lock:
            with (nullcontext(conn) if conn is not None else engine.connect()) as reader:
                head = chain_head(reader)
            if head is None or head.seq == self._last_seq:
                self._last_time = time.monotonic()
                return None
            body = json.dumps({**asdict(head), "sig": sign(self._key, head)}, sort_keys=True).encode()
            key = self._name(head.seq)
            self.store.put_locked(self.bucket, key, body, retain_days=self.retention_days)
            self._last_seq, self._last_time = head.seq, time.monotonic()
            return head

    def due(self) -> bool:
        return time.monotonic() - self._last_time >= self.interval_seconds

    def write_quietly(self, engine: sa.Engine, *, only_if_due: bool = False,
                      conn: sa.Connection | None = None) -> Anchor | None:
        """``write`` after a commit: a failure is logged, not raised (what it anchors is committed,
        and the next anchor covers it). A due anchor already being written by another thread is
        left to it: requests committing meanwhile do not queue behind it, each holding its
        connection (50 concurrent listeners emptied the pool that way)."""
        if only_if_due and (not self.due() or self._lock.locked()):
            return None
        try:
            return self.write(engine, conn)
        except (StorageError, sa.exc.SQLAlchemyError) as exc:
            log.warning("audit anchor not written (the next one covers it): %s", type(exc).__name__)
            return None

    def stored(self) -> Iterator[StoredAnchor]:
        """Every version of every anchor, by seq; a version hidden by a delete marker included."""
        found = list(self.store.versions(self.bucket, self.prefix, markers=False))
        for name, version in sorted(found):
            yield self._read(name, self.store.get(self.bucket, name, version_id=version))

    def _read(self, name: str, raw: bytes) -> StoredAnchor:
        try:
            data = json.loads(raw)
            anchor = Anchor(seq=int(data["seq"]), hash=str(data["hash"]), count=int(data["count"]),
                            at=str(data["at"]), v=int(data.get("v", 1)))
            sig = str(data["sig"])
        except (ValueError, TypeError, KeyError):
            return StoredAnchor(name, None, False)
        signed = (hmac.compare_digest(sig.encode("utf-8", "surrogatepass"), sign(self._key, anchor).encode())
                  and name == self._name(anchor.seq))
        return StoredAnchor(name, anchor, signed)
