"""Encrypted copies on real MinIO with the catalog on SQLite and PostgreSQL: the write protocol,
ranged reads across frames, integrity and authentication failures, crypto-shredding, reconcile."""

from __future__ import annotations

import base64
import os
from datetime import timedelta

import pytest
import sqlalchemy as sa

from lifecycle.reconcile import reconcile
from storage.catalog import tables as t
from storage.copies import read_copy, read_copy_range
from storage.crypto import DecryptionError
from storage.erasure import live_caller_keys
from storage.exceptions import CatalogIntegrityError, KeyDestroyedError
from storage.keys import KeyRing
from tests.support.catalog import FRAME, NOW, ranges_read, store_copy

pytestmark = pytest.mark.integration


def test_copy_roundtrip_and_ranges_across_frame_boundaries(catalog, store, keys, scratch_bucket):
    audio = os.urandom(10 * FRAME + 123)
    _, _, copy_id, key = store_copy(catalog, store, keys, scratch_bucket, audio)
    raw = store.get(scratch_bucket, key)
    assert audio[:64] not in raw  # client-side encrypted: plaintext never reaches the store
    with catalog.connect() as conn:
        assert read_copy(conn, store, keys, copy_id) == audio
        for start, end in [(0, 0), (FRAME - 1, FRAME), (FRAME - 5, 3 * FRAME + 7), (10 * FRAME, 10 * FRAME + 122),
                           (len(audio) - 1, len(audio) - 1), (5, None)]:
            got = read_copy_range(conn, store, keys, copy_id, start, end)
            expected = audio[start:] if end is None else audio[start:end + 1]
            assert got.data == expected and got.total == len(audio)


def test_ranged_read_fetches_only_the_frames_it_needs_in_one_get(catalog, store, keys, scratch_bucket):
    audio = os.urandom(50 * FRAME)
    _, _, copy_id, key = store_copy(catalog, store, keys, scratch_bucket, audio)
    with catalog.connect() as conn:
        stored_header = conn.execute(sa.select(t.copies.c.header).where(t.copies.c.id == copy_id)).scalar()
        assert stored_header == store.get(scratch_bucket, key, start=0, end=24)  # the header, kept at write time
        ranges = ranges_read(store, lambda: read_copy_range(conn, store, keys, copy_id, 20 * FRAME + 10,
                                                              20 * FRAME + 20))
    [frames] = ranges  # the header comes from the catalog row: one GET
    start, end = map(int, frames.removeprefix("bytes=").split("-"))
    assert end - start + 1 == FRAME + 16  # exactly one frame and its tag


def test_a_copy_without_its_header_in_the_catalog_reads_it_from_the_object(catalog, store, keys, scratch_bucket):
    audio = os.urandom(5 * FRAME)
    _, _, copy_id, _ = store_copy(catalog, store, keys, scratch_bucket, audio)
    with catalog.begin() as conn:  # a copy written before migration 0008
        conn.execute(t.copies.update().where(t.copies.c.id == copy_id).values(header=None))
    with catalog.connect() as conn:
        got = []
        ranges = ranges_read(store, lambda: got.append(read_copy_range(conn, store, keys, copy_id, FRAME - 3,
                                                                         FRAME + 3)))
    assert got[0].data == audio[FRAME - 3:FRAME + 4]
    assert ranges[0] == "bytes=0-24" and len(ranges) == 2


def test_a_header_altered_in_the_catalog_fails_authentication(catalog, store, keys, scratch_bucket):
    audio = os.urandom(3 * FRAME)
    _, _, copy_id, _ = store_copy(catalog, store, keys, scratch_bucket, audio)
    with catalog.begin() as conn:
        header = conn.execute(sa.select(t.copies.c.header).where(t.copies.c.id == copy_id)).scalar()
        forged = header[:17] + bytes(8)  # another nonce prefix
        conn.execute(t.copies.update().where(t.copies.c.id == copy_id).values(header=forged))
    with catalog.connect() as conn, pytest.raises(DecryptionError):
        read_copy_range(conn, store, keys, copy_id, 0, 10)


def test_retry_of_the_same_copy_overwrites_instead_of_duplicating(catalog, store, keys, scratch_bucket):
    rid, number_hash, first, key = store_copy(catalog, store, keys, scratch_bucket, b"a" * 3000)
    _, _, second, key2 = store_copy(catalog, store, keys, scratch_bucket, b"a" * 3000, rid=rid,
                                    number_hash=number_hash)
    assert (first, key) == (second, key2)
    with catalog.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(t.copies)).scalar() == 1
        assert read_copy(conn, store, keys, first) == b"a" * 3000


def test_tampered_object_fails_the_checksum_and_frame_authentication(catalog, store, keys, scratch_bucket):
    audio = os.urandom(4 * FRAME)
    _, _, copy_id, key = store_copy(catalog, store, keys, scratch_bucket, audio)
    blob = bytearray(store.get(scratch_bucket, key))
    blob[25 + 2 * (FRAME + 16) + 10] ^= 0x01  # one bit inside frame 2 (header, then frame+tag each)
    store.put(scratch_bucket, key, bytes(blob))
    with catalog.connect() as conn:
        with pytest.raises(CatalogIntegrityError, match="does not match its catalog SHA-256"):
            read_copy(conn, store, keys, copy_id)
        assert read_copy_range(conn, store, keys, copy_id, 0, FRAME - 1).data == audio[:FRAME]
        with pytest.raises(DecryptionError):
            read_copy_range(conn, store, keys, copy_id, 2 * FRAME, 2 * FRAME + 10)


def test_destroying_the_caller_key_makes_every_copy_and_old_version_unreadable(
        catalog, store, keys, scratch_bucket, minio):
    from minio.commonconfig import ENABLED
    from minio.versioningconfig import VersioningConfig

    minio.minio_client().set_bucket_versioning(scratch_bucket, VersioningConfig(ENABLED))
    audio = os.urandom(3 * FRAME)
    rid, number_hash, prod, key = store_copy(catalog, store, keys, scratch_bucket, audio)
    _, _, monitoring, _ = store_copy(catalog, store, keys, scratch_bucket, audio, tier="monitoring", rid=rid,
                                   number_hash=number_hash)
    # An older version of the production object, as a backup or a restore would bring back.
    with catalog.connect() as conn:
        old_row = conn.execute(sa.select(t.copies).where(t.copies.c.id == prod)).mappings().one()
    old_version = store.client.list_object_versions(Bucket=scratch_bucket, Prefix=key)["Versions"][0]["VersionId"]
    store_copy(catalog, store, keys, scratch_bucket, audio, rid=rid, number_hash=number_hash)

    with catalog.begin() as conn:
        assert KeyRing.destroy_ids(conn, live_caller_keys(conn, "acme", [number_hash]), now=NOW) == 1
    with catalog.connect() as conn:
        for copy_id in (prod, monitoring):
            with pytest.raises(KeyDestroyedError, match="destroyed"):
                read_copy(conn, store, keys, copy_id)
        # The restored old version, with the wrapped data key a catalog backup would hold:
        assert store.get(scratch_bucket, key, version_id=old_version)  # bytes are still there...
        with pytest.raises(KeyDestroyedError):  # ...but nothing can unwrap their data key any more
            keys.unwrap_data_key(conn, caller_key_id=old_row["caller_key_id"],
                                 wrapped=old_row["wrapped_data_key"], object_key=key)
    # A later call from the same (erased, not objecting) number gets a fresh key.
    with catalog.begin() as conn:
        fresh = keys.caller_key(conn, tenant="acme", number_hash=number_hash)
    assert fresh.id != old_row["caller_key_id"]


def test_number_hash_is_keyed_and_tenant_scoped(keys):
    other = KeyRing(os.urandom(32))
    assert keys.number_hash("acme", "+33612345678") == keys.number_hash("acme", "+33612345678")
    assert keys.number_hash("acme", "+33612345678") != keys.number_hash("beta", "+33612345678")
    assert keys.number_hash("acme", "+33612345678") != other.number_hash("acme", "+33612345678")
    assert "612345678" not in keys.number_hash("acme", "+33612345678")


def test_master_key_from_settings_is_validated():
    from core.errors import ConfigurationError
    from storage.settings import StorageSettings

    with pytest.raises(ConfigurationError, match="CALLVAULT_STORAGE_MASTER_KEY"):
        KeyRing.from_settings(StorageSettings(master_key=None))
    with pytest.raises(ConfigurationError, match="32 bytes"):
        KeyRing.from_settings(StorageSettings(master_key=base64.b64encode(b"short").decode()))


def test_reconcile_repairs_a_simulated_crash(catalog, store, keys, scratch_bucket):
    _, _, kept, kept_key = store_copy(catalog, store, keys, scratch_bucket, b"k" * 2000)
    # Crash after the object, before the row: an orphan object.
    store.put(scratch_bucket, "acme/orphan/production.cve", b"orphan-bytes")
    # An object lost behind the catalog's back: a dangling row (its recording has no other copy).
    rid, _, lost, lost_key = store_copy(catalog, store, keys, scratch_bucket, b"l" * 2000)
    store.delete(scratch_bucket, lost_key)

    dry = reconcile(catalog, store, scratch_bucket, repair=False, grace=timedelta(0))
    assert dry.orphan_objects == ["acme/orphan/production.cve"] and dry.dangling_rows == [lost]
    assert store.head(scratch_bucket, "acme/orphan/production.cve") is not None

    report = reconcile(catalog, store, scratch_bucket, repair=True, grace=timedelta(0))
    assert (len(report.orphan_objects), len(report.dangling_rows), report.recordings_removed) == (1, 1, 1)
    assert [o.key for o in store.list(scratch_bucket)] == [kept_key]
    with catalog.connect() as conn:
        assert conn.execute(sa.select(t.copies.c.id)).scalars().all() == [kept]
        assert conn.execute(sa.select(t.recordings.c.id).where(t.recordings.c.id == rid)).first() is None
    assert reconcile(catalog, store, scratch_bucket, repair=True, grace=timedelta(0)).clean


def test_reconcile_leaves_young_objects_alone(catalog, store, keys, scratch_bucket):
    store.put(scratch_bucket, "acme/inflight/production.cve", b"being written")
    report = reconcile(catalog, store, scratch_bucket, repair=True, grace=timedelta(minutes=15))
    assert report.clean
    assert store.head(scratch_bucket, "acme/inflight/production.cve") is not None
