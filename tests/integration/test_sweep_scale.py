"""A sweep of 10,000 expired copies by the real `callvault lifecycle sweep` command, SIGKILLed
half way and re-run: it converges with no orphan object, no dangling row, an intact audit chain."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from lifecycle.reconcile import reconcile
from storage.admin import init_buckets
from storage.audit import verify
from storage.catalog import tables as t
from storage.catalog.db import make_engine
from storage.objectstore import ObjectStore
from testbed.pipeline import service_env

pytestmark = pytest.mark.integration
N = 10_000


def _count(engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()


def test_sweep_of_10000_expired_copies_survives_sigkill(storage_settings, pg_schema_url, tmp_path):
    storage = storage_settings.model_copy(update={"master_key": SecretStr(base64.b64encode(os.urandom(32)).decode())})
    init_buckets(storage, say=lambda _m: None)
    bucket = storage.recordings_bucket
    store = ObjectStore.from_settings(storage)
    engine = make_engine(pg_schema_url, echo=False)
    now = datetime.now(timezone.utc)
    past = now - timedelta(days=1)
    key_id = uuid.uuid4()
    recordings, copies = [], []
    for i in range(N):
        rid = uuid.uuid4()
        recordings.append(dict(id=rid, tenant_id="acme", external_id=f"x{i}", started_at=past - timedelta(days=92),
                               direction="inbound", caller_number_sealed=b"s" * 40, caller_key_id=key_id,
                               number_hash="h" * 64,
                               agent_id="a", team_id="t", duration_ms=1000, audio_format="opus", channels=1,
                               redactions=[], created_at=past, content_sha256="0" * 64))
        copies.append(dict(id=uuid.uuid4(), recording_id=rid, tier="production", reason="",
                           object_key=f"acme/{rid}/production.cve", bucket=bucket, size_bytes=4,
                           stored_sha256="0" * 64, wrapped_data_key=b"w", caller_key_id=key_id, frame_size=1024,
                           created_at=past, created_by="t", expires_at=past))
    with engine.begin() as conn:
        conn.execute(t.tenants.insert().values(id="acme", name="Acme", created_at=now))
        conn.execute(t.caller_keys.insert().values(id=key_id, tenant_id="acme", number_hash="h" * 64,
                                                   wrapped_key=b"k", created_at=now))
        conn.execute(t.recordings.insert(), recordings)
        conn.execute(t.copies.insert(), copies)
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda c: store.put(bucket, c["object_key"], b"data"), copies))

    env = service_env(storage, pg_schema_url)
    cmd = [sys.executable, "-m", "callvault.cli", "lifecycle", "sweep", "--batch-size", "500"]
    started = time.monotonic()
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             start_new_session=True)
    while _count(engine, t.copies) > N // 2 and first.poll() is None:
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    killed_at = _count(engine, t.copies)
    assert 0 < killed_at <= N // 2, "the sweep should have been killed half way"

    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    elapsed = time.monotonic() - started
    assert second.returncode == 0, second.stderr[-2000:]
    assert _count(engine, t.copies) == 0 and _count(engine, t.recordings) == 0
    versions = store.client.list_object_versions(Bucket=bucket)
    assert versions.get("Versions", []) == [] and versions.get("DeleteMarkers", []) == []
    assert reconcile(engine, store, bucket, repair=False, grace=timedelta(0)).clean
    with engine.connect() as conn:
        result = verify(conn)
        assert result.ok, result
        deletions = conn.execute(sa.select(sa.func.count()).select_from(t.audit_events).where(
            t.audit_events.c.action == "copy:delete", t.audit_events.c.target_type == "copy")).scalar()
    assert deletions == N  # one entry per copy: none lost to the kill, none written twice
    print(f"\nsweep of {N} expired copies (killed at {N - killed_at} done, then re-run): {elapsed:.1f} s, "
          f"{N / elapsed:.0f} copies/s")
    engine.dispose()
