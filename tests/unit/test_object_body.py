"""``ObjectBody.fill`` without a socket: the bytes-copying fallback, and a body that ends before its
Content-Length (a dropped connection) told as the store being unavailable, never as short data."""

from __future__ import annotations

import io

import pytest

from storage.exceptions import ObjectStoreUnavailable
from storage.objectstore import ObjectBody


class _Body(io.BytesIO):
    """A body exposing only ``read`` (no urllib3 response underneath)."""


def test_fill_reads_to_the_end_through_read_when_no_socket_reader_is_exposed():
    body = ObjectBody(_Body(b"0123456789"), 10, "s3://b/k")
    first, rest = memoryview(bytearray(4)), memoryview(bytearray(8))
    assert body.fill(first) == 4 and bytes(first) == b"0123"
    assert body.fill(rest) == 6 and bytes(rest[:6]) == b"456789"
    assert body.fill(memoryview(bytearray(3))) == 0
    body.close()


def test_a_body_ending_before_its_length_is_the_store_unavailable():
    body = ObjectBody(_Body(b"0123"), 10, "s3://b/k")
    with pytest.raises(ObjectStoreUnavailable, match="ended after 4 of its 10 bytes"):
        body.fill(memoryview(bytearray(8)))
