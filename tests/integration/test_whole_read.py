"""Whole-object reads in parallel ranged GETs (``storage.whole_read``) on real MinIO: any size and
part count reads back, part boundaries fall anywhere in a frame, and an object that is not the
catalog's (a byte changed in any part, truncated, extended, another copy's, an older version)
fails as the single-GET read did: ``CatalogIntegrityError``; matching bytes under the wrong key:
``DecryptionError``."""

from __future__ import annotations

import os

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from minio.commonconfig import ENABLED
from minio.versioningconfig import VersioningConfig

from storage.catalog import tables as t
from storage.copies import read_copy
from storage.crypto import DecryptionError, FrameLayout
from storage.exceptions import CatalogIntegrityError, ObjectNotFound
from storage.whole_read import part_bounds
from tests.support.catalog import FRAME, ranges_read, store_copy

pytestmark = pytest.mark.integration


def _stored_size(audio_length: int) -> int:
    return FrameLayout(FRAME, audio_length).ciphertext_length()


@pytest.fixture
def one_engine(sqlite_engine):
    from storage.catalog.migrate import upgrade
    from tests.support.catalog import NOW

    upgrade(sqlite_engine)
    with sqlite_engine.begin() as conn:
        conn.execute(t.tenants.insert().values(id="acme", name="Acme", created_at=NOW))
    return sqlite_engine


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(length=st.integers(0, 9 * FRAME), part_size=st.integers(1, 4 * FRAME), max_parts=st.integers(1, 5))
def test_any_size_in_any_parts_reads_back(one_engine, store, keys, scratch_bucket, length, part_size, max_parts):
    audio = os.urandom(length)
    _, _, copy_id, _ = store_copy(one_engine, store, keys, scratch_bucket, audio)
    with one_engine.connect() as conn:
        got = []
        ranges = ranges_read(store, lambda: got.append(read_copy(conn, store, keys, copy_id, part_size=part_size,
                                                                   max_parts=max_parts)))
    assert got[0] == audio
    bounds = part_bounds(_stored_size(length), part_size, max_parts)
    assert sorted(ranges) == sorted(f"bytes={start}-{end - 1}" for start, end in bounds)  # GETs at once


@pytest.mark.parametrize("length", [0, 1, FRAME - 1, FRAME, FRAME + 1, 7 * FRAME + 333])
@pytest.mark.parametrize("parts", [1, 2, 3])
def test_sizes_at_the_edges_read_back(catalog, store, keys, scratch_bucket, length, parts):
    audio = os.urandom(length)
    _, _, copy_id, _ = store_copy(catalog, store, keys, scratch_bucket, audio)
    part_size = max(1, _stored_size(length) // parts)
    with catalog.connect() as conn:
        assert read_copy(conn, store, keys, copy_id, part_size=part_size, max_parts=parts) == audio


def test_an_object_of_an_exact_part_multiple_reads_back_in_equal_parts(catalog, store, keys, scratch_bucket):
    length = next(n for n in range(5 * FRAME, 6 * FRAME) if _stored_size(n) % 3 == 0)
    audio = os.urandom(length)
    _, _, copy_id, _ = store_copy(catalog, store, keys, scratch_bucket, audio)
    part = _stored_size(length) // 3
    with catalog.connect() as conn:
        ranges = ranges_read(store, lambda: read_copy(conn, store, keys, copy_id, part_size=part, max_parts=3))
        assert read_copy(conn, store, keys, copy_id, part_size=part, max_parts=3) == audio
    assert sorted(ranges) == sorted(f"bytes={i * part}-{(i + 1) * part - 1}" for i in range(3))


def _replace(store, bucket: str, key: str, change) -> None:
    blob = bytearray(store.get(bucket, key))
    store.put(bucket, key, bytes(change(blob)))


@pytest.mark.parametrize("where", ["header", "part 0", "part 1", "part 2", "last byte"])
def test_a_byte_changed_in_any_part_fails_the_checksum(catalog, store, keys, scratch_bucket, where):
    audio = os.urandom(12 * FRAME + 77)
    _, _, copy_id, key = store_copy(catalog, store, keys, scratch_bucket, audio)
    size = _stored_size(len(audio))
    offset = {"header": 20, "part 0": size // 6, "part 1": size // 2, "part 2": size * 5 // 6,
              "last byte": size - 1}[where]

    def flip(blob):
        blob[offset] ^= 0x01
        return blob

    _replace(store, scratch_bucket, key, flip)
    with catalog.connect() as conn, pytest.raises(CatalogIntegrityError, match="does not match its catalog SHA-256"):
        read_copy(conn, store, keys, copy_id, part_size=size // 3, max_parts=3)


@pytest.mark.parametrize("change", ["one byte short", "a part short", "header only", "one byte more", "doubled"])
@pytest.mark.parametrize("parts", [1, 3])
def test_a_truncated_or_extended_object_fails_the_checksum(catalog, store, keys, scratch_bucket, change, parts):
    audio = os.urandom(9 * FRAME)
    _, _, copy_id, key = store_copy(catalog, store, keys, scratch_bucket, audio)
    size = _stored_size(len(audio))
    cut = {"one byte short": lambda b: b[:-1], "a part short": lambda b: b[:size * 2 // 3],
           "header only": lambda b: b[:25], "one byte more": lambda b: b + b"\0", "doubled": lambda b: b + b}[change]
    _replace(store, scratch_bucket, key, cut)
    with catalog.connect() as conn, pytest.raises(CatalogIntegrityError, match="does not match its catalog"):
        read_copy(conn, store, keys, copy_id, part_size=size // parts, max_parts=parts)


@pytest.mark.parametrize("parts", [1, 3])
def test_another_copy_swapped_in_fails_the_checksum(catalog, store, keys, scratch_bucket, parts):
    audio = os.urandom(9 * FRAME)
    _, _, copy_id, key = store_copy(catalog, store, keys, scratch_bucket, audio)
    _, _, _, other_key = store_copy(catalog, store, keys, scratch_bucket, audio)  # same size, another key
    store.put(scratch_bucket, key, store.get(scratch_bucket, other_key))
    with catalog.connect() as conn, pytest.raises(CatalogIntegrityError, match="does not match its catalog SHA-256"):
        read_copy(conn, store, keys, copy_id, part_size=_stored_size(len(audio)) // parts, max_parts=parts)


def test_an_older_version_rolled_back_fails_the_checksum(catalog, store, keys, scratch_bucket, minio):
    minio.minio_client().set_bucket_versioning(scratch_bucket, VersioningConfig(ENABLED))
    audio = os.urandom(9 * FRAME)
    rid, number_hash, copy_id, key = store_copy(catalog, store, keys, scratch_bucket, audio)
    old = store.client.list_object_versions(Bucket=scratch_bucket, Prefix=key)["Versions"][0]["VersionId"]
    store_copy(catalog, store, keys, scratch_bucket, audio, rid=rid, number_hash=number_hash)  # rewritten, same row
    store.put(scratch_bucket, key, store.get(scratch_bucket, key, version_id=old))  # the old bytes made current
    part = _stored_size(len(audio)) // 3
    with catalog.connect() as conn, pytest.raises(CatalogIntegrityError, match="does not match its catalog SHA-256"):
        read_copy(conn, store, keys, copy_id, part_size=part, max_parts=3)


@pytest.mark.parametrize("parts", [1, 3])
def test_matching_bytes_that_do_not_decrypt_fail_authentication(catalog, store, keys, scratch_bucket, parts):
    audio = os.urandom(9 * FRAME)
    _, _, copy_id, key = store_copy(catalog, store, keys, scratch_bucket, audio)
    _, _, other_id, other_key = store_copy(catalog, store, keys, scratch_bucket, audio)
    store.put(scratch_bucket, key, store.get(scratch_bucket, other_key))
    with catalog.begin() as conn:  # the catalog's checksum moved along with the object: only the key differs
        other = conn.execute(sa.select(t.copies).where(t.copies.c.id == other_id)).mappings().one()
        conn.execute(t.copies.update().where(t.copies.c.id == copy_id).values(stored_sha256=other["stored_sha256"]))
    with catalog.connect() as conn, pytest.raises(DecryptionError):
        read_copy(conn, store, keys, copy_id, part_size=_stored_size(len(audio)) // parts, max_parts=parts)


@pytest.mark.parametrize("parts", [1, 3])
def test_a_missing_object_is_not_found(catalog, store, keys, scratch_bucket, parts):
    audio = os.urandom(9 * FRAME)
    _, _, copy_id, key = store_copy(catalog, store, keys, scratch_bucket, audio)
    store.delete(scratch_bucket, key)
    with catalog.connect() as conn, pytest.raises(ObjectNotFound):
        read_copy(conn, store, keys, copy_id, part_size=_stored_size(len(audio)) // parts, max_parts=parts)


def test_part_bounds_cover_the_object_once_in_at_most_max_parts():
    assert part_bounds(0) == [(0, 0)]
    assert part_bounds(10, part_size=8, max_parts=4) == [(0, 10)]  # under two parts: one GET
    assert part_bounds(16, part_size=8, max_parts=4) == [(0, 8), (8, 16)]
    assert part_bounds(100, part_size=8, max_parts=3) == [(0, 33), (33, 66), (66, 100)]
    for size in range(0, 200, 7):
        bounds = part_bounds(size, part_size=9, max_parts=4)
        assert bounds[0][0] == 0 and bounds[-1][1] == size and len(bounds) <= 4
        assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
