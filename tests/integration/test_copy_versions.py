"""A copy's object version on the real MinIO (bucket as ``storage init`` makes it: versioning,
object lock), catalog on SQLite and PostgreSQL: legal holds land on the version the copy's row
records, not on whatever version is current under its key; two concurrent writers of the same
copy leave one row whose version is readable, and delete no live version; reads address the
recorded version, so versions put over it neither hide nor replace the copy."""

from __future__ import annotations

import os
import threading

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lifecycle.copies import create_copy
from lifecycle.holds import release_hold, set_hold
from storage.admin import HELD_TIER_TAG
from storage.catalog import tables as t
from storage.copies import read_copy, read_copy_range, stream_copy
from tests.integration.test_deletion_by_version import row_of, versions_of
from tests.support.catalog import NOW, store_copy

pytestmark = pytest.mark.integration
RACES = 8


def test_a_hold_locks_the_recorded_version_not_the_current_one(catalog, store, keys, locked_bucket):
    _, _, copy_id, key = store_copy(catalog, store, keys, locked_bucket, os.urandom(4000))
    recorded = row_of(catalog, copy_id)["object_version"]
    later = store.put(locked_bucket, key, b"a replay's bytes", tags={"tier": "production"})  # now current
    assert recorded and later and recorded != later

    with catalog.begin() as conn:
        result = set_hold(conn, store, reason="case 7", actor="ic", now=NOW, copy_ids=[copy_id])
    assert result.changed == [copy_id] and result.mirrored == 1 and not result.missing
    assert store.legal_hold(locked_bucket, key, version=recorded)
    assert not store.legal_hold(locked_bucket, key, version=later)
    assert HELD_TIER_TAG in store.get_tags(locked_bucket, key, version=recorded)
    assert HELD_TIER_TAG not in store.get_tags(locked_bucket, key, version=later)
    # What the hold is for: deleting the held version by its id keeps it.
    assert store.delete_versions(locked_bucket, [(key, recorded), (key, later)]) == 1
    assert versions_of(store, locked_bucket, key) == [recorded]

    with catalog.begin() as conn:
        release_hold(conn, store, actor="ic", now=NOW, copy_ids=[copy_id])
    assert not store.legal_hold(locked_bucket, key, version=recorded)
    assert store.get_tags(locked_bucket, key, version=recorded).get("tier") == "production"


def test_a_hold_on_a_row_without_a_version_locks_the_current_one(catalog, store, keys, locked_bucket):
    _, _, copy_id, key = store_copy(catalog, store, keys, locked_bucket, os.urandom(4000))
    with catalog.begin() as conn:
        conn.execute(t.copies.update().where(t.copies.c.id == copy_id).values(object_version=None))
    current = store.head(locked_bucket, key).version_id
    with catalog.begin() as conn:
        set_hold(conn, store, reason="case 8", actor="ic", now=NOW, copy_ids=[copy_id])
    assert store.legal_hold(locked_bucket, key, version=current)
    with catalog.begin() as conn:
        release_hold(conn, store, actor="ic", now=NOW, copy_ids=[copy_id])
    assert not store.legal_hold(locked_bucket, key, version=current)


def race(catalog, store, keys, rid) -> list:
    """Two threads create the same monitoring copy at once; what each returned (or raised)."""
    start, results = threading.Barrier(2), [None, None]

    def writer(i: int) -> None:
        try:
            start.wait()
            with catalog.begin() as conn:
                results[i] = create_copy(conn, store, keys, recording_id=rid, tier="monitoring",
                                         actor=f"m{i}", now=NOW)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion
            results[i] = exc

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


@pytest.mark.parametrize("round_", range(RACES))
def test_two_concurrent_writers_of_one_copy_leave_one_readable_row(catalog, store, keys, locked_bucket, round_):
    audio = os.urandom(20_000)
    rid, _, _, _ = store_copy(catalog, store, keys, locked_bucket, audio)
    results = race(catalog, store, keys, rid)
    assert not [r for r in results if isinstance(r, Exception)], results
    assert sorted(r.created for r in results) == [False, True]
    assert results[0].copy_id == results[1].copy_id
    with catalog.connect() as conn:
        rows = conn.execute(sa.select(t.copies).where(t.copies.c.recording_id == rid,
                                                      t.copies.c.tier == "monitoring")).mappings().all()
        assert len(rows) == 1
        assert bytes(read_copy(conn, store, keys, rows[0]["id"])) == audio
    # The row's version is there, and it is the key's only one: the loser wrote nothing.
    assert versions_of(store, locked_bucket, rows[0]["object_key"]) == [rows[0]["object_version"]]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(strays=st.lists(st.binary(min_size=0, max_size=3000), min_size=1, max_size=3), held=st.booleans(),
       length=st.integers(1, 9000), span=st.tuples(st.integers(0, 8999), st.integers(0, 8999)))
def test_a_copy_reads_its_recorded_version_whatever_is_put_on_top(catalog, store, keys, locked_bucket,
                                                                  strays, held, length, span):
    """Reads address the version the row records: versions put over it later (a replay after a
    catalog restore, an overwrite) neither hide the copy nor stand in for it, held or not."""
    audio = os.urandom(length)
    _, _, copy_id, key = store_copy(catalog, store, keys, locked_bucket, audio)
    if held:
        with catalog.begin() as conn:
            set_hold(conn, store, reason="case 9", actor="ic", now=NOW, copy_ids=[copy_id])
    for stray in strays:
        store.put(locked_bucket, key, stray, tags={"tier": "production"})
    start, end = sorted(min(x, length - 1) for x in span)
    with catalog.connect() as conn:
        assert read_copy(conn, store, keys, copy_id) == audio
        assert b"".join(stream_copy(conn, store, keys, copy_id)) == audio
        assert read_copy_range(conn, store, keys, copy_id, start, end).data == audio[start:end + 1]
    if held:
        with catalog.begin() as conn:
            release_hold(conn, store, actor="ic", now=NOW, copy_ids=[copy_id])
