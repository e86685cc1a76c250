"""``reconcile`` by object version, on the real MinIO (bucket as ``storage init`` makes it:
versioning, object lock) with the catalog on SQLite and PostgreSQL: after a catalog restore a
row naming a version that is gone is dangling, and a version no row names is an orphan version,
deleted by its id on repair unless it is held (then reported as protected, and kept); rows with
no recorded version keep the key-level judgement. A hypothesis model (PostgreSQL) checks the
classification and the repair over random keys (both engines); it prints the seed and the failing example."""

from __future__ import annotations

import os
import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lifecycle.reconcile import reconcile
from storage.catalog import tables as t
from storage.copies import read_copy
from tests.integration.test_deletion_by_version import row_of, versions_of
from tests.support.catalog import NOW, caller_key, copy_row, recording_row, store_copy

pytestmark = pytest.mark.integration
NOW_GRACE = timedelta(0)  # every object is settled: the tests write nothing concurrently


def restored_catalog(catalog, store, keys, bucket):
    """The known gap: a copy swept (by version) after the backup, made again under the same key,
    then the backup restored (its row back, the later row lost). (copy id, key, later version)."""
    rid, nh, first, key = store_copy(catalog, store, keys, bucket, os.urandom(3000))
    backup = dict(row_of(catalog, first))
    with catalog.begin() as conn:
        conn.execute(t.copies.delete().where(t.copies.c.id == first))
    assert store.delete_versions(bucket, [(key, backup["object_version"])]) == 1
    _, _, later, _ = store_copy(catalog, store, keys, bucket, os.urandom(3000), rid=rid, number_hash=nh)
    later_version = row_of(catalog, later)["object_version"]
    with catalog.begin() as conn:
        conn.execute(t.copies.delete().where(t.copies.c.id == later))
        conn.execute(t.copies.insert().values(**backup))
    return first, key, later_version


def copy_ids(catalog) -> set:
    with catalog.connect() as conn:
        return set(conn.execute(sa.select(t.copies.c.id)).scalars())


def test_after_a_restore_the_stale_row_dangles_and_the_later_version_is_an_orphan(
        catalog, store, keys, locked_bucket):
    first, key, later = restored_catalog(catalog, store, keys, locked_bucket)

    report = reconcile(catalog, store, locked_bucket, grace=NOW_GRACE)
    assert report.dangling_rows == [first] and report.orphan_versions == [(key, later)]
    assert report.count("empty_recordings") == 1 and not report.protected_versions
    assert "1 orphan versions to delete" in report.summary() and "--repair" in report.summary()
    assert versions_of(store, locked_bucket, key) == [later] and copy_ids(catalog) == {first}  # report only

    repaired = reconcile(catalog, store, locked_bucket, repair=True, grace=NOW_GRACE)
    assert repaired.count("orphan_versions") == repaired.count("dangling_rows") == 1
    assert versions_of(store, locked_bucket, key) == [] and copy_ids(catalog) == set()
    assert reconcile(catalog, store, locked_bucket, grace=NOW_GRACE).clean


def test_a_held_orphan_version_is_reported_as_protected_and_kept(catalog, store, keys, locked_bucket):
    first, key, later = restored_catalog(catalog, store, keys, locked_bucket)
    store.set_legal_hold(locked_bucket, key, True, version=later)  # the later copy was held; its row lost

    report = reconcile(catalog, store, locked_bucket, repair=True, grace=NOW_GRACE)
    assert report.protected_versions == [(key, later)] and report.count("orphan_versions") == 0
    assert "INCIDENT: 1 object versions no catalog row names" in report.summary() and not report.clean
    assert report.dangling_rows == [first]
    assert versions_of(store, locked_bucket, key) == [later]  # the held version stays readable
    assert store.get(locked_bucket, key, version_id=later)


def test_a_version_stacked_on_the_recorded_one_is_removed_and_the_copy_reads_again(
        catalog, store, keys, locked_bucket):
    audio = os.urandom(5000)
    _, _, copy_id, key = store_copy(catalog, store, keys, locked_bucket, audio)
    recorded = row_of(catalog, copy_id)["object_version"]
    stray = store.put(locked_bucket, key, b"written over the copy")

    report = reconcile(catalog, store, locked_bucket, repair=True, grace=NOW_GRACE)
    assert report.orphan_versions == [(key, stray)] and report.count("dangling_rows") == 0
    assert versions_of(store, locked_bucket, key) == [recorded]
    with catalog.connect() as conn:
        assert bytes(read_copy(conn, store, keys, copy_id)) == audio


def test_a_row_without_a_version_keeps_the_key_level_judgement(catalog, store, keys, locked_bucket):
    _, _, copy_id, key = store_copy(catalog, store, keys, locked_bucket, os.urandom(3000))
    with catalog.begin() as conn:
        conn.execute(t.copies.update().where(t.copies.c.id == copy_id).values(object_version=None))
    store.put(locked_bucket, key, b"a rewrite under the same key")
    report = reconcile(catalog, store, locked_bucket, repair=True, grace=NOW_GRACE)
    assert report.clean and report.count("orphan_versions") == 0 and len(versions_of(store, locked_bucket, key)) == 2


def test_young_versions_are_in_flight_writes(catalog, store, keys, locked_bucket):
    _, _, copy_id, key = store_copy(catalog, store, keys, locked_bucket, os.urandom(3000))
    store.put(locked_bucket, key, b"a writer whose row is not committed yet")
    report = reconcile(catalog, store, locked_bucket, repair=True, grace=timedelta(minutes=15))
    assert report.count("orphan_versions") == 0 and len(versions_of(store, locked_bucket, key)) == 2


# -- the model: random keys, each a row state and a stack of versions ------------------------------

ROW_STATES = ("none", "unversioned", "recorded", "recorded-gone")
key_plan = st.tuples(st.sampled_from(ROW_STATES), st.integers(0, 2), st.booleans(), st.booleans(),
                     st.booleans())  # row, extra versions, an extra is held, a delete marker on top, row held


def build(conn, store, bucket, plan, key_id) -> dict:
    """Write one key (of its own recording) as ``plan`` says; what reconcile must find."""
    state, extras, extra_held, marker, row_held = plan
    rid = uuid.uuid4()
    key = f"acme/{rid}/production.cve"
    base = store.put(bucket, key, b"the copy")
    if state == "recorded-gone":
        store.delete_versions(bucket, [(key, base)])
    stacked = [store.put(bucket, key, b"another write") for _ in range(extras)]
    if extra_held and stacked:
        store.set_legal_hold(bucket, key, True, version=stacked[0])
    if marker:
        store.client.delete_object(Bucket=bucket, Key=key)
    row_held = row_held and state != "none"
    if state != "none":
        conn.execute(t.recordings.insert().values(**recording_row(id=rid, key_id=key_id)))
        conn.execute(t.copies.insert().values(**copy_row(
            rid, key_id, object_key=key, bucket=bucket, hold=row_held,
            **(dict(hold_reason="case 9", hold_actor="ic", hold_at=NOW) if row_held else {}),
            object_version=None if state == "unversioned" else base)))
    data = ([] if state == "recorded-gone" else [base]) + stacked
    live = bool(data) and not marker
    expect = {"key": key, "held_version": stacked[0] if extra_held and stacked else None,
              "dangling": state != "none" and (not live if state == "unversioned" else state == "recorded-gone"
                                              or marker),
              "row_held": row_held, "orphans": set(),
              # a key with no row whose current version is held is a held orphan, not an orphan object
              "orphan_key": state == "none" and live and not (extra_held and extras == 1),
              "held_orphan": state == "none" and live and extra_held and extras == 1}
    if state == "none" and not live:
        expect["orphans"] = set(data)
    elif state in ("recorded", "recorded-gone") and not row_held:
        expect["orphans"] = set(stacked)
    return expect


def expected_report(expects: list[dict]) -> dict:
    held = {(e["key"], e["held_version"]) for e in expects if e["held_version"]}
    orphans = {(e["key"], v) for e in expects for v in e["orphans"]}
    return {"orphan_versions": orphans - held, "protected_versions": orphans & held,
            "orphan_objects": {e["key"] for e in expects if e["orphan_key"]},
            "held_orphans": {e["key"] for e in expects if e["held_orphan"]},
            "dangling": sum(e["dangling"] and not e["row_held"] for e in expects),
            "held_missing": sum(e["dangling"] and e["row_held"] for e in expects)}


def wipe(catalog, store, bucket) -> None:
    with catalog.begin() as conn:
        conn.execute(t.copies.delete())
        conn.execute(t.recordings.delete())
        conn.execute(t.caller_keys.delete())
    for key, version in store.versions(bucket, "", markers=False):
        if store.legal_hold(bucket, key, version=version):
            store.set_legal_hold(bucket, key, False, version=version)
    store.delete_versions(bucket, list(store.versions(bucket, "")))  # data and delete markers


@settings(max_examples=40, deadline=None, print_blob=True, suppress_health_check=list(HealthCheck))
@given(plans=st.lists(key_plan, min_size=1, max_size=5))
def test_model_reconcile_by_version(catalog, store, locked_bucket, plans):
    bucket = locked_bucket
    try:
        with catalog.begin() as conn:
            key_id = caller_key(conn, "b" * 64)
            expects = [build(conn, store, bucket, plan, key_id) for plan in plans]
        want = expected_report(expects)
        report = reconcile(catalog, store, bucket, grace=NOW_GRACE)
        assert set(report.orphan_versions) == want["orphan_versions"]
        assert set(report.protected_versions) == want["protected_versions"]
        assert set(report.orphan_objects) == want["orphan_objects"]
        assert set(report.held_orphans) == want["held_orphans"]
        assert (report.count("dangling_rows"), report.count("held_missing")) == (want["dangling"],
                                                                                  want["held_missing"])
        reconcile(catalog, store, bucket, repair=True, grace=NOW_GRACE)
        left = set(store.versions(bucket, "", markers=False))
        assert not want["orphan_versions"] & left            # every orphan version went
        assert want["protected_versions"] <= left            # no held version did
        with catalog.connect() as conn:
            rows = conn.execute(sa.select(t.copies.c.object_key, t.copies.c.object_version,
                                          t.copies.c.hold)).all()
        for row in rows:  # every row left names a version that is there (or is held: an incident)
            assert row.hold or row.object_version is None or (row.object_key, row.object_version) in left
    finally:
        wipe(catalog, store, bucket)
