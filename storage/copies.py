"""The write protocol and the read path of an encrypted stored copy.

Write: object first, catalog row after, both keyed by (recording id, tier, reason), so a
retry overwrites instead of duplicating. A crash between the two leaves at most an orphan
object, which ``storage.reconcile`` removes, or the retry: it HEADs the key before its PUT and
deletes a version no catalog row points at (``_clear_crashed_attempt``), so the version id the
row records (``object_version``, what the sweeper and erasure delete by) is the key's only one.
Two concurrent writers of one copy are serialised (``lock_copy_slot``): otherwise the second's
HEAD would take the first's fresh, not yet committed version for a crashed attempt's.
Read: the version the row records (the current one where it records none), so a version put
on top of it later (a replay after a catalog restore, an overwrite) neither hides nor replaces
the copy; the stored bytes are checked against the catalog's SHA-256 (whole and streamed reads)
and every frame is authenticated (all reads).
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Generator, Iterable, Iterator

import sqlalchemy as sa

from .catalog import tables as t
from .crypto import (
    FRAME_SIZE,
    HEADER_SIZE,
    DecryptionError,
    FrameLayout,
    decrypt_chunks_into_buffer,
    decrypt_range,
    decrypt_stream,
    encode_context,
    encrypt_stream,
    new_data_key,
    parse_header,
)
from .exceptions import CatalogIntegrityError, ObjectNotFound
from .keys import CallerKey, KeyRing, caller_key_columns, joined_caller_key
from .objectstore import ObjectStore


def object_key_for(tenant: str, recording_id: uuid.UUID, tier: str, reason: str = "") -> str:
    """An object key from ids only: never a phone number, never a free-text reason."""
    suffix = f"-{hashlib.sha256(reason.encode()).hexdigest()[:16]}" if reason else ""
    return f"{tenant}/{recording_id}/{tier}{suffix}.cve"


def _aad(object_key: str) -> bytes:
    return encode_context("callvault-copy", object_key)


@dataclass(frozen=True)
class StoredObject:
    object_key: str
    size_bytes: int
    stored_sha256: str
    wrapped_data_key: bytes
    caller_key_id: uuid.UUID
    frame_size: int
    header: bytes | None = None  # the encryption header, kept in the catalog row (one GET per range)
    # The version written; None when the key may hold another version (deleted by listing then).
    object_version: str | None = None


class _Hashing:
    """Pass chunks through while counting and hashing what is actually stored; keeps the first
    ``keep`` bytes (the encryption header)."""

    def __init__(self, chunks, keep: int = 0) -> None:
        self._chunks = chunks
        self.sha = hashlib.sha256()
        self.size = 0
        self._keep = keep
        self.head = b""

    def __iter__(self):
        for chunk in self._chunks:
            self.sha.update(chunk)
            if len(self.head) < self._keep:
                self.head += bytes(chunk[:self._keep - len(self.head)])
            self.size += len(chunk)
            yield chunk


def put_encrypted(conn: sa.Connection, store: ObjectStore, keys: KeyRing, *, caller: CallerKey, bucket: str,
                  object_key: str, audio: bytes | Iterable[bytes], tags: dict[str, str], frame_size: int = FRAME_SIZE,
                  length: int | None = None) -> StoredObject:
    """Encrypt ``audio`` under a fresh data key wrapped by ``caller`` (the recording's key), and upload it.

    ``audio`` may be chunks (``stream_copy``) of a declared ``length``: encrypted and uploaded as
    they come (multipart past ``MULTIPART_THRESHOLD``), in memory of a few parts whatever the length."""
    data_key = new_data_key()
    if isinstance(audio, (bytes, bytearray)):
        length = len(audio)
        chunks: Iterable[bytes] = (audio[i:i + 1024 * 1024] for i in range(0, len(audio), 1024 * 1024))
    elif length is None:
        raise ValueError("streamed audio needs its length (the header declares it before the first frame)")
    else:
        chunks = audio
    hashing = _Hashing(encrypt_stream(chunks, plaintext_length=length, data_key=data_key,
                                      aad=_aad(object_key), frame_size=frame_size), keep=HEADER_SIZE)
    alone = _clear_crashed_attempt(conn, store, bucket, object_key)
    version = store.put(bucket, object_key, iter(hashing), tags=tags)
    return StoredObject(object_key, hashing.size, hashing.sha.hexdigest(),
                        keys.wrap_data_key(caller, data_key, object_key=object_key), caller.id, frame_size,
                        header=hashing.head, object_version=version if alone else None)


def _clear_crashed_attempt(conn: sa.Connection, store: ObjectStore, bucket: str, object_key: str) -> bool:
    """HEAD the key before writing it; whether the version about to be written will be its only one.

    An object there that no catalog row points at is a crashed attempt's (object written, row
    not): its version is deleted, unless object lock protects it (a legal hold survives
    everything but its release). An object a row points at is a live copy's (a rewrite
    under the same key, as after a catalog restore): never deleted here. In both kept cases the
    new row records no version, so its deletion lists and removes every unprotected version."""
    found = store.head(bucket, object_key)
    if found is None or found.version_id is None:  # nothing there, or an unversioned bucket: overwritten
        return True
    if conn.execute(sa.select(t.copies.c.id).where(t.copies.c.object_key == object_key)).first() is not None:
        return False
    return store.delete_versions(bucket, [(object_key, found.version_id)]) == 1


_COPY_SLOT_LOCKS = 0x63765F63  # PostgreSQL advisory lock class of copy slots ("cv_c")


def lock_copy_slot(conn: sa.Connection, recording_id: uuid.UUID, tier: str) -> None:
    """Serialise the writers of one (recording, tier) copy until this transaction ends.

    Without it two concurrent writers of the same copy race: the second's HEAD finds the first's
    fresh version with no row yet (uncommitted) and ``_clear_crashed_attempt`` deletes it, so the
    first commits a row naming a version that is gone. Call it before looking for the existing
    row: the second writer then waits for the first's commit and finds its row.
    PostgreSQL: a transaction-scoped advisory lock (two-int key space, the audit chain's lock is
    a single bigint); SQLite: a no-op UPDATE of the recording row, which takes the database's
    write lock (one writer at a time) until the commit."""
    if conn.dialect.name == "postgresql":
        slot = int.from_bytes(hashlib.sha256(f"{recording_id}/{tier}".encode()).digest()[:4], "big", signed=True)
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_COPY_SLOT_LOCKS, slot)))
    else:
        conn.execute(t.recordings.update().where(t.recordings.c.id == recording_id)
                     .values(id=t.recordings.c.id))


def upsert_copy(conn: sa.Connection, *, recording_id: uuid.UUID, tier: str, stored: StoredObject, bucket: str,
                expires_at: datetime, created_by: str, reason: str = "", training_report: str | None = None,
                now: datetime | None = None, new_recording: bool = False) -> uuid.UUID:
    """Write the catalog row of a copy; a retry of the same (recording, tier, reason) overwrites it.
    ``new_recording``: the recording row was inserted in this transaction, so it has no copy yet
    (the lookup is skipped; a copy there would fail the insert)."""
    now = now or datetime.now(timezone.utc)
    values: dict[str, Any] = dict(
        object_key=stored.object_key, bucket=bucket, size_bytes=stored.size_bytes,
        stored_sha256=stored.stored_sha256, wrapped_data_key=stored.wrapped_data_key,
        caller_key_id=stored.caller_key_id, frame_size=stored.frame_size, expires_at=expires_at,
        training_report=training_report, header=stored.header, object_version=stored.object_version,
    )
    existing = None if new_recording else conn.execute(sa.select(t.copies.c.id).where(
        t.copies.c.recording_id == recording_id, t.copies.c.tier == tier, t.copies.c.reason == reason)).scalar()
    if existing is not None:
        conn.execute(t.copies.update().where(t.copies.c.id == existing).values(**values))
        return existing
    copy_id = uuid.uuid4()
    conn.execute(t.copies.insert(), dict(id=copy_id, recording_id=recording_id, tier=tier, reason=reason,
                                         created_at=now, created_by=created_by, **values))
    return copy_id


def _copy_row(conn: sa.Connection, copy_id: uuid.UUID) -> sa.RowMapping:
    """The copy's row with its caller key's columns (``caller_key_columns``): one statement."""
    row = conn.execute(sa.select(t.copies, *caller_key_columns())
                       .outerjoin(t.caller_keys, t.caller_keys.c.id == t.copies.c.caller_key_id)
                       .where(t.copies.c.id == copy_id)).mappings().first()
    if row is None:
        raise ObjectNotFound(f"copy {copy_id} is not in the catalog")
    return row


_READ = object()  # the caller key's row is not known yet: read it


def _data_key(conn: sa.Connection, keys: KeyRing, row: Any, key_row: Any = _READ) -> bytes:
    """The copy's data key, unwrapped under its caller key: the one in ``key_row`` (a
    ``caller_keys`` row read with the copy's; None: none, destroyed), else read now."""
    caller = None if key_row is _READ else keys.key_of_row(key_row, row["caller_key_id"])
    return keys.unwrap_data_key(conn, caller_key_id=row["caller_key_id"], wrapped=row["wrapped_data_key"],
                                object_key=row["object_key"], caller=caller)


WHOLE_READ_CHUNK = 1024 * 1024


def read_copy(conn: sa.Connection, store: ObjectStore, keys: KeyRing, copy_id: uuid.UUID) -> bytearray:
    """The whole decrypted audio of a copy, every byte of it authenticated.

    One GET, read in chunks: each chunk's frames are decrypted into the one preallocated
    plaintext buffer while the next chunk is still arriving; the ciphertext is never held whole.

    The frames' own tags are the integrity check. Every object has its own data key, and every
    frame is authenticated together with the header, its index and whether it is the last one:
    a changed byte, a truncated, extended or reordered object, another copy swapped in or an
    older version rolled back all fail authentication, and nothing is returned then. Only on
    that failure is the object read again and its SHA-256 compared with the catalog's, to tell
    which it was (``CatalogIntegrityError``: the stored bytes are not the ones written;
    ``DecryptionError``: they are, and the key does not open them). A read that succeeds costs
    no hash: SHA-256 of a large copy costs as much CPU as its download."""
    row = _copy_row(conn, copy_id)
    data_key = _data_key(conn, keys, row, joined_caller_key(row))
    chunks = _stored_chunks(store, row)
    try:
        return decrypt_chunks_into_buffer(chunks, data_key=data_key, aad=_aad(row["object_key"]))
    except DecryptionError:
        chunks.close()
        _check_stored(_Hashing(_stored_chunks(store, row)), row, copy_id)
        raise


def _stored_chunks(store: ObjectStore, row: Any) -> Generator[bytes, None, None]:
    """The copy's stored object (its recorded version) as chunks, read as they arrive."""
    return store.stream(row["bucket"], row["object_key"], chunk_size=WHOLE_READ_CHUNK,
                        version=row.get("object_version"))


def _check_stored(stored: _Hashing, row: Any, copy_id: uuid.UUID) -> None:
    """Hash what is left of ``stored`` and compare it with the catalog's SHA-256."""
    for _ in stored:
        pass
    if stored.sha.hexdigest() != row["stored_sha256"]:
        raise CatalogIntegrityError(f"copy {copy_id}: stored object {row['object_key']} does not match its "
                                    "catalog SHA-256 (corrupted or replaced)",
                                    hint="restore it from a backup or re-ingest")


def stream_copy(conn: sa.Connection, store: ObjectStore, keys: KeyRing, copy_id: uuid.UUID) -> Iterator[bytes]:
    """The decrypted audio of a copy as an iterator of frames, in memory of a few frames.

    The catalog row is read and the data key unwrapped now, so ``conn`` may be released as soon
    as this returns: the iterator touches only the object store. Every frame is authenticated
    before it is yielded, and the stored bytes' SHA-256 is checked against the catalog once the
    last frame has gone: a ``CatalogIntegrityError`` or ``DecryptionError`` raised by the iterator
    means "abort what was written", never "done" (``read_copy`` is the whole-object equivalent)."""
    row = _copy_row(conn, copy_id)
    data_key = _data_key(conn, keys, row, joined_caller_key(row))

    def generate() -> Iterator[bytes]:  # the GET happens on the first next(), the connection gone by then
        stored = _Hashing(store.stream(row["bucket"], row["object_key"], version=row.get("object_version")))
        yield from decrypt_stream(iter(stored), data_key=data_key, aad=_aad(row["object_key"]))
        _check_stored(stored, row, copy_id)

    return generate()


@dataclass(frozen=True)
class PlainRange:
    data: bytes
    start: int
    end: int
    total: int


def plaintext_length(size_bytes: int, frame_size: int) -> int:
    """The audio length of a stored object, from its stored size (no request needed)."""
    frames = max(1, -(-(size_bytes - HEADER_SIZE) // (frame_size + 16)))
    return size_bytes - HEADER_SIZE - 16 * frames


@dataclass(frozen=True)
class OpenCopy:
    """A copy's catalog row and its unwrapped data key: all a ranged read needs besides the store."""

    row: Any  # the copies row (a mapping)
    data_key: bytes

    @property
    def total(self) -> int:
        return plaintext_length(self.row["size_bytes"], self.row["frame_size"])


def open_copy(conn: sa.Connection, keys: KeyRing, copy_id: uuid.UUID | None = None, *,
              row: Any = None, key_row: Any = _READ) -> OpenCopy:
    """Its catalog row and its data key, unwrapped now (``KeyDestroyedError`` once erased); the
    row and its caller key's are read in one statement, unless the caller already has them:
    ``row``, and ``key_row`` (its ``caller_keys`` row, selected with ``caller_key_columns``;
    None: none, destroyed)."""
    if row is None:
        row = _copy_row(conn, copy_id)
        key_row = joined_caller_key(row)
    return OpenCopy(row, _data_key(conn, keys, row, key_row))


def read_range(store: ObjectStore, opened: OpenCopy, start: int, end: int | None) -> PlainRange:
    """Bytes start..end (inclusive, clamped) of an opened copy's audio: one ranged GET of just
    the frames covering the range when the catalog row holds the encryption header (every copy
    written since migration 0008), else two (the header first); each frame is authenticated.
    A header in the row that is not the object's fails authentication like a tampered object."""
    row, total = opened.row, opened.total
    end = total - 1 if end is None else min(end, total - 1)
    if total == 0 or start > end:
        raise ValueError(f"range {start}-{end} is outside 0-{total - 1}")
    version = row.get("object_version")
    header = row.get("header") or store.get(row["bucket"], row["object_key"], start=0, end=HEADER_SIZE - 1,
                                            version_id=version)
    layout: FrameLayout = parse_header(header).layout
    first, last = layout.frame_range_for(start, end)
    span_start, span_end = layout.ciphertext_span(first, last)
    frames = store.get(row["bucket"], row["object_key"], start=span_start, end=span_end, version_id=version)
    data = decrypt_range(header, frames, first_frame=first, data_key=opened.data_key, aad=_aad(row["object_key"]),
                         plain_start=start, plain_end_inclusive=end)
    return PlainRange(data, start, end, total)


def read_copy_range(conn: sa.Connection, store: ObjectStore, keys: KeyRing, copy_id: uuid.UUID,
                    start: int, end: int | None) -> PlainRange:
    """``read_range`` of the copy ``copy_id`` (its row read and its key unwrapped with ``conn``)."""
    opened = open_copy(conn, keys, copy_id)
    return read_range(store, opened, start, end)
