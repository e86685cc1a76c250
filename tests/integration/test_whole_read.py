"""Whole-object reads (``read_copy``: one GET, decrypted and authenticated as its chunks arrive)
on real MinIO: any size and chunking reads back in one GET, and an object that is not the
catalog's (a byte changed anywhere, truncated, extended, another copy's, an older version) fails
with ``CatalogIntegrityError`` (the frames' tags refuse it; the SHA-256 of a second read tells it
apart); matching bytes under the wrong key with ``DecryptionError``. Pinned while parallel ranged
GETs were tried for issue 20 (``bench/NOTES.md`` §11b)."""

from __future__ import annotations

import os
from unittest import mock

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from minio.commonconfig import ENABLED
from minio.versioningconfig import VersioningConfig

from storage import copies
from storage.catalog import tables as t
from storage.copies import read_copy
from storage.crypto import DecryptionError, FrameLayout
from storage.exceptions import CatalogIntegrityError, ObjectNotFound
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
@given(length=st.integers(0, 9 * FRAME), chunk=st.integers(1, 5 * FRAME))
def test_any_size_in_any_chunks_reads_back_in_one_get(one_engine, store, keys, scratch_bucket, length, chunk):
    audio = os.urandom(length)
    _, _, copy_id, _ = store_copy(one_engine, store, keys, scratch_bucket, audio)
    with one_engine.connect() as conn, mock.patch.object(copies, "WHOLE_READ_CHUNK", chunk):
        got = []
        ranges = ranges_read(store, lambda: got.append(read_copy(conn, store, keys, copy_id)))
    assert got[0] == audio and type(got[0]) is bytearray
    assert ranges == [None]  # one plain GET of the whole object


@pytest.mark.parametrize("length", [0, 1, FRAME - 1, FRAME, FRAME + 1, 3 * FRAME, 7 * FRAME + 333])
@pytest.mark.parametrize("chunk", [7, FRAME + 16, copies.WHOLE_READ_CHUNK])
def test_sizes_at_the_edges_read_back(catalog, store, keys, scratch_bucket, length, chunk):
    audio = os.urandom(length)
    _, _, copy_id, _ = store_copy(catalog, store, keys, scratch_bucket, audio)
    with catalog.connect() as conn, mock.patch.object(copies, "WHOLE_READ_CHUNK", chunk):
        assert read_copy(conn, store, keys, copy_id) == audio


def _replace(store, bucket: str, key: str, change) -> None:
    blob = bytearray(store.get(bucket, key))
    store.put(bucket, key, bytes(change(blob)))


@pytest.mark.parametrize("where", ["magic", "length", "first frame", "middle", "a tag", "last byte"])
def test_a_byte_changed_anywhere_fails_the_checksum(catalog, store, keys, scratch_bucket, where):
    audio = os.urandom(12 * FRAME + 77)
    _, _, copy_id, key = store_copy(catalog, store, keys, scratch_bucket, audio)
    size = _stored_size(len(audio))
    offset = {"magic": 0, "length": 16, "first frame": 30, "middle": size // 2, "a tag": 25 + 5 * (FRAME + 16) - 3,
              "last byte": size - 1}[where]

    def flip(blob):
        blob[offset] ^= 0x01
        return blob

    _replace(store, scratch_bucket, key, flip)
    with catalog.connect() as conn, pytest.raises(CatalogIntegrityError, match="does not match its catalog SHA-256"):
        read_copy(conn, store, keys, copy_id)


@pytest.mark.parametrize("change", ["one byte short", "a third short", "header only", "empty", "one byte more",
                                    "doubled"])
def test_a_truncated_or_extended_object_fails_the_checksum(catalog, store, keys, scratch_bucket, change):
    audio = os.urandom(9 * FRAME)
    _, _, copy_id, key = store_copy(catalog, store, keys, scratch_bucket, audio)
    size = _stored_size(len(audio))
    cut = {"one byte short": lambda b: b[:-1], "a third short": lambda b: b[:size * 2 // 3],
           "header only": lambda b: b[:25], "empty": lambda b: b"", "one byte more": lambda b: b + b"\0",
           "doubled": lambda b: b + b}[change]
    _replace(store, scratch_bucket, key, cut)
    with catalog.connect() as conn, pytest.raises(CatalogIntegrityError, match="does not match its catalog"):
        read_copy(conn, store, keys, copy_id)


_CHANGES = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**9), st.integers(0, 7)),
    st.tuples(st.just("cut"), st.integers(0, 10**9), st.just(0)),
    st.tuples(st.just("extend"), st.integers(1, 2 * FRAME), st.integers(0, 255)),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(length=st.integers(0, 6 * FRAME), change=_CHANGES)
def test_any_change_to_the_stored_bytes_is_refused_as_not_the_catalogs(one_engine, store, keys, scratch_bucket,
                                                                       length, change):
    """Whatever the change (a bit anywhere, a cut anywhere, bytes appended), no audio comes back
    and the error says the stored object is not the one the catalog wrote."""
    _, _, copy_id, key = store_copy(one_engine, store, keys, scratch_bucket, os.urandom(length))
    kind, at, value = change
    size = _stored_size(length)

    def apply(blob):
        if kind == "flip":
            blob[at % size] ^= 1 << value
            return blob
        return blob[:at % size] if kind == "cut" else blob + bytes([value]) * at

    _replace(store, scratch_bucket, key, apply)
    with one_engine.connect() as conn, pytest.raises(CatalogIntegrityError, match="does not match its catalog"):
        read_copy(conn, store, keys, copy_id)


def test_another_copy_swapped_in_fails_the_checksum(catalog, store, keys, scratch_bucket):
    audio = os.urandom(9 * FRAME)
    _, _, copy_id, key = store_copy(catalog, store, keys, scratch_bucket, audio)
    _, _, _, other_key = store_copy(catalog, store, keys, scratch_bucket, audio)  # same size, another key
    store.put(scratch_bucket, key, store.get(scratch_bucket, other_key))
    with catalog.connect() as conn, pytest.raises(CatalogIntegrityError, match="does not match its catalog SHA-256"):
        read_copy(conn, store, keys, copy_id)


def test_an_older_version_rolled_back_fails_the_checksum(catalog, store, keys, scratch_bucket, minio):
    minio.minio_client().set_bucket_versioning(scratch_bucket, VersioningConfig(ENABLED))
    audio = os.urandom(9 * FRAME)
    rid, number_hash, copy_id, key = store_copy(catalog, store, keys, scratch_bucket, audio)
    old = store.client.list_object_versions(Bucket=scratch_bucket, Prefix=key)["Versions"][0]["VersionId"]
    store_copy(catalog, store, keys, scratch_bucket, audio, rid=rid, number_hash=number_hash)  # rewritten, same row
    store.put(scratch_bucket, key, store.get(scratch_bucket, key, version_id=old))  # the old bytes made current
    with catalog.connect() as conn, pytest.raises(CatalogIntegrityError, match="does not match its catalog SHA-256"):
        read_copy(conn, store, keys, copy_id)


def test_matching_bytes_that_do_not_decrypt_fail_authentication(catalog, store, keys, scratch_bucket):
    audio = os.urandom(9 * FRAME)
    _, _, copy_id, key = store_copy(catalog, store, keys, scratch_bucket, audio)
    _, _, other_id, other_key = store_copy(catalog, store, keys, scratch_bucket, audio)
    store.put(scratch_bucket, key, store.get(scratch_bucket, other_key))
    with catalog.begin() as conn:  # the catalog's checksum moved along with the object: only the key differs
        other = conn.execute(sa.select(t.copies).where(t.copies.c.id == other_id)).mappings().one()
        conn.execute(t.copies.update().where(t.copies.c.id == copy_id).values(stored_sha256=other["stored_sha256"]))
    with catalog.connect() as conn, pytest.raises(DecryptionError):
        read_copy(conn, store, keys, copy_id)


def test_a_missing_object_is_not_found(catalog, store, keys, scratch_bucket):
    audio = os.urandom(9 * FRAME)
    _, _, copy_id, key = store_copy(catalog, store, keys, scratch_bucket, audio)
    store.delete(scratch_bucket, key)
    with catalog.connect() as conn, pytest.raises(ObjectNotFound):
        read_copy(conn, store, keys, copy_id)
