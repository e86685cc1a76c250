"""`callvault api --workers 2`: two processes share the port, each with its own services and pool;
both serve playback, every request is audited in one verifiable chain, /metrics counts all."""

from __future__ import annotations

import base64
import http.client
import os
import secrets
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from access.identities import add_user
from access.settings import AccessSettings
from access.tokens import issue_token
from storage.admin import init_buckets
from storage.audit import verify
from storage.catalog import tables as t
from storage.catalog.db import make_engine
from storage.copies import object_key_for, put_encrypted, upsert_copy
from storage.keys import KeyRing
from storage.objectstore import ObjectStore
from testbed.api import ApiProcess
from testbed.catalog import add_recording
from testbed.pipeline import service_env

pytestmark = pytest.mark.integration

REQUESTS = 24


def _children(pid: int) -> list[int]:
    found = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
                found.append(int(d))
    return found


def _copy(engine, settings, audio: bytes):
    keys, store = KeyRing.from_settings(settings), ObjectStore.from_settings(settings)
    now = datetime.now(timezone.utc)
    with engine.begin() as conn:
        conn.execute(t.tenants.insert().values(id="acme", name="Acme", created_at=now))
        add_user(conn, user_id="manager-1", role="manager", tenants=["acme"], teams=[("acme", "t1", "manager")])
        rid, number_hash = add_recording(conn, keys, started=now - timedelta(hours=1), created=now)
        caller = keys.caller_key(conn, tenant="acme", number_hash=number_hash)
        key = object_key_for("acme", rid, "production")
        stored = put_encrypted(conn, store, keys, caller=caller, bucket=settings.recordings_bucket, object_key=key,
                               audio=audio, tags={"tier": "production", "tenant": "acme"})
        return upsert_copy(conn, recording_id=rid, tier="production", stored=stored,
                           bucket=settings.recordings_bucket, expires_at=now + timedelta(days=90), created_by="test")


def test_two_worker_processes_serve_playback_and_audit_every_range(storage_settings, pg_schema_url, tmp_path):
    settings = storage_settings.model_copy(update={"master_key": SecretStr(base64.b64encode(os.urandom(32)).decode())})
    init_buckets(settings, say=lambda _m: None)
    engine = make_engine(pg_schema_url)
    audio = os.urandom(300_000)
    copy_id = _copy(engine, settings, audio)
    secret = secrets.token_urlsafe(32)
    token = issue_token("manager-1", AccessSettings(jwt_secret=SecretStr(secret)))
    env = {**service_env(settings, pg_schema_url), "CALLVAULT_ACCESS_JWT_SECRET": secret}
    try:
        with ApiProcess(env, tmp_path / "api.log", args=("--workers", "2")) as api:
            assert "2 worker processes" in api.log()
            assert len(_children(api.process.pid)) >= 2, api.log()
            for i in range(REQUESTS):  # a connection each: the kernel spreads them over both processes
                start = 1000 * i + 7
                conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=30)
                conn.request("GET", f"/copies/{copy_id}/audio",
                             headers={"Authorization": f"Bearer {token}", "Range": f"bytes={start}-{start + 99_999}"})
                resp = conn.getresponse()
                assert resp.status == 206 and resp.read() == audio[start:start + 100_000]
                conn.close()
            # A request is counted once its response has gone, which may be just after the client
            # read its last byte: wait (bounded) for the last one, then every answer must count all.
            deadline = time.monotonic() + 15
            while _served(_metrics(api.port)) < REQUESTS and time.monotonic() < deadline:
                time.sleep(0.1)
            for _ in range(4):  # whichever process answers, it counts both processes' requests
                metrics = _metrics(api.port)
                assert _served(metrics) == REQUESTS, metrics
        with engine.connect() as conn:
            streamed = conn.execute(sa.select(sa.func.count()).select_from(t.audit_events).where(
                t.audit_events.c.action == "recording:audio:stream", t.audit_events.c.outcome == "allowed")).scalar()
            assert streamed == REQUESTS
            assert verify(conn).ok
    finally:
        engine.dispose()


def _metrics(port: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/metrics")
        return conn.getresponse().read().decode()
    finally:
        conn.close()


def _served(metrics: str) -> float:
    """The 206 answers of the playback route in a /metrics text."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("callvault_api_requests_total{") and 'route="/copies/{copy_id}/audio"' in line
               and 'status="206"' in line)
