"""End to end through the real Kafka, a real `callvault worker`, MinIO, PostgreSQL and ffmpeg."""

from __future__ import annotations

import io
import json
import time
import urllib.request
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families
from pydub import AudioSegment

from access.subjects import Actor, erase
from ingest.producer import Call
from ingest.service import recording_uuid
from lifecycle.tiers import add_months
from storage.catalog import tables as t
from storage.copies import read_copy
from storage.keys import KeyRing
from storage.ledger import ErasureLedger
from testbed.audio import encode, sine_wav
from tests.bad_input_corpus import CORPUS, LIMITS, NUMBER_FORMS, World, good, leaked

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
        keys = KeyRing.from_settings(pipeline.storage)
        assert keys.open_number(conn, small_row._mapping) == "+33612345678"
        assert keys.open_number(conn, large_row._mapping) == "+33698765432"
        assert b"612345678" not in small_row.caller_number_sealed  # sealed, never in clear
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


def test_passthrough_stores_the_telephony_codec_with_spans_silenced(pipeline):
    pipeline.stop_worker()
    pipeline.env["CALLVAULT_INGEST_STORAGE_FORMAT"] = "passthrough"
    pipeline.start_worker()
    mulaw = encode(sine_wav(4.0, freqs=(440.0,)), "mulaw")
    pipeline.push(call(mulaw, recording_id="tel-mulaw", redactions=((1000, 2500),)))
    pipeline.wait_for(stored, count=1)
    with pipeline.engine.connect() as conn:
        row = conn.execute(sa.select(t.recordings)).one()
        copy = conn.execute(sa.select(t.copies)).mappings().one()
        audio = read_copy(conn, pipeline.store, KeyRing.from_settings(pipeline.storage), copy["id"])
    assert row.audio_format == "wav" and abs(row.duration_ms - 4000) < 5
    assert audio[:4] == b"RIFF" and audio[20:22] == (7).to_bytes(2, "little")  # still µ-law, not transcoded
    data = audio.index(b"data") + 8
    assert audio[data + 1000 * 8:data + 2500 * 8] == b"\xff" * 1500 * 8  # the span: µ-law silence
    assert audio[data + 3000 * 8:data + 3100 * 8] == mulaw[-(1000 * 8):][:800]  # the rest: the sender's bytes


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


def test_an_erased_caller_stays_erased_whatever_arrives_late(pipeline):
    """Through the real worker: a stored call, its caller erased, then the same message delivered
    again and another call of theirs that started before the erasure (a claim check, whose landing
    object must go too): both answered ``erased-on-arrival``, nothing stored; a call started since is stored."""
    audio = sine_wav(1.0)
    pipeline.push(call(audio, recording_id="tel-first"))
    pipeline.wait_for(stored, count=1)
    keys = KeyRing.from_settings(pipeline.storage)
    with pipeline.engine.begin() as conn:
        report = erase(conn, pipeline.store, keys, ErasureLedger.from_settings(pipeline.store, pipeline.storage),
                       tenant="acme", numbers=["06 12 34 56 78"], actor=Actor("ic-1"),
                       now=datetime.now(timezone.utc))
    assert report.erased_recordings == [str(recording_uuid("acme", "tel-first"))]
    pipeline.push(call(audio, recording_id="tel-first"),
                  call(encode(sine_wav(20.0), "flac"), recording_id="tel-on-its-way", started_at=NOW - timedelta(minutes=2)),
                  call(sine_wav(1.0), recording_id="tel-since", started_at=datetime.now(timezone.utc)))
    events = pipeline.wait_for(lambda e: e.get("type") in {"erased-on-arrival", "stored"}, count=4)
    assert Counter((e["external_id"], e["type"]) for e in events) == Counter({
        ("tel-first", "stored"): 1, ("tel-first", "erased-on-arrival"): 1, ("tel-on-its-way", "erased-on-arrival"): 1,
        ("tel-since", "stored"): 1})
    with pipeline.engine.connect() as conn:
        assert conn.execute(sa.select(t.recordings.c.external_id)).scalars().all() == ["tel-since"]
    assert list(pipeline.store.list(pipeline.storage.landing_bucket)) == []


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


def _metrics(port: int) -> dict[tuple[str, str], float]:
    """The worker's Prometheus samples as {(name, first label value or ""): value}."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {(sample.name, next(iter(sample.labels.values()), "")): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_the_bad_input_corpus_is_dead_lettered_with_reasons_and_good_calls_keep_flowing(pipeline):
    """Every kind of bad input in tests/bad_input_corpus.py, with a good call every 16 of them."""
    port = _free_port()
    pipeline.stop_worker()
    pipeline.env.update({"CALLVAULT_INGEST_METRICS_PORT": str(port),
                         **{f"CALLVAULT_INGEST_{name.upper()}": str(value) for name, value in LIMITS.items()}})
    pipeline.start_worker()
    landing = pipeline.storage.landing_bucket
    world = World(now=NOW, landing_bucket=landing, put=lambda key, data: pipeline.store.put(landing, key, data))
    bad = {case.key: (case, case.build(world)) for case in CORPUS}
    bad_messages = [(key, blob) for key, (_, blob) in bad.items()]
    messages: list[tuple[bytes, bytes]] = []
    for n, i in enumerate(range(0, len(bad_messages), 16)):
        messages += [(f"good-{n}".encode(), good(world, f"good-{n}")), *bad_messages[i:i + 16]]
    messages.append((b"good-last", good(world, "good-last")))
    goods = sorted(key.decode() for key, _ in messages if key.startswith(b"good-"))

    pipeline.push_raw(*messages)
    out = pipeline.wait_for(lambda e: e.get("type") in ("stored", "dead-letter"), count=len(messages), timeout=240)

    assert sorted(e["external_id"] for e in out if e["type"] == "stored") == goods
    dead = [d for d in out if d["type"] == "dead-letter"]
    assert sorted(d["key"] for d in dead) == sorted(bad)  # each bad input dead-lettered exactly once
    wrong = {}
    for d in dead:
        case, blob = bad[d["key"]]
        # Kept whole, but only in quarantine: encrypted under the dead letter's own key.
        if (d["reason"], case.says in d["error"], leaked(d["error"], blob), d["original"] == blob,
                leaked(d["value"].decode(errors="replace"), blob)) != (case.reason, True, [], True, []):
            wrong[case.name] = {"expected": (str(case.reason), case.says), "got": (d["reason"], d["error"][:300]),
                                "leaked": leaked(d["error"], blob), "value kept": d["original"] == blob,
                                "readable in the topic": leaked(d["value"].decode(errors="replace"), blob)}
    assert wrong == {}
    assert pipeline.process.poll() is None  # the worker is still alive
    assert pipeline.count(t.recordings) == len(goods)
    log = pipeline.log_path.read_text(errors="replace")
    assert [form for form in NUMBER_FORMS if form in log] == []

    expected = {("callvault_ingest_rejected_total", code): float(n)
                for code, n in Counter(str(case.reason) for case in CORPUS).items()}
    expected |= {("callvault_ingest_outcomes_total", "stored"): float(len(goods)),
                 ("callvault_ingest_consumed_total", ""): float(len(messages)),
                 ("callvault_ingest_processing_seconds_count", ""): float(len(messages))}
    deadline = time.monotonic() + 10  # a counter moves just after its record is acknowledged
    seen = _metrics(port)
    while {key: seen.get(key) for key in expected} != expected and time.monotonic() < deadline:
        time.sleep(0.2)
        seen = _metrics(port)
    assert {key: seen.get(key) for key in expected} == expected
    assert sum(v for (name, _), v in seen.items() if name == "callvault_ingest_rejected_total") == len(CORPUS)


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
