"""Dead-letter operations against the real broker and worker (issue 14): a call refused for an
unknown tenant is replayed once the tenant exists and stored exactly once; show masks the
number and never prints audio; purge deletes old dead letters only."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from access.identities import add_user
from core.errors import CallvaultError
from ingest.dlq import purge, read, replay, select, summary
from ingest.producer import Call, Producer, resealer
from storage.catalog import tables as t
from testbed.audio import sine_wav

pytestmark = pytest.mark.integration


def _cli(pipeline, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "callvault.cli", *args], env=pipeline.env, capture_output=True,
                          text=True, timeout=120)


def test_unknown_tenant_calls_are_replayed_after_the_tenant_is_added_and_stored_once(pipeline) -> None:
    now = datetime.now(timezone.utc)
    calls = [Call(audio=sine_wav(1.0), tenant="newco", agent_id="a1", caller_number="+33612345678",
                  started_at=now - timedelta(minutes=1), recording_id=f"early-{i}") for i in range(3)]
    # callvault's producer has no ingest key to seal to for an unknown tenant: it says so at once.
    with pytest.raises(CallvaultError, match="tenant 'newco' is not configured"):
        pipeline.push(calls[0])
    # A producer of the telephony's own that does not seal (plain v1) gets its calls dead-lettered.
    producer = Producer(pipeline.kafka, pipeline.storage, seal_keys=pipeline.seal_keys)
    pipeline.push_raw(*[(c.recording_id.encode(), producer.message_for(c).to_bytes()) for c in calls])
    pipeline.wait_for(lambda e: e.get("reason") == "unknown_tenant", count=3)
    letters = asyncio.run(read(pipeline.kafka, pipeline.release_key))
    assert all(d.quarantine_id and b"612345678" not in d.value for d in letters)  # only in quarantine
    assert [(r, tn, n) for r, tn, n, _ in summary(letters)] == [("unknown_tenant", "newco", 3)]

    listed = _cli(pipeline, "dlq", "list", "--all")
    assert "unknown_tenant" in listed.stdout and "newco" in listed.stdout and listed.returncode == 0, listed.stderr
    shown = _cli(pipeline, "dlq", "show", letters[0].position)
    assert shown.returncode == 0 and "+33 6 •• •• •• 78" in shown.stdout, shown.stderr
    assert "612345678" not in shown.stdout and "UklGR" not in shown.stdout  # no number, no audio (RIFF base64)
    assert _cli(pipeline, "dlq", "show", "9:999999").returncode == 1

    with pipeline.engine.begin() as conn:
        conn.execute(t.tenants.insert().values(id="newco", name="New Co", created_at=now))
        add_user(conn, user_id="it-1", role="it", tenants=["acme", "newco"])
    done = _cli(pipeline, "dlq", "replay", "--reason", "unknown_tenant", "--tenant", "newco", "--actor", "it-1")
    assert "replayed 3" in done.stdout, done.stdout + done.stderr
    pipeline.wait_for(lambda e: e.get("type") == "stored" and e.get("tenant") == "newco", count=3)
    # A second replay is harmless: the calls are recognised as already stored.
    resealed = resealer(pipeline.seal_keys)
    assert asyncio.run(replay(pipeline.kafka, select(letters, reason="unknown_tenant"), reseal=resealed)) == 3
    pipeline.wait_for(lambda e: e.get("type") == "duplicate" and e.get("tenant") == "newco", count=3)
    with pipeline.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(t.recordings).where(
            t.recordings.c.tenant_id == "newco")).scalar() == 3
        assert conn.execute(sa.select(sa.func.count()).select_from(t.copies)).scalar() == 3
        audit = conn.execute(sa.select(t.audit_events).where(t.audit_events.c.action == "dlq:replay")).mappings().one()
    assert audit["actor"] == "it-1" and audit["detail"]["replayed"] == 3


def test_purge_deletes_only_dead_letters_older_than_the_cutoff(pipeline) -> None:
    pipeline.push_raw((b"bad-1", b"not json"), (b"bad-2", b"{}"))
    pipeline.wait_for(lambda e: e.get("type") == "dead-letter", count=2)
    letters = asyncio.run(read(pipeline.kafka))
    assert asyncio.run(purge(pipeline.kafka, letters, older_than=min(d.at for d in letters))) == 0
    cutoff = max(d.at for d in letters) + timedelta(milliseconds=1)
    assert asyncio.run(purge(pipeline.kafka, letters, older_than=cutoff)) == 2
    assert asyncio.run(read(pipeline.kafka)) == []


def test_it_and_internal_control_see_their_tenants_dead_letters_in_the_api(pipeline, pg_engine, store, keys,
                                                                            scratch_bucket, storage_settings,
                                                                            monkeypatch) -> None:
    from tests.support.world import build_world

    now = datetime.now(timezone.utc)
    pipeline.push(Call(audio=b"not audio at all", tenant="acme", agent_id="a1", caller_number="+33612345678",
                       started_at=now - timedelta(minutes=1), recording_id="garbled", audio_format="wav"))
    other = Call(audio=b"not audio either", tenant="other", agent_id="a1", caller_number="+33612345678",
                 started_at=now - timedelta(minutes=1), recording_id="garbled-2", audio_format="wav")
    # No ingest key for a tenant callvault does not know: a plain message, as a producer of one's own sends.
    pipeline.push_raw((b"garbled-2", Producer(pipeline.kafka, pipeline.storage).message_for(other).to_bytes()))
    pipeline.wait_for(lambda e: e.get("type") == "dead-letter", count=2)
    monkeypatch.setattr("access.api.views.dlq.get_kafka_settings", lambda: pipeline.kafka)
    world = build_world(pg_engine, store, keys, scratch_bucket, storage_settings)
    with world.client:
        mine = world.get("/dlq", "it-1").json()
        assert mine["total"] == 1 and [g["tenant"] for g in mine["groups"]] == ["acme"]
        assert "612345678" not in json.dumps(mine)
        assert world.get("/dlq", "control-group").json()["total"] == 2
        assert world.get("/dlq", "consultant-1").status_code == 403
        assert world.get("/console/api/me", "it-1").json()["pages"]["dlq"] is True
        assert world.get("/console/api/me", "manager-1").json()["pages"]["dlq"] is False


def test_a_tombstone_and_a_deeply_nested_document_are_dead_lettered_and_listed(pipeline) -> None:
    """What a third-party client can send: a record with no value (a tombstone) and JSON nested
    past the parser's depth. Each is dead-lettered (the partition goes on: a good call behind them on
    the same key, so the same partition, is stored) and `dlq list` counts them, no traceback."""
    pipeline.push_raw((b"same-key", None), (b"same-key", b"[" * 100_000 + b"]" * 100_000))
    pipeline.push(Call(audio=sine_wav(1.0), tenant="acme", agent_id="a1", caller_number="+33612345678",
                       started_at=datetime.now(timezone.utc) - timedelta(minutes=1), recording_id="same-key"))
    letters = pipeline.wait_for(lambda e: e.get("type") == "dead-letter", count=2)
    assert {e["reason"] for e in letters} == {"invalid_message"}
    pipeline.wait_for(lambda e: e.get("type") == "stored" and e.get("external_id") == "same-key", count=1)
    listed = _cli(pipeline, "dlq", "list", "--all")
    assert listed.returncode == 0 and "invalid_message" in listed.stdout, listed.stdout + listed.stderr
    assert "Traceback" not in listed.stderr
