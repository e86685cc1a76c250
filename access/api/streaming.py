"""Serving decrypted audio in bounded memory.

Any span, the whole audio included, is read in windows of ``CHUNK`` bytes with
``storage.copies.read_copy_range``: each window fetches (ranged GETs) and authenticates only
the frames under it, so memory stays at one window whatever the length. Windows are aligned
on multiples of ``CHUNK`` (a multiple of the frame sizes in use), so no frame is fetched
twice. The first window is read before the response starts, with the catalog row and the
data key the request already has (``prime(conn, row)``: no second row read, no second unwrap,
one ranged GET): a missing object or a destroyed key is still a clean JSON error; past that
point the headers are gone and a failure can only cut the connection (the client sees a short
body, never unauthenticated audio). Each later window reads the row and unwraps the key again
(a connection of its own, for that window only), so an erasure or a sweep during a long
listen stops it at the next window.

Playback overlaps the first window's GET with the audit append (``begin``): the copy is opened
(its key unwrapped) on the request's thread, the GET runs on a reader thread while the request's
thread appends and commits the decision's entry, and the bytes are only taken once both are done.
Iterated asynchronously (what Starlette does with a span), a window already read is handed over
without a thread hand-off; a later one is read in a worker thread.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, AsyncIterator, Callable, Iterator, Mapping

import sqlalchemy as sa
from anyio import to_thread

from storage.copies import open_copy, read_copy_range, read_range
from storage.keys import KeyRing
from storage.objectstore import ObjectStore

CHUNK = 256 * 1024
# The first windows' GETs of playback, overlapped with the audit append (``AudioSpan.begin``): one
# per request in flight, so as many as the worker threads that start them (anyio's 40).
_READERS = ThreadPoolExecutor(max_workers=40, thread_name_prefix="callvault-audio-read")

CONTENT_TYPES = {"opus": "audio/ogg", "ogg": "audio/ogg", "flac": "audio/flac", "wav": "audio/wav",
                 "mp3": "audio/mpeg"}
EXTENSIONS = {"audio/ogg": "ogg", "audio/flac": "flac", "audio/wav": "wav", "audio/mpeg": "mp3"}


def content_type(audio_format: str) -> str:
    return CONTENT_TYPES.get(audio_format.lower(), "application/octet-stream")


def windows(start: int, end: int, chunk: int = CHUNK) -> Iterator[tuple[int, int]]:
    """Inclusive spans covering start..end, cut at multiples of ``chunk``."""
    while start <= end:
        stop = min(end, (start // chunk + 1) * chunk - 1)
        yield start, stop
        start = stop + 1


class AudioSpan:
    """An iterable of plaintext chunks of one copy; the first one is read eagerly (``prime``)."""

    def __init__(self, engine: sa.Engine, store: ObjectStore, keys: KeyRing, copy_id: uuid.UUID, start: int,
                 end: int, chunk: int = CHUNK) -> None:
        self._engine, self._store, self._keys, self._copy_id = engine, store, keys, copy_id
        self._spans = list(windows(start, end, chunk))
        self._first: bytes | None = None

    def _read(self, start: int, end: int) -> bytes:
        # A connection per window: a slow listener must not hold a pooled connection for minutes.
        with self._engine.connect() as conn:
            return read_copy_range(conn, self._store, self._keys, self._copy_id, start, end).data

    def prime(self, conn: sa.Connection | None = None, row: Mapping[str, Any] | None = None,
              key_row: Mapping[str, Any] | None = None) -> "AudioSpan":
        """Read the first window now. Given the request's connection, this copy's catalog row (the
        one its decision was made on) and its caller key's row read with it (None: destroyed),
        nothing is read again from the catalog: the key is unwrapped, the frames fetched."""
        if self._spans:
            if conn is not None and row is not None:
                opened = open_copy(conn, self._keys, row=row, key_row=key_row)
                self._first = read_range(self._store, opened, *self._spans[0]).data
            else:
                self._first = self._read(*self._spans[0])
        return self

    def begin(self, conn: sa.Connection, row: Mapping[str, Any],
              key_row: Mapping[str, Any] | None) -> Callable[[], "AudioSpan"]:
        """``prime``, in two steps: the copy is opened now (a destroyed key raises here) and the
        first window's GET starts on a reader thread; the function returned waits for it and gives
        the span (or raises what the read raised). The caller's thread is free meanwhile."""
        if not self._spans:
            return lambda: self
        opened = open_copy(conn, self._keys, row=row, key_row=key_row)
        reading = _READERS.submit(read_range, self._store, opened, *self._spans[0])

        def primed() -> "AudioSpan":
            self._first = reading.result().data
            return self
        return primed

    @property
    def whole(self) -> bytes | None:
        """All of the span when its one window is already read (the body, no iteration), else None."""
        return self._first if len(self._spans) == 1 else b"" if not self._spans else None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for index, (start, end) in enumerate(self._spans):
            if index == 0 and self._first is not None:
                data, self._first = self._first, None
                yield data
            else:
                yield await to_thread.run_sync(self._read, start, end)

    def __iter__(self) -> Iterator[bytes]:
        for index, (start, end) in enumerate(self._spans):
            if index == 0 and self._first is not None:
                data, self._first = self._first, None
                yield data
            else:
                yield self._read(start, end)
