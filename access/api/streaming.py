"""Serving decrypted audio in bounded memory.

Any span, the whole audio included, is read in windows of ``CHUNK`` bytes with
``storage.copies.read_copy_range``: each window fetches (ranged GETs) and authenticates only
the frames under it, so memory stays at one window whatever the length. Windows are aligned
on multiples of ``CHUNK`` (a multiple of the frame sizes in use), so no frame is fetched
twice. The first window is read before the response starts: a missing object or a destroyed
key is still a clean JSON error; past that point the headers are gone and a failure can
only cut the connection (the client sees a short body, never unauthenticated audio).
"""

from __future__ import annotations

import uuid
from typing import Iterator

import sqlalchemy as sa

from storage.copies import read_copy_range
from storage.keys import KeyRing
from storage.objectstore import ObjectStore

CHUNK = 256 * 1024

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

    def prime(self) -> "AudioSpan":
        if self._spans:
            self._first = self._read(*self._spans[0])
        return self

    def __iter__(self) -> Iterator[bytes]:
        for index, (start, end) in enumerate(self._spans):
            if index == 0 and self._first is not None:
                data, self._first = self._first, None
                yield data
            else:
                yield self._read(start, end)
