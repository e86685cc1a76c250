"""HTTP ``Range`` requests on audio (RFC 9110 §14): pure arithmetic, no I/O.

What a browser's audio element sends, and what it gets back:

    no Range, or one we ignore          200, the whole audio
    bytes=a-b      (a <= b)             206, a..min(b, total-1)
    bytes=a-                            206, a..total-1
    bytes=-n       (n > 0)              206, the last n bytes (the whole audio if n >= total)
    a >= total, or bytes=-0             416 with ``Content-Range: bytes */total``

A malformed header (not ``bytes=``, b < a, garbage) is ignored, as RFC 9110 allows, and so
is a multi-range request (``bytes=0-9,20-29``): answering it with the whole audio is always
valid, and no audio player asks for several ranges. ``If-Range`` with another validator
than ours means the client's cached part is stale: the whole audio again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SPEC = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")
_MAX_DIGITS = 19  # past 2**63 nothing is satisfiable anyway; keeps int() cheap


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self, total: int) -> str:
        return f"bytes {self.start}-{self.end}/{total}"


class Unsatisfiable(Exception):
    """The range is well-formed but lies outside the audio: answer 416."""

    def __init__(self, total: int) -> None:
        self.total = total
        super().__init__(f"bytes */{total}")


def parse_range(header: str | None, total: int, *, if_range: str | None = None,
                etag: str | None = None) -> ByteRange | None:
    """The one range to serve, None to serve everything, or ``Unsatisfiable``."""
    if not header:
        return None
    if if_range is not None and if_range.strip() != etag:
        return None
    unit, _, specs = header.partition("=")
    if unit.strip().lower() != "bytes" or not specs:
        return None
    parts = specs.split(",")
    if len(parts) != 1:
        return None  # multi-range: the whole audio (documented above)
    match = _SPEC.match(parts[0])
    if not match:
        return None
    first, last = match.groups()
    if len(first) > _MAX_DIGITS or len(last) > _MAX_DIGITS:
        if first and len(first) > _MAX_DIGITS:
            raise Unsatisfiable(total)
        last = str(2**63) if last else ""
    if not first and not last:
        return None
    if not first:  # suffix: the last n bytes
        n = int(last)
        if n == 0 or total == 0:
            raise Unsatisfiable(total)
        return ByteRange(max(0, total - n), total - 1)
    start = int(first)
    end = int(last) if last else total - 1
    if last and end < start:
        return None  # invalid, so ignored
    if start >= total:
        raise Unsatisfiable(total)
    return ByteRange(start, min(end, total - 1))
