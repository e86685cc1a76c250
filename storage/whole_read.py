"""Whole-object reads of a stored copy: ranged GETs in parallel into one buffer, hashed in order.

An object of at least two parts is fetched as ``parts`` ranged GETs at once (the first by the
calling thread, the others by helper threads), each read from the socket straight into its place
in one preallocated buffer of the catalog's size. The calling thread hashes that buffer in order
as it fills (SHA-256 is one sequential chain; hashlib releases the GIL on large updates, so it
overlaps the other parts' downloads) and decrypts each frame into the plaintext buffer once its
bytes are hashed. Nothing is returned before the whole object's SHA-256 matches the catalog: a
size, hash or frame that does not match fails exactly as a single GET would (an object whose
bytes differ from the catalog's: ``CatalogIntegrityError``; bytes that match but do not decrypt:
``DecryptionError``). Smaller objects are one GET, hashed and decrypted as it arrives.
"""

from __future__ import annotations

import hashlib
import threading
from typing import Any

from .crypto import HEADER_SIZE, DecryptionError, WholeDecryption
from .exceptions import CatalogIntegrityError
from .objectstore import ObjectStore

PART_SIZE = 8 * 1024 * 1024  # no part smaller: below two parts, one GET
MAX_PARTS = 3  # 2 cores shared with the object store: more parts only contend


def part_bounds(size: int, part_size: int = PART_SIZE, max_parts: int = MAX_PARTS) -> list[tuple[int, int]]:
    """[start, end) of each part: as many as ``part_size`` allows, at most ``max_parts``, about equal."""
    count = max(1, min(max_parts, size // part_size))
    return [(i * size // count, (i + 1) * size // count) for i in range(count)]


def integrity_error(copy_id: Any, object_key: str, detail: str = "") -> CatalogIntegrityError:
    return CatalogIntegrityError(f"copy {copy_id}: stored object {object_key} does not match its catalog SHA-256"
                                 f"{detail} (corrupted or replaced)", hint="restore it from a backup or re-ingest")


class _Cancelled(Exception):
    """The read failed elsewhere: a helper stops its GET."""


class _Parts:
    """Each part's progress (the absolute offset its bytes reached), its end, and the first failure."""

    def __init__(self, bounds: list[tuple[int, int]]) -> None:
        self.bounds = bounds
        self.reached = [start for start, _ in bounds]
        self.finished = [False] * len(bounds)
        self.sizes: list[int | None] = [None] * len(bounds)  # the object's size each GET reported
        self.error: BaseException | None = None
        self.cancelled = False
        self.cond = threading.Condition()

    def report(self, part: int, count: int) -> None:
        if self.cancelled:
            raise _Cancelled()
        with self.cond:
            self.reached[part] = self.bounds[part][0] + count
            self.cond.notify()

    def finish(self, part: int, size: int | None = None, error: BaseException | None = None) -> None:
        with self.cond:
            self.finished[part], self.sizes[part] = True, size
            self.error = self.error or error
            self.cond.notify()

    def wait(self, part: int, beyond: int) -> int:
        """The offset part ``part`` reached once past ``beyond`` (or it finished, or one failed)."""
        with self.cond:
            while self.reached[part] <= beyond and not self.finished[part] and self.error is None:
                self.cond.wait()
            if self.error is not None:
                raise self.error
            return self.reached[part]


class _Verify:
    """The in-order consumer: hashes what arrived, decrypts the frames hashed so far. A decryption
    failure is kept, not raised: the rest is still hashed, so a changed object is told as such."""

    def __init__(self, stored: memoryview, *, data_key: bytes, aad: bytes) -> None:
        self.stored, self.data_key, self.aad = stored, data_key, aad
        self.sha = hashlib.sha256()
        self.hashed = 0
        self.whole: WholeDecryption | None = None
        self.failed: DecryptionError | None = None

    def advance(self, upto: int) -> None:
        if upto <= self.hashed:
            return
        self.sha.update(self.stored[self.hashed:upto])
        self.hashed = upto
        if self.failed is not None:
            return
        try:
            if self.whole is None and upto >= HEADER_SIZE:
                self.whole = WholeDecryption(self.stored, data_key=self.data_key, aad=self.aad,
                                             stored_size=len(self.stored))
            if self.whole is not None:
                self.whole.open_upto(self.stored, upto)
        except DecryptionError as exc:
            self.failed = exc

    def result(self, want_sha256: str, copy_id: Any, object_key: str) -> bytearray:
        if self.sha.hexdigest() != want_sha256:
            raise integrity_error(copy_id, object_key)
        if self.failed is not None:
            raise self.failed
        if self.whole is None:  # shorter than a header, yet its hash matches
            raise DecryptionError(f"object is shorter than the {HEADER_SIZE}-byte header")
        return self.whole.result()


def _fetch(store: ObjectStore, bucket: str, key: str, stored: memoryview, parts: _Parts, part: int) -> None:
    """A helper thread: part ``part``'s ranged GET into its place in ``stored``."""
    start, end = parts.bounds[part]
    try:
        got = store.read_into(bucket, key, stored[start:end], start=start,
                              progress=lambda count: parts.report(part, count))
    except _Cancelled:
        parts.finish(part)
    except BaseException as exc:  # handed to the reading thread, which raises it
        parts.finish(part, error=exc)
    else:
        parts.finish(part, size=got.total)


def read_whole(store: ObjectStore, row: Any, data_key: bytes, *, aad: bytes, copy_id: Any,
               part_size: int = PART_SIZE, max_parts: int = MAX_PARTS) -> bytearray:
    """The decrypted audio of the copy whose catalog row is ``row``, once the stored object's
    size and SHA-256 match the row's (see the module's docstring)."""
    bucket, key, size = row["bucket"], row["object_key"], row["size_bytes"]
    if size == 0:  # no range of nothing: one plain GET (never written so: a header at least)
        blob = store.get(bucket, key)
        verify = _Verify(memoryview(blob), data_key=data_key, aad=aad)
        verify.advance(len(blob))
        return verify.result(row["stored_sha256"], copy_id, key)
    stored = memoryview(bytearray(size))
    parts = _Parts(part_bounds(size, part_size, max_parts))
    verify = _Verify(stored, data_key=data_key, aad=aad)
    helpers = [threading.Thread(target=_fetch, args=(store, bucket, key, stored, parts, part), daemon=True,
                                name=f"whole-read-{part}") for part in range(1, len(parts.bounds))]
    for helper in helpers:
        helper.start()
    try:
        first = store.read_into(bucket, key, stored[:parts.bounds[0][1]], progress=verify.advance)
        parts.finish(0, size=first.total)
        parts.reached[0] = first.count
        whole = first.count == parts.bounds[0][1]
        for part in range(1, len(parts.bounds)):
            whole = whole and _consume(parts, part, verify)
        parts.cancelled = not whole  # shorter than the catalog says: the helpers' bytes are moot
    except BaseException:
        parts.cancelled = True
        raise
    finally:
        for helper in helpers:
            helper.join()
    _check_sizes(parts, size, copy_id, key)
    return verify.result(row["stored_sha256"], copy_id, key)


def _consume(parts: _Parts, part: int, verify: _Verify) -> bool:
    """Hash and decrypt part ``part`` as it arrives; whether it was whole (else it stopped short:
    the object is shorter than the catalog says)."""
    end = parts.bounds[part][1]
    while verify.hashed < end:
        reached = parts.wait(part, verify.hashed)
        if reached <= verify.hashed:
            return False
        verify.advance(reached)
    return True


def _check_sizes(parts: _Parts, size: int, copy_id: Any, key: str) -> None:
    """Every part whole and every GET telling the catalog's size, else the object is not the copy."""
    for (start, end), reached, total in zip(parts.bounds, parts.reached, parts.sizes):
        if total != size or reached != end:
            told = f"it ends before byte {start}" if total is None else f"it is {total} bytes"
            raise integrity_error(copy_id, key, f" ({told}, the catalog says {size})")
