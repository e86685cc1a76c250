"""The export download's pacing and priming (pure iterator helpers of the subjects view)."""

from __future__ import annotations

import time

from access.api.views.subjects import paced, primed


def test_unpaced_is_the_same_iterator_and_paced_keeps_to_its_rate():
    chunks = iter([b"a" * 100_000] * 3)
    assert paced(chunks, None) is chunks
    t0 = time.monotonic()
    out = list(paced(iter([b"a" * 100_000] * 5), 1.0))  # 0.5 MB at 1 MB/s
    assert b"".join(out) == b"a" * 500_000 and 0.45 <= time.monotonic() - t0 < 2.0


def test_primed_reads_the_first_chunk_now_and_keeps_every_chunk():
    read = []

    def chunks():
        for c in (b"1", b"2"):
            read.append(c)
            yield c

    body = primed(chunks())
    assert read == [b"1"] and list(body) == [b"1", b"2"]
    assert list(primed(iter(()))) == []
