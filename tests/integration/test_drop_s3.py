"""The S3 drop (issue 18), driven with the real AWS CLI against MinIO: MinIO's own Kafka
notification announces each upload, a real worker ingests it. A good call is stored and
playable (metadata as x-amz-meta-*, or a JSON sidecar for the number), bad metadata and an
incomplete upload are dead-lettered with their reason and seen through the status URL (with
curl), a replay is idempotent, and the dropped plaintext does not stay in the bucket.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer

from ingest.service import recording_uuid
from storage.catalog import tables as t
from storage.keys import KeyRing
from tests.audio_fixtures import sine_wav
from tests.support.front_doors import aws, aws_env, curl

pytestmark = pytest.mark.integration
STARTED = (datetime.now(timezone.utc) - timedelta(minutes=3)).replace(microsecond=0).isoformat()


@pytest.fixture
def drop(front_doors, minio, tmp_path):
    """``drop(path, key, **metadata)``: `aws s3 cp` into the landing bucket, as a PBX would."""
    env = aws_env(minio.url, minio.access_key, minio.secret_key, minio.region, tmp_path)
    bucket = front_doors.pipeline.storage.landing_bucket

    def upload(path, key: str, **metadata: str) -> None:
        meta = ",".join(f"{k.replace('_', '-')}={v}" for k, v in metadata.items())
        aws("s3", "cp", str(path), f"s3://{bucket}/{key}", *(["--metadata", meta] if meta else []), env=env)
    return upload


def landing_keys(doors) -> list[str]:
    return [o.key for o in doors.pipeline.store.list(doors.pipeline.storage.landing_bucket)]


def landing_empties(doors, timeout: float = 20.0) -> bool:
    """The worker deletes a refused drop just after its dead letter is acknowledged."""
    deadline = time.monotonic() + timeout
    while landing_keys(doors) and time.monotonic() < deadline:
        time.sleep(0.3)
    return landing_keys(doors) == []


def drop_events(bucket: str) -> list[bytes]:
    """What MinIO published about this bucket on the drop topic, as anyone reading it would see."""
    async def run() -> list[bytes]:
        consumer = AIOKafkaConsumer("callvault.landing.events", bootstrap_servers="127.0.0.1:19092",
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        try:
            out, idle = [], 0
            while idle < 3:
                batch = await consumer.getmany(timeout_ms=1000)
                idle = 0 if batch else idle + 1
                out += [r.value for records in batch.values() for r in records if bucket in (r.key or b"").decode()]
            return out
        finally:
            await consumer.stop()
    return asyncio.run(run())


def test_a_dropped_call_is_stored_playable_and_a_replay_is_idempotent(front_doors, drop, tmp_path):
    doors = front_doors
    wav = tmp_path / "call-1.wav"
    wav.write_bytes(sine_wav(6.0, freqs=(440.0,)))
    meta = dict(recording_id="drop-1", started_at=STARTED, agent_id="agent-7", redactions="1000-2500")
    drop(wav, "acme/2026/11/call-1.wav", **meta)
    stored = doors.wait_status("drop-1", "stored")
    assert stored["status"] == "stored"
    rid = recording_uuid("acme", "drop-1")
    ic = ["-H", f"Authorization: Bearer {doors.tokens['ic-acme']}"]
    detail = curl(*ic, f"{doors.api.url}/recordings/{rid}")
    assert detail.status == 200 and detail.json["redactions"] == [{"start_ms": 1000, "end_ms": 2500}]
    audio = curl(*ic, f"{doors.api.url}/copies/{detail.json['copies'][0]['id']}/audio")
    assert audio.status == 200 and audio.body[:4] == b"OggS"
    doors.pipeline.wait_for(lambda e: e.get("type") == "stored", count=1)
    assert landing_keys(doors) == []  # the dropped plaintext is gone once its sealed copy is sent

    # The number comes in a sidecar, uploaded first; it never travels in an event.
    sidecar = tmp_path / "call-2.wav.json"
    sidecar.write_text(json.dumps({"recording_id": "drop-2", "started_at": STARTED, "agent_id": "agent-7",
                                   "caller_number": "06 12 34 56 78", "direction": "outbound"}))
    drop(sidecar, "acme/2026/11/call-2.wav.json")
    drop(wav, "acme/2026/11/call-2.wav")
    doors.wait_status("drop-2", "stored")
    with doors.pipeline.engine.connect() as conn:
        row = conn.execute(sa.select(t.recordings).where(t.recordings.c.external_id == "drop-2")).mappings().one()
        assert KeyRing.from_settings(doors.pipeline.storage).open_number(conn, row) == "+33612345678"
        assert row["direction"] == "outbound"

    # A replay (the same upload again) is the same call; other audio under its id is refused.
    drop(wav, "acme/2026/11/call-1-again.wav", **meta)
    other = tmp_path / "other.wav"
    other.write_bytes(sine_wav(6.0, freqs=(660.0,)))
    drop(other, "acme/2026/11/call-1-other.wav", **meta)
    conflict = doors.pipeline.wait_for(lambda e: e.get("reason") == "recording_conflict", count=1)
    assert b"612345678" not in conflict[0]["value"]
    assert doors.status("drop-1").json["status"] == "stored"
    assert doors.pipeline.count(t.recordings) == 2
    assert landing_empties(doors)
    events = drop_events(doors.pipeline.storage.landing_bucket)
    assert len(events) >= 5 and not any(b"612345678" in e or b"12 34 56" in e for e in events)
    with doors.pipeline.engine.connect() as conn:
        doors_of = dict(conn.execute(sa.select(t.pushes.c.external_id, t.pushes.c.door)).all())
    assert doors_of == {"drop-1": "s3-drop", "drop-2": "s3-drop"}


def test_bad_metadata_and_incomplete_uploads_are_dead_lettered_and_told_by_the_status_url(front_doors, drop,
                                                                                        tmp_path):
    doors = front_doors
    wav = tmp_path / "call.wav"
    whole = sine_wav(6.0)
    wav.write_bytes(whole)
    # A number in x-amz-meta-* (it would ride in MinIO's event): refused.
    drop(wav, "acme/in/bad-1.wav", recording_id="drop-bad-1", started_at=STARTED, agent_id="a7",
         caller_number="0612345678")
    # An upload cut short: the WAV announces 6 s and holds 3.
    cut = tmp_path / "cut.wav"
    cut.write_bytes(whole[:len(whole) // 2])
    drop(cut, "acme/in/bad-2.wav", recording_id="drop-bad-2", started_at=STARTED, agent_id="a7")
    # No start time, and another tenant named than the key's prefix.
    drop(wav, "acme/in/bad-3.wav", recording_id="drop-bad-3", agent_id="a7")
    drop(wav, "acme/in/bad-4.wav", recording_id="drop-bad-4", started_at=STARTED, agent_id="a7", tenant="globex")
    # No metadata at all (and no sidecar).
    drop(wav, "acme/in/bad-5.wav")
    told = {rid: doors.wait_status(rid, "dead-lettered") for rid in ("drop-bad-1", "drop-bad-2", "drop-bad-3",
                                                                     "drop-bad-4")}
    assert {rid: s["reason"] for rid, s in told.items()} == {
        "drop-bad-1": "invalid_message", "drop-bad-2": "truncated_audio", "drop-bad-3": "invalid_message",
        "drop-bad-4": "tenant_mismatch"}
    letters = doors.pipeline.wait_for(lambda e: e.get("type") == "dead-letter", count=5)
    assert sorted(e["reason"] for e in letters) == sorted(["invalid_message", "truncated_audio", "invalid_message",
                                                           "tenant_mismatch", "invalid_message"])
    assert any("caller_number" in e["error"] and "sidecar" in e["error"] for e in letters)
    assert not any("0612345678" in e["error"] for e in letters)
    assert doors.pipeline.count(t.recordings) == 0
    assert landing_empties(doors)  # no plaintext left behind, refused or not
