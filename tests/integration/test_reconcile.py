"""``reconcile`` on real MinIO with the catalog on SQLite and PostgreSQL: it reports by default,
repairs only when asked, audits each repair, and never deletes a held copy (nor an object
marked held whose row is gone); and the ``callvault storage reconcile [--repair]`` command."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from lifecycle.holds import release_hold, set_hold
from lifecycle.reconcile import apply_repairs, find, reconcile
from lifecycle.sweeper import _mark, sweep
from storage.admin import init_buckets
from storage.audit import verify
from storage.catalog import tables as t
from storage.catalog.db import make_engine
from testbed.pipeline import service_env
from tests.support.catalog import NOW, store_copy

pytestmark = pytest.mark.integration
ORPHAN = "acme/orphan/production.cve"
NUMBER_DIGITS = "33612345678"  # catalog_helpers.new_recording's default caller


def _ids(engine, table) -> set:
    with engine.connect() as conn:
        return set(conn.execute(sa.select(table.c.id)).scalars())


def _reconcile_audit(engine) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(t.audit_events).where(
            t.audit_events.c.actor == "reconcile").order_by(t.audit_events.c.seq)).mappings()]


def _utc(moment):
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def test_reports_by_default_repairs_on_request_and_never_deletes_a_held_copy(catalog, store, keys, scratch_bucket):
    _, _, kept, kept_key = store_copy(catalog, store, keys, scratch_bucket, b"k" * 2000)
    store.put(scratch_bucket, ORPHAN, b"crash after the object, before the row")
    lost_rid, _, lost, lost_key = store_copy(catalog, store, keys, scratch_bucket, b"l" * 2000)
    store.delete(scratch_bucket, lost_key)
    held_rid, _, held, held_key = store_copy(catalog, store, keys, scratch_bucket, b"h" * 2000)
    with catalog.begin() as conn:
        set_hold(conn, store, copy_ids=[held], reason="litigation L-3", actor="ic-1", now=NOW)
    store.delete(scratch_bucket, held_key)  # the evidence vanished behind the catalog's back
    copies, recordings = _ids(catalog, t.copies), _ids(catalog, t.recordings)

    at = datetime.now(timezone.utc)  # the grace period compares the server's object times with ``now``
    said: list[str] = []
    report = reconcile(catalog, store, scratch_bucket, grace=timedelta(0), now=at, say=said.append)
    assert (report.orphan_objects, report.dangling_rows, report.empty_recordings, report.held_missing) == (
        [ORPHAN], [lost], [lost_rid], [held])
    assert not report.clean and not report.repaired and report.recordings_removed == 0
    assert "1 orphan objects to delete, 1 dangling rows to delete, 1 empty recordings to delete" in said[-1]
    assert "1 held copies whose object is missing" in said[-1] and str(held) in said[-1] and "INCIDENT" in said[-1]
    assert "--repair" in said[-1]
    # Report only: nothing changed anywhere.
    assert store.head(scratch_bucket, ORPHAN) is not None
    assert (_ids(catalog, t.copies), _ids(catalog, t.recordings)) == (copies, recordings)
    assert _reconcile_audit(catalog) == []

    repaired = reconcile(catalog, store, scratch_bucket, repair=True, grace=timedelta(0), now=at)
    assert (repaired.orphan_objects, repaired.dangling_rows, repaired.held_missing) == ([ORPHAN], [lost], [held])
    assert repaired.recordings_removed == 1 and repaired.repaired and not repaired.clean
    assert [o.key for o in store.list(scratch_bucket)] == [kept_key]
    assert _ids(catalog, t.copies) == {kept, held}  # the held row stays, object or not
    assert _ids(catalog, t.recordings) == recordings - {lost_rid} and held_rid in _ids(catalog, t.recordings)
    entries = _reconcile_audit(catalog)
    assert [(e["action"], e["target_type"], e["target_id"]) for e in entries] == [
        ("reconcile:orphan-object:delete", "object", ORPHAN),
        ("reconcile:dangling-copy:delete", "copy", str(lost)),
        ("reconcile:empty-recording:delete", "recording", str(lost_rid)),
    ]
    # The server clock stamps each entry; the tenant is the row's (an orphan object has none).
    assert all((e["role"], e["outcome"]) == ("system", "done") and at <= _utc(e["at"]) <= datetime.now(timezone.utc)
               for e in entries)
    assert [e["tenant_id"] for e in entries] == [None, "acme", "acme"]
    assert not any(NUMBER_DIGITS in str(e) for e in entries)  # PII-free
    with catalog.connect() as conn:
        assert verify(conn).ok

    again = reconcile(catalog, store, scratch_bucket, repair=True, grace=timedelta(0), now=at)
    assert (again.orphan_objects, again.dangling_rows, again.held_missing) == ([], [], [held])
    assert not again.clean and len(_reconcile_audit(catalog)) == 3  # still an incident; nothing new repaired

    # The operator closes the incident by releasing the hold; then the row is an ordinary dangling one.
    with catalog.begin() as conn:
        assert release_hold(conn, store, copy_ids=[held], actor="ic-1", now=NOW).missing == [held]
    assert reconcile(catalog, store, scratch_bucket, repair=True, grace=timedelta(0), now=at).dangling_rows == [held]
    assert reconcile(catalog, store, scratch_bucket, grace=timedelta(0), now=at).clean


def test_a_hold_set_between_the_scan_and_the_repair_wins(catalog, store, keys, scratch_bucket):
    _, _, lost, lost_key = store_copy(catalog, store, keys, scratch_bucket, b"x" * 500)
    store.delete(scratch_bucket, lost_key)
    at = datetime.now(timezone.utc)
    report = find(catalog, store, scratch_bucket, grace=timedelta(0), now=at)
    assert report.dangling_rows == [lost]
    with catalog.begin() as conn:
        set_hold(conn, store, copy_ids=[lost], reason="case 8", actor="ic-1", now=NOW)
    apply_repairs(catalog, store, report, now=at)
    assert (report.dangling_rows, report.held_missing, report.empty_recordings) == ([], [lost], [])
    assert lost in _ids(catalog, t.copies) and _reconcile_audit(catalog) == []


def test_rows_the_sweeper_has_claimed_are_left_to_it(catalog, store, keys, scratch_bucket):
    _, _, cid, key = store_copy(catalog, store, keys, scratch_bucket, b"s" * 500, expires_at=NOW - timedelta(days=1))
    assert [r.id for r in _mark(catalog, NOW, 10)] == [cid]
    store.delete(scratch_bucket, key)  # a sweep killed between its object and row deletions
    at = datetime.now(timezone.utc)
    assert reconcile(catalog, store, scratch_bucket, repair=True, grace=timedelta(0), now=at).clean
    assert cid in _ids(catalog, t.copies)
    assert sweep(catalog, store, now=NOW).deleted_copies == 1


def test_objects_marked_held_without_a_row_are_left_alone(catalog, store, locked_bucket):
    """E.g. after a catalog restore that lost their rows: the object's hold markers still protect them."""
    retagged, legal, plain = "acme/r1/production.cve", "acme/r2/training.cve", "acme/r3/production.cve"
    store.put(locked_bucket, retagged, b"held, retagged", tags={"held-tier": "production", "tenant": "acme"})
    store.put(locked_bucket, legal, b"held, legal hold only", tags={"tier": "training"})
    store.set_legal_hold(locked_bucket, legal, True)
    store.put(locked_bucket, plain, b"an ordinary orphan", tags={"tier": "production"})
    at = datetime.now(timezone.utc)

    report = reconcile(catalog, store, locked_bucket, repair=True, grace=timedelta(0), now=at)
    assert sorted(report.held_orphans) == sorted([retagged, legal]) and report.orphan_objects == [plain]
    assert "2 held objects without a catalog row" in report.summary()
    assert sorted(o.key for o in store.list(locked_bucket)) == sorted([retagged, legal])
    assert [e["target_id"] for e in _reconcile_audit(catalog)] == [plain]
    assert not reconcile(catalog, store, locked_bucket, grace=timedelta(0), now=at).clean


def test_the_command_reports_by_default_and_repairs_with_repair(storage_settings, pg_schema_url, store, keys):
    storage = storage_settings.model_copy(update={"master_key": SecretStr(base64.b64encode(os.urandom(32)).decode())})
    init_buckets(storage, say=lambda _m: None)
    bucket = storage.recordings_bucket
    engine = make_engine(pg_schema_url, echo=False)
    with engine.begin() as conn:
        conn.execute(t.tenants.insert().values(id="acme", name="Acme", created_at=NOW))
    _, _, lost, lost_key = store_copy(engine, store, keys, bucket, b"c" * 500)
    store.delete(bucket, lost_key)
    store.put(bucket, ORPHAN, b"orphan")
    env = service_env(storage, pg_schema_url)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "callvault.cli", "storage", "reconcile", "--grace-minutes", "0",
                               *args], env=env, capture_output=True, text=True, timeout=120)

    try:
        first = run()
        assert first.returncode == 4, first.stderr[-2000:]
        assert "1 orphan objects to delete, 1 dangling rows to delete" in first.stdout
        assert store.head(bucket, ORPHAN) is not None and lost in _ids(engine, t.copies)
        assert run("--dry-run").returncode == 2  # the old flag is gone, not silently a repair
        second = run("--repair")
        assert second.returncode == 0, second.stderr[-2000:]
        assert "1 orphan objects deleted, 1 dangling rows deleted, 1 empty recordings deleted" in second.stdout
        assert store.head(bucket, ORPHAN) is None and _ids(engine, t.copies) == set()
        third = run()
        assert third.returncode == 0 and "0 orphan objects to delete, 0 dangling rows to delete" in third.stdout
    finally:
        engine.dispose()


def test_a_recording_with_a_copy_in_another_bucket_is_not_left_empty(catalog, store, keys, scratch_bucket,
                                                                      locked_bucket):
    rid, nh, lost, lost_key = store_copy(catalog, store, keys, scratch_bucket, b"p" * 500)
    store_copy(catalog, store, keys, locked_bucket, b"t" * 500, rid=rid, number_hash=nh, tier="training",
               training_report="kept elsewhere")
    store.delete(scratch_bucket, lost_key)
    at = datetime.now(timezone.utc)
    report = reconcile(catalog, store, scratch_bucket, grace=timedelta(0), now=at)
    assert (report.dangling_rows, report.empty_recordings) == ([lost], [])
    repaired = reconcile(catalog, store, scratch_bucket, repair=True, grace=timedelta(0), now=at)
    assert (repaired.dangling_rows, repaired.recordings_removed) == ([lost], 0) and rid in _ids(catalog, t.recordings)
