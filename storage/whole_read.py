"""Whole-object reads of a stored copy: one GET, read from the socket into one reused buffer.

The body is read in runs of whole frames (``FRAMES_PER_READ``, ~1 MiB) straight into one small
buffer reused for every run (``ObjectBody.fill``: no bytes object per chunk, no fresh pages:
on this VM first-touching a fresh 64 MiB costs as much as hashing it); each run is hashed, then
its frames are decrypted straight into the one preallocated plaintext. Nothing is returned before
the whole object's size and SHA-256 match the catalog: an object whose bytes are not the
catalog's (changed, truncated, extended, another copy's, an older version) fails with
``CatalogIntegrityError``; bytes that match but do not decrypt with ``DecryptionError``.

Measured and not kept (``bench/NOTES.md`` §11b): ranged GETs in parallel into a buffer of the
whole object, hashed in order as it filled (0.41-0.49x raw against 0.59-0.62x for one GET).
"""

from __future__ import annotations

import hashlib
from typing import Any

from .crypto import FRAME_SIZE, HEADER_SIZE, TAG_SIZE, DecryptionError, WholeDecryption
from .exceptions import CatalogIntegrityError
from .objectstore import ObjectBody, ObjectStore

FRAMES_PER_READ = 16  # frames per socket fill: ~1 MiB of 64 KiB frames


def integrity_error(copy_id: Any, object_key: str, detail: str = "") -> CatalogIntegrityError:
    return CatalogIntegrityError(f"copy {copy_id}: stored object {object_key} does not match its catalog SHA-256"
                                 f"{detail} (corrupted or replaced)", hint="restore it from a backup or re-ingest")


def read_whole(store: ObjectStore, row: Any, data_key: bytes, *, aad: bytes, copy_id: Any,
               frames_per_read: int = FRAMES_PER_READ) -> bytearray:
    """The decrypted audio of the copy whose catalog row is ``row`` (see the module's docstring)."""
    key, size = row["object_key"], row["size_bytes"]
    sha = hashlib.sha256()
    with store.open_body(row["bucket"], key) as body:
        if body.size != size:
            raise integrity_error(copy_id, key, f" (it is {body.size} bytes, the catalog says {size})")
        head = memoryview(bytearray(min(HEADER_SIZE, size)))
        sha.update(head[:body.fill(head)])
        try:
            whole = WholeDecryption(head, data_key=data_key, aad=aad, stored_size=size)
        except DecryptionError as exc:  # told once the hash says whether the bytes are the catalog's
            failed: DecryptionError | None = exc
            _hash_rest(body, sha, frames_per_read)
        else:
            failed = _read_frames(body, sha, whole, frames_per_read)
    if sha.hexdigest() != row["stored_sha256"]:
        raise integrity_error(copy_id, key)
    if failed is not None:
        raise failed
    return whole.result()


def _read_frames(body: ObjectBody, sha: Any, whole: WholeDecryption, frames: int) -> DecryptionError | None:
    """Runs of ``frames`` frames into one reused buffer: hashed, then decrypted. A frame that
    fails is kept, not raised: the rest is still hashed, so a changed object is told as such."""
    buf = memoryview(bytearray(whole.next_run(frames)))
    while run := whole.next_run(frames):
        got = body.fill(buf[:run])  # short only if the catalog's size is the body's, and the header's not
        sha.update(buf[:got])
        if got < run:
            return DecryptionError("object truncated")
        try:
            whole.open_frames(buf[:run])
        except DecryptionError as exc:
            _hash_rest(body, sha, frames)
            return exc
    return None


def _hash_rest(body: ObjectBody, sha: Any, frames: int) -> None:
    buf = memoryview(bytearray(frames * (FRAME_SIZE + TAG_SIZE)))
    while got := body.fill(buf):
        sha.update(buf[:got])
