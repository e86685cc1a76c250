"""Version-addressed deletion on the real MinIO (bucket as ``storage init`` makes it: versioning,
object lock), catalog on SQLite and PostgreSQL: the version id recorded at write time, a
crashed attempt's version cleared before the next put, and sweeps and erasures that delete by
(key, version) with no listing and leave no version behind (checked with ListObjectVersions)."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
import sqlalchemy as sa

from access.subjects import Actor, erase
from lifecycle.holds import release_hold, set_hold
from lifecycle.sweeper import sweep
from storage.catalog import tables as t
from storage.copies import object_key_for, put_encrypted, read_copy
from tests.support.catalog import NOW, new_recording, store_copy

pytestmark = pytest.mark.integration
EXPIRED = NOW - timedelta(hours=1)


def versions_of(store, bucket: str, key: str | None = None) -> list[str]:
    """Every version and delete marker left (under ``key``, else in the whole bucket)."""
    page = store.client.list_object_versions(Bucket=bucket, **({"Prefix": key} if key else {}))
    return [v["VersionId"] for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
            if key is None or v["Key"] == key]


def row_of(catalog, copy_id) -> sa.RowMapping:
    with catalog.connect() as conn:
        return conn.execute(sa.select(t.copies).where(t.copies.c.id == copy_id)).mappings().one()


class Listings:
    """Counts the ListObjectVersions calls a client makes."""

    def __init__(self, store) -> None:
        self.count = 0
        store.client.meta.events.register("before-call.s3.ListObjectVersions", self._seen)
        self._store = store

    def _seen(self, **_kw) -> None:
        self.count += 1

    def close(self) -> None:
        self._store.client.meta.events.unregister("before-call.s3.ListObjectVersions", self._seen)


def crashed_attempt(catalog, store, keys, bucket, rid, number_hash) -> str:
    """An ingest whose object was written and whose transaction then died: no row; its version."""
    key = object_key_for("acme", rid, "production")
    with pytest.raises(RuntimeError), catalog.begin() as conn:
        caller = keys.caller_key(conn, tenant="acme", number_hash=number_hash)
        put_encrypted(conn, store, keys, caller=caller, bucket=bucket, object_key=key, audio=b"a" * 3000,
                      tags={"tier": "production"})
        raise RuntimeError("killed between the object and the row")
    return versions_of(store, bucket, key)[0]


def test_put_returns_the_version_id_single_and_multipart(store, locked_bucket):
    small = store.put(locked_bucket, "v/small", b"x" * 10)
    large = store.put(locked_bucket, "v/large", (os.urandom(1024 * 1024) for _ in range(17)))  # multipart
    assert small and versions_of(store, locked_bucket, "v/small") == [small]
    assert large and versions_of(store, locked_bucket, "v/large") == [large]
    assert store.head(locked_bucket, "v/large").version_id == large


def test_the_copy_row_records_the_only_version_of_its_key(catalog, store, keys, locked_bucket):
    _, _, copy_id, key = store_copy(catalog, store, keys, locked_bucket, os.urandom(5000))
    assert versions_of(store, locked_bucket, key) == [row_of(catalog, copy_id)["object_version"]]


def test_a_crashed_attempts_version_is_cleared_by_the_next_put(catalog, store, keys, locked_bucket):
    with catalog.begin() as conn:
        rid, nh = new_recording(conn, keys)
    orphan = crashed_attempt(catalog, store, keys, locked_bucket, rid, nh)
    _, _, copy_id, key = store_copy(catalog, store, keys, locked_bucket, b"b" * 3000, rid=rid, number_hash=nh,
                                    expires_at=EXPIRED)
    row = row_of(catalog, copy_id)
    assert orphan not in versions_of(store, locked_bucket, key)
    assert versions_of(store, locked_bucket, key) == [row["object_version"]]
    with catalog.connect() as conn:
        assert read_copy(conn, store, keys, copy_id) == b"b" * 3000
    listings = Listings(store)
    try:
        assert sweep(catalog, store, now=NOW).deleted_copies == 1
    finally:
        listings.close()
    assert listings.count == 0  # deleted by (key, version): no listing
    assert versions_of(store, locked_bucket) == []  # and no version, no delete marker left


def test_a_replay_over_a_live_copy_keeps_its_version_and_the_sweep_takes_both(catalog, store, keys, locked_bucket):
    """A row points at the key already (a copy written again under it, as after a catalog
    restore): the live version is never deleted by the put; the row then names no version, so
    its deletion lists the key and takes every version."""
    rid, nh, copy_id, key = store_copy(catalog, store, keys, locked_bucket, b"c" * 3000, expires_at=EXPIRED)
    first = row_of(catalog, copy_id)["object_version"]
    store_copy(catalog, store, keys, locked_bucket, b"d" * 3000, rid=rid, number_hash=nh, expires_at=EXPIRED)
    assert first in versions_of(store, locked_bucket, key) and len(versions_of(store, locked_bucket, key)) == 2
    assert row_of(catalog, copy_id)["object_version"] is None
    assert sweep(catalog, store, now=NOW).deleted_copies == 1
    assert versions_of(store, locked_bucket) == []


def test_a_held_orphan_version_is_never_deleted(catalog, store, keys, locked_bucket):
    """A crashed attempt's version under S3 legal hold (a held copy whose row a restore lost)
    survives the next put and the sweep of the copy written over it; released, it goes."""
    with catalog.begin() as conn:
        rid, nh = new_recording(conn, keys)
    orphan = crashed_attempt(catalog, store, keys, locked_bucket, rid, nh)
    key = object_key_for("acme", rid, "production")
    store.set_legal_hold(locked_bucket, key, True, version=orphan)
    _, _, copy_id, _ = store_copy(catalog, store, keys, locked_bucket, b"e" * 3000, rid=rid, number_hash=nh,
                                  expires_at=EXPIRED)
    assert row_of(catalog, copy_id)["object_version"] is None  # the key holds another version
    assert sweep(catalog, store, now=NOW).deleted_copies == 1
    assert versions_of(store, locked_bucket, key) == [orphan]
    store.set_legal_hold(locked_bucket, key, False, version=orphan)
    assert store.delete(locked_bucket, key) == 1
    assert versions_of(store, locked_bucket) == []


def test_sweep_by_version_keeps_held_and_unexpired_copies_and_leaves_no_version(catalog, store, keys, locked_bucket):
    made = [store_copy(catalog, store, keys, locked_bucket, os.urandom(2000),
                       expires_at=EXPIRED if i < 5 else NOW + timedelta(days=1)) for i in range(7)]
    held = made[4]
    with catalog.begin() as conn:
        set_hold(conn, store, copy_ids=[held[2]], reason="litigation L-9", actor="ic-1", now=NOW)
    listings = Listings(store)
    try:
        report = sweep(catalog, store, now=NOW, batch_size=3)
    finally:
        listings.close()
    assert (report.deleted_copies, report.held_expired, listings.count) == (4, 1, 0)
    left = {k for *_, k in made[4:]}
    page = store.client.list_object_versions(Bucket=locked_bucket)
    assert {v["Key"] for v in page.get("Versions", [])} == left and not page.get("DeleteMarkers")
    with catalog.begin() as conn:
        release_hold(conn, store, copy_ids=[held[2]], actor="ic-1", now=NOW)
    assert sweep(catalog, store, now=NOW).deleted_copies == 1
    assert {v["Key"] for v in store.client.list_object_versions(Bucket=locked_bucket).get("Versions", [])} \
        == {k for *_, k in made[5:]}


def test_erasure_deletes_by_version_and_leaves_no_version(catalog, store, keys, ledger, locked_bucket):
    mine = []
    for _ in range(2):
        with catalog.begin() as conn:
            rid, nh = new_recording(conn, keys)
        for tier in ("production", "monitoring"):
            mine.append(store_copy(catalog, store, keys, locked_bucket, os.urandom(2000), tier=tier, rid=rid,
                                   number_hash=nh))
    with catalog.begin() as conn:
        rid, nh = new_recording(conn, keys, "+33699999999")
    other = store_copy(catalog, store, keys, locked_bucket, os.urandom(2000), rid=rid, number_hash=nh)
    listings = Listings(store)
    try:
        with catalog.begin() as conn:
            report = erase(conn, store, keys, ledger, tenant="acme", numbers=["+33612345678"], actor=Actor("ic-1"),
                           now=NOW)
    finally:
        listings.close()
    assert len(report.erased_copies) == 4 and listings.count == 0
    page = store.client.list_object_versions(Bucket=locked_bucket)
    assert [v["Key"] for v in page.get("Versions", [])] == [other[3]] and not page.get("DeleteMarkers")
