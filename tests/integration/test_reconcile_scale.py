"""``reconcile`` as a streaming merge on real MinIO and PostgreSQL: over thousands of rows whose
objects are missing it finds the exact counts, its memory does not grow with the catalog (the
tracemalloc peak is flat from N to 4N rows), and the repair works batch by batch."""

from __future__ import annotations

import tracemalloc
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from lifecycle import reconcile as rc
from storage.audit import verify
from storage.catalog import tables as t
from storage.catalog.db import make_engine
from testbed.scale import load_copies, object_key

pytestmark = pytest.mark.integration
N, PRESENT = 2_000, 150
ORPHANS = ["acme/orphan-1/production.cve", "zz/orphan-2/training.cve", "0/orphan-3/production.cve"]


def _peak(engine, store, bucket, *, repair: bool = False) -> tuple[rc.ReconcileReport, int]:
    tracemalloc.start()
    try:
        report = rc.reconcile(engine, store, bucket, repair=repair, grace=timedelta(0))
        return report, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _count(engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def _check(report: rc.ReconcileReport, rows: int, missing: int) -> None:
    assert (report.rows_seen, report.objects_seen) == (rows, PRESENT + len(ORPHANS))
    assert report.count("dangling_rows") == report.count("empty_recordings") == missing
    assert report.count("orphan_objects") == len(ORPHANS) and sorted(report.orphan_objects) == sorted(ORPHANS)
    assert len(report.dangling_rows) == 50  # the sample; the counts are whole
    verb = "deleted" if report.repaired else "to delete"
    assert f"{missing} dangling rows {verb}, {missing} empty recordings {verb}" in report.summary()


def test_the_merge_counts_exactly_in_flat_memory_and_repairs_in_batches(
        pg_schema_url, store, scratch_bucket, monkeypatch):
    monkeypatch.setattr(rc, "BATCH", 250)  # many batches at a few thousand rows
    monkeypatch.setattr(rc, "SAMPLE", 50)
    engine = make_engine(pg_schema_url, echo=False)
    now = datetime.now(timezone.utc) - timedelta(hours=1)
    try:
        load_copies(engine, bucket=scratch_bucket, total=N, now=now)
        for i in range(PRESENT):
            store.put(scratch_bucket, object_key("acme", i * 7), b"x")
        for key in ORPHANS:
            store.put(scratch_bucket, key, b"crash between the object and its row")
        _peak(engine, store, scratch_bucket)  # warm: statement caches, botocore's models
        small, small_peak = _peak(engine, store, scratch_bucket)
        _check(small, N, N - PRESENT)
        fixed, fixed_peak = _peak(engine, store, scratch_bucket, repair=True)
        _check(fixed, N, N - PRESENT)
        assert (_count(engine, t.copies), _count(engine, t.recordings)) == (PRESENT, PRESENT)

        # Four times as many rows whose objects are missing: same memory, report and repair alike.
        load_copies(engine, bucket=scratch_bucket, total=5 * N, first=N, now=now)
        for key in ORPHANS:
            store.put(scratch_bucket, key, b"crash between the object and its row")
        large, large_peak = _peak(engine, store, scratch_bucket)
        _check(large, PRESENT + 4 * N, 4 * N)
        assert large_peak < 1.5 * small_peak, (small_peak, large_peak)  # a dict of every row would be ~4x
        repaired, repair_peak = _peak(engine, store, scratch_bucket, repair=True)
        _check(repaired, PRESENT + 4 * N, 4 * N)
        assert repair_peak < 1.5 * fixed_peak, (fixed_peak, repair_peak)

        assert (_count(engine, t.copies), _count(engine, t.recordings)) == (PRESENT, PRESENT)
        assert _count(engine, t.audit_events) == 2 * (N - PRESENT + 4 * N) + 2 * len(ORPHANS)
        with engine.connect() as conn:
            assert verify(conn).ok
        assert rc.reconcile(engine, store, scratch_bucket, repair=True, grace=timedelta(0)).clean
    finally:
        engine.dispose()
