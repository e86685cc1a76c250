"""Retention overrides that re-apply, linked copies, legal holds and the sweeper, on real MinIO
with the catalog on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from botocore.exceptions import ClientError

from lifecycle.copies import create_copy
from lifecycle.exceptions import CopyNotAllowed, RetentionOutOfBounds
from lifecycle.holds import release_hold, set_hold
from lifecycle.reconcile import reconcile
from lifecycle.retention import Bounds, set_retention
from lifecycle.sweeper import _mark, sweep
from lifecycle.tiers import DEFAULT_MAX_MONTHS, DEFAULT_MIN_MONTHS, add_months
from storage.admin import init_buckets
from storage.audit import verify
from storage.catalog import tables as t
from storage.copies import read_copy
from storage.erasure import live_caller_keys
from storage.exceptions import KeyDestroyedError
from storage.keys import KeyRing
from tests.support.catalog import NOW, new_recording, store_copy

pytestmark = pytest.mark.integration
BOUNDS = Bounds({k.value: v for k, v in DEFAULT_MIN_MONTHS.items()},
                {k.value: v for k, v in DEFAULT_MAX_MONTHS.items()})


def rows(engine, table, *where):
    with engine.connect() as conn:
        return conn.execute(sa.select(table).where(*where)).mappings().all()


def test_override_out_of_bounds_is_a_clear_error(catalog):
    with catalog.begin() as conn, pytest.raises(RetentionOutOfBounds, match="outside the legal bounds 1..6"):
        set_retention(conn, tenant="acme", tier="production", months=9, bounds=BOUNDS, now=NOW, ledger=None)


def test_override_reapplies_to_existing_copies_with_a_dry_run_preview(catalog, store, keys, scratch_bucket):
    # Two production copies of calls made 1 and 2.5 months ago, stored with the 3-month default.
    calls = [NOW - timedelta(days=30), NOW - timedelta(days=75)]
    ids = []
    for started in calls:
        with catalog.begin() as conn:
            rid, nh = new_recording(conn, keys)
            conn.execute(t.recordings.update().where(t.recordings.c.id == rid).values(started_at=started))
        ids.append(store_copy(catalog, store, keys, scratch_bucket, b"x" * 100, rid=rid, number_hash=nh,
                              expires_at=add_months(started, 3))[2])
    with catalog.begin() as conn:
        preview = set_retention(conn, tenant="acme", tier="production", months=2, bounds=BOUNDS, now=NOW, ledger=None,
                                dry_run=True)
    assert (preview.copies, preview.changed, preview.expire_now, preview.applied) == (2, 2, 1, False)
    assert [r["expires_at"] for r in rows(catalog, t.copies)] == [add_months(c, 3) for c in calls]  # unchanged

    with catalog.begin() as conn:
        applied = set_retention(conn, tenant="acme", tier="production", months=2, bounds=BOUNDS, now=NOW, ledger=None)
    assert applied.changed == 2 and applied.expire_now == 1
    by_id = {r["id"]: r["expires_at"] for r in rows(catalog, t.copies)}
    assert [by_id[i] for i in ids] == [add_months(c, 2) for c in calls]
    # The shortened retention is enforced by the next sweep.
    report = sweep(catalog, store, now=NOW)
    assert report.deleted_copies == 1
    assert [r["id"] for r in rows(catalog, t.copies)] == [ids[0]]
    # A second identical override changes nothing.
    with catalog.begin() as conn:
        assert set_retention(conn, tenant="acme", tier="production", months=2, bounds=BOUNDS, now=NOW, ledger=None).changed == 0


def test_linked_copies_have_their_own_tier_clock_and_row_under_the_same_caller_key(
        catalog, store, keys, scratch_bucket):
    audio = os.urandom(5000)
    rid, number_hash, prod, _ = store_copy(catalog, store, keys, scratch_bucket, audio)
    later = NOW + timedelta(days=10)
    with catalog.begin() as conn:
        with pytest.raises(CopyNotAllowed, match="training report"):
            create_copy(conn, store, keys, recording_id=rid, tier="training", actor="coach-1", now=later)
        with pytest.raises(CopyNotAllowed, match="reason"):
            create_copy(conn, store, keys, recording_id=rid, tier="complaint-extract", actor="ic-1", now=later)
        training = create_copy(conn, store, keys, recording_id=rid, tier="training", actor="coach-1", now=later,
                               training_report="Good de-escalation; missed the payment-plan script.")
        monitoring = create_copy(conn, store, keys, recording_id=rid, tier="monitoring", actor="mgr-1", now=later)
        extract = create_copy(conn, store, keys, recording_id=rid, tier="complaint-extract", actor="ic-1",
                              now=later, reason="complaint CPL-2026-114")
        again = create_copy(conn, store, keys, recording_id=rid, tier="monitoring", actor="mgr-1", now=later)
    assert again.copy_id == monitoring.copy_id and not again.created
    assert training.expires_at == add_months(later, 12)
    assert monitoring.expires_at == add_months(later, 3)
    assert extract.expires_at == add_months(later, 36)
    copies = {r["tier"]: r for r in rows(catalog, t.copies, t.copies.c.recording_id == rid)}
    assert len(copies) == 4 and len({c["caller_key_id"] for c in copies.values()}) == 1
    assert len({c["object_key"] for c in copies.values()}) == 4
    assert "CPL" not in copies["complaint-extract"]["object_key"]  # free text never in a key
    assert store.get_tags(scratch_bucket, copies["training"]["object_key"])["tier"] == "training"
    with catalog.connect() as conn:
        for c in copies.values():
            assert read_copy(conn, store, keys, c["id"]) == audio
    # Deleting the production original leaves the training copy alone (its own clock)...
    sweep(catalog, store, now=NOW + timedelta(days=91))
    assert {r["tier"] for r in rows(catalog, t.copies)} == {"monitoring", "training", "complaint-extract"}
    # ...and destroying the caller's key reaches every linked copy.
    with catalog.begin() as conn:
        KeyRing.destroy_ids(conn, live_caller_keys(conn, "acme", [number_hash]), now=NOW)
    with catalog.connect() as conn, pytest.raises(KeyDestroyedError):
        read_copy(conn, store, keys, training.copy_id)


def test_sweeper_deletes_expired_unheld_copies_objects_rows_and_empty_recordings(
        catalog, store, keys, scratch_bucket, minio):
    from minio.commonconfig import ENABLED
    from minio.versioningconfig import VersioningConfig

    minio.minio_client().set_bucket_versioning(scratch_bucket, VersioningConfig(ENABLED))
    expired, kept, held = [], [], []
    for i in range(12):
        rid, nh, cid, key = store_copy(catalog, store, keys, scratch_bucket, b"a" * 300,
                                       expires_at=NOW - timedelta(hours=1) if i < 8 else NOW + timedelta(days=1))
        store_copy(catalog, store, keys, scratch_bucket, b"b" * 300, rid=rid, number_hash=nh,
                   expires_at=NOW - timedelta(hours=1) if i < 8 else NOW + timedelta(days=1))  # 2nd version
        (expired if i < 6 else held if i < 8 else kept).append((rid, cid, key))
    with catalog.begin() as conn:
        set_hold(conn, store, copy_ids=[c for _, c, _ in held], reason="litigation L-7", actor="ic-1", now=NOW)

    with catalog.connect() as conn:
        number = keys.open_number(conn, conn.execute(sa.select(t.recordings).limit(1)).mappings().one())
    dry = sweep(catalog, store, now=NOW, dry_run=True)
    assert (dry.expired, dry.held_expired, dry.deleted_copies) == (6, 2, 0)
    progress = []
    report = sweep(catalog, store, now=NOW, batch_size=4, progress=progress.append)
    assert (report.deleted_copies, report.deleted_recordings, report.held_expired) == (6, 6, 2)
    assert progress == [4, 2] and len(report.events) == 6
    assert {e["type"] for e in report.events} == {"expired"}
    left = {r["id"] for r in rows(catalog, t.copies)}
    assert left == {c for _, c, _ in held + kept}
    assert rows(catalog, t.recordings, t.recordings.c.id.in_([r for r, _, _ in expired])) == []
    versions = store.client.list_object_versions(Bucket=scratch_bucket)
    remaining = {v["Key"] for v in versions.get("Versions", [])} | {m["Key"] for m in versions.get("DeleteMarkers", [])}
    assert remaining == {k for _, _, k in held + kept}  # every version of the expired objects is gone
    audit = rows(catalog, t.audit_events)
    deletions = [a for a in audit if a["action"] == "copy:delete"]
    assert len([a for a in deletions if a["target_type"] == "copy"]) == 6
    assert len([a for a in deletions if a["target_type"] == "recording"]) == 6
    assert len([a for a in audit if a["action"] == "copy:hold:set"]) == 2
    assert all(number not in str(dict(a)) for a in audit)  # the trail keeps no number
    with catalog.connect() as conn:
        assert verify(conn).ok
    assert sweep(catalog, store, now=NOW).deleted_copies == 0


def test_a_sweep_killed_midway_converges_on_rerun(catalog, store, keys, scratch_bucket):
    for _ in range(7):
        store_copy(catalog, store, keys, scratch_bucket, b"z" * 100, expires_at=NOW - timedelta(minutes=1))
    # Killed after marking a batch, before deleting anything:
    assert len(_mark(catalog, NOW, 3)) == 3
    # Killed after deleting the objects of a batch, before deleting the rows:
    marked = _mark(catalog, NOW, 3)
    store.delete_many(scratch_bucket, [r.object_key for r in marked])
    report = sweep(catalog, store, now=NOW, batch_size=2)
    assert report.deleted_copies == 7
    assert rows(catalog, t.copies) == [] and rows(catalog, t.recordings) == []
    assert reconcile(catalog, store, scratch_bucket, repair=False, grace=timedelta(0)).clean


def test_holds_are_mirrored_to_s3_object_legal_hold_and_released(catalog, store, keys, storage_settings):
    init_buckets(storage_settings, say=lambda _m: None)  # the recordings bucket has object lock
    bucket = storage_settings.recordings_bucket
    rid, nh, prod, key = store_copy(catalog, store, keys, bucket, b"h" * 500, expires_at=NOW - timedelta(days=1))
    with catalog.begin() as conn:
        result = set_hold(conn, store, recording_id=rid, reason="GDPR dispute D-3", actor="ic-1", now=NOW)
    assert result.changed == [prod] and result.mirrored == 1
    assert store.client.get_object_legal_hold(Bucket=bucket, Key=key)["LegalHold"]["Status"] == "ON"
    version = store.client.head_object(Bucket=bucket, Key=key)["VersionId"]
    with pytest.raises(ClientError):  # even a direct S3 delete of the held version is refused
        store.client.delete_object(Bucket=bucket, Key=key, VersionId=version)
    assert sweep(catalog, store, now=NOW).deleted_copies == 0
    with catalog.begin() as conn:
        release_hold(conn, store, recording_id=rid, actor="ic-1", now=NOW)
    assert store.client.get_object_legal_hold(Bucket=bucket, Key=key)["LegalHold"]["Status"] == "OFF"
    assert sweep(catalog, store, now=NOW).deleted_copies == 1
    assert store.head(bucket, key) is None


def test_an_expiring_copy_already_marked_cannot_be_held(catalog, store, keys, scratch_bucket):
    _, _, cid, _ = store_copy(catalog, store, keys, scratch_bucket, b"m" * 10, expires_at=NOW - timedelta(days=1))
    _mark(catalog, NOW, 10)
    with catalog.begin() as conn:
        result = set_hold(conn, store, copy_ids=[cid], reason="too late", actor="ic-1", now=NOW)
    assert result.refused == [cid] and result.changed == []


def test_ten_thousand_holds_no_cap(catalog, store, keys, scratch_bucket):
    """10,000 held copies (catalog rows whose objects were never written: each is listed as missing,
    none is mirrored, and the hold stands)."""
    with catalog.begin() as conn:
        rid, nh = new_recording(conn, keys)
        caller = keys.caller_key(conn, tenant="acme", number_hash=nh)
        conn.execute(t.copies.insert(), [
            dict(id=uuid.uuid4(), recording_id=rid, tier="complaint-extract", reason=f"C-{i}",
                 object_key=f"acme/{rid}/x-{i}.cve", bucket=scratch_bucket, size_bytes=1, stored_sha256="0" * 64,
                 wrapped_data_key=b"w", caller_key_id=caller.id, frame_size=1024, created_at=NOW,
                 created_by="t", expires_at=NOW - timedelta(days=1)) for i in range(10_000)])
    with catalog.begin() as conn:
        result = set_hold(conn, store, recording_id=rid, reason="class action", actor="ic-1", now=NOW)
    assert len(result.changed) == 10_000 and result.mirrored == 0 and len(result.missing) == 10_000
    report = sweep(catalog, store, now=NOW)
    assert report.deleted_copies == 0 and report.held_expired == 10_000


def test_lifecycle_report_counts_copies_bytes_and_upcoming_expiries(catalog, store, keys, scratch_bucket, tmp_path):
    from lifecycle.report import html_chart, lifecycle_report, text_table

    for days in (3, 20, 60, 200):
        store_copy(catalog, store, keys, scratch_bucket, b"r" * 1000, expires_at=NOW + timedelta(days=days))
    rid, nh, held, _ = store_copy(catalog, store, keys, scratch_bucket, b"r" * 1000, expires_at=NOW + timedelta(days=1))
    with catalog.begin() as conn:
        set_hold(conn, store, copy_ids=[held], reason="case 9", actor="ic-1", now=NOW, mirror=False)
        create_copy(conn, store, keys, recording_id=rid, tier="training", actor="coach", now=NOW,
                    training_report="use in onboarding")
        report = lifecycle_report(conn, now=NOW)
    by_tier = {r.tier: r for r in report}
    prod = by_tier["production"]
    assert (prod.copies, prod.held, prod.expiring) == (5, 1, {7: 1, 30: 2, 90: 3})
    assert prod.bytes == sum(r["size_bytes"] for r in rows(catalog, t.copies, t.copies.c.tier == "production"))
    assert by_tier["training"].copies == 1 and by_tier["training"].expiring == {7: 0, 30: 0, 90: 0}
    table = text_table(report)
    assert "acme" in table and "production" in table
    page = html_chart(report, now=NOW)
    assert page.count("<rect") == 2 * 4 and "expire ≤30 days: 2" in page and "<svg" in page
