"""End to end through the real Kafka, a real `callvault worker`, MinIO, PostgreSQL and ffmpeg."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from pydub import AudioSegment

from ingest.producer import Call
from lifecycle.tiers import add_months
from ingest.schema import build_message
from ingest.service import recording_uuid
from storage.catalog import tables as t
from storage.copies import read_copy
from storage.keys import KeyRing
from tests.audio_fixtures import encode, sine_wav

pytestmark = pytest.mark.integration
NOW = datetime.now(timezone.utc).replace(microsecond=0)


def call(audio: bytes, **kw) -> Call:
    base = dict(tenant="acme", agent_id="agent-7", caller_number="06 12 34 56 78", team_id="team-a",
                started_at=NOW - timedelta(minutes=5))
    return Call(audio=audio, **{**base, **kw})


def stored(e: dict) -> bool:
    return e.get("type") == "stored"


def test_calls_are_stored_encrypted_redacted_and_catalogued(pipeline):
    small = sine_wav(4.0, freqs=(440.0,))                                # inline
    large = encode(sine_wav(30.0, channels=2, freqs=(440.0, 660.0)), "flac")  # > 64 KiB: claim check
    assert len(small) < pipeline.inline_max_bytes < len(large)
    ids = pipeline.push(call(small, recording_id="tel-small", redactions=((1000, 2500),)),
                        call(large, recording_id="tel-large", caller_number="+33 6 98 76 54 32"))
    events = pipeline.wait_for(stored, count=2)
    assert sorted(e["external_id"] for e in events) == sorted(ids) == ["tel-large", "tel-small"]
    assert all("612345678" not in json.dumps(e) for e in pipeline.seen)  # no number in events

    with pipeline.engine.connect() as conn:
        rows = {r.external_id: r for r in conn.execute(sa.select(t.recordings))}
        small_row, large_row = rows["tel-small"], rows["tel-large"]
        assert small_row.caller_number == "+33612345678" and large_row.caller_number == "+33698765432"
        assert abs(small_row.duration_ms - 4000) < 60 and abs(large_row.duration_ms - 30000) < 60
        assert (small_row.channels, large_row.channels) == (1, 2)
        assert small_row.redactions == [[1000, 2500]]
        copy = conn.execute(sa.select(t.copies).where(t.copies.c.recording_id == small_row.id)).mappings().one()
        assert copy["tier"] == "production"
        assert copy["expires_at"] == add_months(small_row.started_at, 3)  # production: 3 months from the call
        keys = KeyRing.from_settings(pipeline.storage)
        audio = read_copy(conn, pipeline.store, keys, copy["id"])
    assert audio[:4] == b"OggS"  # normalised to Ogg/Opus
    raw = pipeline.store.get(pipeline.storage.recordings_bucket, copy["object_key"])
    assert b"OggS" not in raw[:64]  # what MinIO holds is our ciphertext
    decoded = AudioSegment.from_file(io.BytesIO(audio))
    assert decoded[1100:2400].rms < 0.01 * decoded[100:900].rms  # payment span silenced
    assert decoded[2600:3900].rms > 0.5 * decoded[100:900].rms
    # The claim-check object was removed from the landing bucket after storing.
    assert list(pipeline.store.list(pipeline.storage.landing_bucket)) == []


def test_redelivery_is_a_duplicate_and_changed_audio_is_a_conflict(pipeline):
    audio = sine_wav(2.0)
    pipeline.push(call(audio, recording_id="tel-dup"))
    pipeline.wait_for(stored, count=1)
    pipeline.push(call(audio, recording_id="tel-dup"), call(sine_wav(2.0, freqs=(880.0,)), recording_id="tel-dup"))
    pipeline.wait_for(lambda e: e.get("type") == "duplicate", count=1)
    dead = pipeline.wait_for(lambda e: e.get("type") == "dead-letter", count=1)
    assert dead[0]["reason"] == "recording_conflict"
    assert pipeline.count(t.recordings) == 1 and pipeline.count(t.copies) == 1
    versions = pipeline.store.client.list_object_versions(Bucket=pipeline.storage.recordings_bucket)
    assert len(versions.get("Versions", [])) == 1  # the duplicate wrote nothing


def test_bad_messages_are_dead_lettered_with_reasons_and_good_calls_keep_flowing(pipeline):
    good = build_message(recording_id="tel-ok", tenant="acme", started_at=NOW, caller_number="0612345678",
                         agent_id="a1", audio=sine_wav(1.0))
    as_dict = json.loads(good.to_bytes())
    bad = {
        "not json": b"\x00\x01garbage",
        "missing field": json.dumps({k: v for k, v in as_dict.items() if k != "agent_id"}).encode(),
        "naive time": json.dumps({**as_dict, "recording_id": "x1", "started_at": "2026-11-23T10:00:00"}).encode(),
        "bad number": json.dumps({**as_dict, "recording_id": "x2", "caller_number": "12"}).encode(),
        "unknown tenant": json.dumps({**as_dict, "recording_id": "x3", "tenant": "nobody"}).encode(),
        "not audio": json.dumps({**as_dict, "recording_id": "x4",
                                 "audio": {"inline": "aGVsbG8gd29ybGQgdGhpcyBpcyBub3QgYXVkaW8="}}).encode(),
        "schema v2": json.dumps({**as_dict, "recording_id": "x5", "schema": "callvault.recording/v2"}).encode(),
    }
    pipeline.push_raw(*[(b"bad", value) for value in bad.values()], (b"tel-ok", good.to_bytes()))
    pipeline.wait_for(stored, count=1)
    dead = pipeline.wait_for(lambda e: e.get("type") == "dead-letter", count=len(bad))
    reasons = sorted(d["reason"] for d in dead)
    assert reasons == sorted(["invalid_message", "invalid_message", "invalid_message", "invalid_number",
                              "unknown_tenant", "undecodable_audio", "unsupported_schema"])
    assert {d["value"] for d in dead} == set(bad.values())  # kept whole, for replay
    assert all(d["error"] for d in dead)
    assert "0612345678" not in pipeline.worker_log() and "+33612345678" not in pipeline.worker_log()


def test_an_objecting_number_is_never_stored(pipeline):
    keys = KeyRing.from_settings(pipeline.storage)
    with pipeline.engine.begin() as conn:
        conn.execute(t.suppressions.insert().values(
            tenant_id="acme", number_hash=keys.number_hash("acme", "+33611111111"),
            created_at=NOW, created_by="test"))
    big = encode(sine_wav(20.0), "flac")  # claim check: the landing object must go too
    pipeline.push(call(big, recording_id="tel-objector", caller_number="06.11.11.11.11"),
                  call(sine_wav(1.0), recording_id="tel-other", caller_number="0622222222"))
    events = pipeline.wait_for(lambda e: e.get("type") in {"suppressed", "stored"}, count=2)
    assert {e["external_id"]: e["type"] for e in events} == {"tel-objector": "suppressed", "tel-other": "stored"}
    with pipeline.engine.connect() as conn:
        assert conn.execute(sa.select(t.recordings.c.external_id)).scalars().all() == ["tel-other"]
    assert list(pipeline.store.list(pipeline.storage.landing_bucket)) == []
    objects = [o.key for o in pipeline.store.list(pipeline.storage.recordings_bucket)]
    assert objects == [f"acme/{recording_uuid('acme', 'tel-other')}/production.cve"]


def test_a_call_already_past_its_retention_is_not_kept(pipeline):
    pipeline.push(call(sine_wav(1.0), recording_id="tel-old", started_at=NOW - timedelta(days=200)))
    event = pipeline.wait_for(lambda e: e.get("type") == "expired-on-arrival", count=1)[0]
    assert event["external_id"] == "tel-old"
    assert pipeline.count(t.recordings) == 0


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_every_kind_of_bad_input_is_dead_lettered_and_counted(pipeline):
    import hashlib
    import urllib.request

    from ingest.schema import AudioRef
    from tests.audio_fixtures import pcm_to_wav

    port = _free_port()
    pipeline.stop_worker()
    pipeline.env.update({"CALLVAULT_INGEST_METRICS_PORT": str(port), "CALLVAULT_INGEST_MAX_DURATION_SECONDS": "30"})
    pipeline.start_worker()

    def msg(rid: str, audio, **kw) -> bytes:
        base = dict(recording_id=rid, tenant="acme", started_at=NOW, caller_number="0612345678", agent_id="a1",
                    audio=audio, audio_format="wav")
        return build_message(**{**base, **kw}).to_bytes()

    wav = sine_wav(2.0)
    landing = pipeline.storage.landing_bucket
    pipeline.store.put(landing, "acme/changed", b"other bytes")
    cases = {
        "truncated": (msg("b1", wav[: len(wav) // 3]), "truncated_audio"),
        "empty wav": (msg("b2", pcm_to_wav(b"", 8000, 1)), "empty_audio"),
        "too long": (msg("b3", sine_wav(31.0)), "audio_too_large"),
        "span outside": (msg("b4", wav, redactions=[(5000, 6000)]), "invalid_redaction"),
        "far future": (msg("b5", wav, started_at=NOW + timedelta(days=2)), "invalid_message"),
        "missing claim": (msg("b6", AudioRef(bucket=landing, key="acme/nothing", size=10, sha256="0" * 64)),
                          "claim_check_failed"),
        "foreign bucket": (msg("b7", AudioRef(bucket="some-us-bucket", key="k", size=10, sha256="0" * 64)),
                           "claim_check_failed"),
        "altered claim": (msg("b8", AudioRef(bucket=landing, key="acme/changed", size=11,
                                             sha256=hashlib.sha256(b"expected").hexdigest())),
                          "claim_check_failed"),
    }
    pipeline.push_raw(*[(k.encode(), v) for k, (v, _) in cases.items()],
                      (b"ok", msg("good-after-bad", wav)))
    pipeline.wait_for(stored, count=1)
    dead = pipeline.wait_for(lambda e: e.get("type") == "dead-letter", count=len(cases))
    assert {d["key"].decode(): d["reason"] for d in dead} == {k: code for k, (_, code) in cases.items()}
    assert pipeline.count(t.recordings) == 1
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'callvault_ingest_rejected_total{code="claim_check_failed"} 3.0' in metrics
    assert 'callvault_ingest_outcomes_total{outcome="stored"} 1.0' in metrics
    assert "callvault_ingest_consumed_total 9.0" in metrics
    assert "callvault_ingest_processing_seconds_count 9.0" in metrics


def test_the_worker_sweeps_expired_copies_on_its_interval(pipeline):
    pipeline.stop_worker()
    pipeline.env["CALLVAULT_INGEST_SWEEP_INTERVAL_SECONDS"] = "1"
    pipeline.start_worker()
    pipeline.push(call(sine_wav(1.0), recording_id="tel-sweep"))
    event = pipeline.wait_for(stored, count=1)[0]
    with pipeline.engine.begin() as conn:  # as if three months had passed
        conn.execute(t.copies.update().values(expires_at=datetime.now(timezone.utc) - timedelta(seconds=1)))
    expired = pipeline.wait_for(lambda e: e.get("type") == "expired", count=1)[0]
    assert expired["copy_id"] == event["copy_id"] and expired["tier"] == "production"
    assert pipeline.count(t.recordings) == 0 and pipeline.count(t.copies) == 0
    assert list(pipeline.store.list(pipeline.storage.recordings_bucket)) == []
