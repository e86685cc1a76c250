"""Nothing readable in transit (issue 15), on the real broker, MinIO, PostgreSQL and ffmpeg.

Whatever crosses Kafka and the landing bucket is read back with a plain consumer and a plain S3
client, as anyone who reaches them would: neither the caller's number (in any of its written
forms) nor an audio frame ffprobe can decode is found in a record of the recordings or the
dead-letter topic, in any base64 string inside one, or in a landing object. An erasure of a
number purges its quarantined dead letters. In process: a sealed message cannot be moved to
another tenant, and a claim check can neither read nor delete another tenant's object or an
object it does not describe.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import os
import re
import subprocess
import uuid
from datetime import datetime, timedelta, timezone
from typing import Iterator

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, TopicPartition

from access.subjects import Actor, erase
from ingest import sealing
from ingest.exceptions import ClaimCheckError, SealError
from ingest.producer import Call, Producer
from ingest.schema import AudioRef, build_message
from ingest.service import IngestDeps, Outcome, ingest
from ingest.settings import IngestSettings
from storage.admin import init_buckets
from storage.catalog import tables as t
from storage.catalog.db import make_engine
from storage.keys import KeyRing
from storage.ledger import ErasureLedger
from storage.objectstore import ObjectStore
from testbed.audio import encode, sine_wav

pytestmark = pytest.mark.integration
NOW = datetime.now(timezone.utc).replace(microsecond=0)
NUMBER, OTHER = "+33612345678", "+33698765432"


def forms(e164: str) -> list[str]:
    """How a French number may be written: E.164, national, bare, grouped, dotted."""
    national = "0" + e164[3:]
    pairs = [national[i:i + 2] for i in range(0, 10, 2)]
    return [e164, e164[1:], national, national[1:], " ".join(pairs), ".".join(pairs), "-".join(pairs)]


SECRETS = forms(NUMBER) + forms(OTHER)
# Four bytes or more: a 3-byte magic (ID3) turns up by chance in a megabyte of ciphertext.
AUDIO_MAGIC = (b"WAVEfmt", b"OggS", b"fLaC", b"OpusHead")


def ffprobe_decodes(blob: bytes) -> bool:
    """Whether ffmpeg finds an audio stream it can decode a frame of in these bytes.

    Only an audio stream counts (``-map 0:a:0``): ffmpeg's probe takes about one random
    700 kB blob in 300 (ciphertext, say) for an H.263 *video* stream, which decodes nothing
    of a call; no random blob of 600 tried was taken for audio."""
    if len(blob) < 16:
        return False
    done = subprocess.run(["ffmpeg", "-v", "error", "-i", "pipe:0", "-map", "0:a:0", "-frames:a", "1", "-f", "null",
                           "-"], input=blob, capture_output=True, timeout=60)
    return done.returncode == 0


def base64_strings(blob: bytes) -> Iterator[bytes]:
    """Every long base64 string in a record (a JSON field value), decoded."""
    for match in re.finditer(rb"[A-Za-z0-9+/]{64,}={0,2}", blob):
        try:
            yield base64.b64decode(match.group(0), validate=True)
        except (binascii.Error, ValueError):
            continue


def readable(blob: bytes) -> list[str]:
    """What of a number or of audio can be read in these bytes (empty: nothing)."""
    found = []
    for part in (blob, *base64_strings(blob)):
        text = part.decode("latin-1")
        found += [f"number {s!r}" for s in SECRETS if s in text]
        found += [f"audio magic {m!r}" for m in AUDIO_MAGIC if m in part]
        if ffprobe_decodes(part):
            found.append("a decodable audio frame")
    return found


async def _records(bootstrap: str, topics: list[str]) -> list:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                max_partition_fetch_bytes=32 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for topic in topics for p in (consumer.partitions_for_topic(topic) or
                                                                      await _partitions(consumer, topic))]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, 0)
        out = []
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                out += records
        return out
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()  # noqa: SLF001 - a topic created a moment ago
    return consumer.partitions_for_topic(topic) or set()


def test_nothing_in_the_topics_or_the_landing_bucket_reveals_a_number_or_audio(pipeline) -> None:
    pipeline.stop_worker()  # the landing objects are read before the worker takes them
    started = datetime.now(timezone.utc) - timedelta(minutes=5)
    tone = sine_wav(3.0, 8000, 1, (440,))
    calls = [
        Call(audio=tone, tenant="acme", agent_id="a1", caller_number="06 12 34 56 78", started_at=started,
             recording_id="inline-wav", redactions=((500, 900),)),
        Call(audio=encode(sine_wav(2.0), "opus"), tenant="acme", agent_id="a1", caller_number=OTHER,
             started_at=started, recording_id="inline-opus"),
        Call(audio=sine_wav(40.0), tenant="acme", agent_id="a1", caller_number=NUMBER, started_at=started,
             recording_id="claim-wav"),  # 640 kB: over the inline limit, by claim check
        Call(audio=b"RIFF but not audio at all" * 10, tenant="acme", agent_id="a1", caller_number=NUMBER,
             started_at=started, recording_id="refused", audio_format="wav"),  # dead-lettered
        Call(audio=sine_wav(50.0)[:-9000], tenant="acme", agent_id="a1", caller_number=OTHER, started_at=started,
             recording_id="refused-claim", audio_format="wav"),  # a cut claim-check call: refused
    ]
    # The probe sees what it must: the same call as a plain v1 message gives everything away.
    plain = Producer(pipeline.kafka, pipeline.storage, seal_keys=pipeline.seal_keys).message_for(calls[0])
    assert {"number '+33612345678'", "a decodable audio frame"} <= set(readable(plain.to_bytes()))
    pipeline.push(*calls)
    landing = [o.key for o in pipeline.store.list(pipeline.storage.landing_bucket)]
    assert len(landing) == 2 and all(k.startswith("acme/") for k in landing)
    for key in landing:
        assert readable(pipeline.store.get(pipeline.storage.landing_bucket, key)) == [], key

    pipeline.start_worker()
    out = pipeline.wait_for(lambda e: e.get("type") in ("stored", "dead-letter"), count=len(calls), timeout=120)
    assert sorted(e["reason"] for e in out if e["type"] == "dead-letter") == ["truncated_audio", "undecodable_audio"]
    assert all(e["original"] is not None for e in out if e["type"] == "dead-letter")  # kept, in quarantine

    records = asyncio.run(_records(pipeline.kafka.bootstrap_servers,
                                   [pipeline.kafka.recordings_topic, pipeline.kafka.dlq_topic]))
    assert len(records) == len(calls) + 2  # every call, and the two dead letters
    leaks = {f"{r.topic}@{r.partition}:{r.offset}": found for r in records
             if (found := readable(r.value) + readable(b"".join(v for _, v in r.headers or ())))}
    assert leaks == {}
    # Stored or refused for good: its landing object is gone.
    assert list(pipeline.store.list(pipeline.storage.landing_bucket)) == []


def test_an_erasure_purges_the_callers_dead_letters_and_only_theirs(pipeline) -> None:
    started = datetime.now(timezone.utc) - timedelta(minutes=5)
    pipeline.push(*[Call(audio=b"not audio" * 20, tenant="acme", agent_id="a1", caller_number=number,
                         started_at=started, recording_id=f"bad-{i}", audio_format="wav")
                    for i, number in enumerate([NUMBER, "06 12 34 56 78", OTHER])])
    letters = pipeline.wait_for(lambda e: e.get("type") == "dead-letter", count=3)
    assert all(e["original"] is not None for e in letters)
    storage = pipeline.storage
    with pipeline.engine.begin() as conn:
        erase(conn, ObjectStore.from_settings(storage), KeyRing.from_settings(storage),
              ErasureLedger.from_settings(ObjectStore.from_settings(storage), storage), tenant="acme",
              numbers=[NUMBER], actor=Actor("ic-1", "internal-control"), now=datetime.now(timezone.utc))
    after = {e["key"]: e["original"] for e in pipeline.wait_for(lambda e: e.get("type") == "dead-letter", count=3)}
    assert after[b"bad-0"] is None and after[b"bad-1"] is None  # both forms of the erased number
    assert after[b"bad-2"] is not None and b'"bad-2"' in after[b"bad-2"]


# --- in process ------------------------------------------------------------------------------

@pytest.fixture
def deps(storage_settings, pg_schema_url) -> Iterator[IngestDeps]:
    init_buckets(storage_settings, say=lambda _m: None)
    engine = make_engine(pg_schema_url, echo=False)
    with engine.begin() as conn:
        for tenant in ("acme", "globex"):
            conn.execute(t.tenants.insert().values(id=tenant, name=tenant.title(), created_at=NOW))
    yield IngestDeps(engine=engine, store=ObjectStore.from_settings(storage_settings), keys=KeyRing(os.urandom(32)),
                     storage=storage_settings, settings=IngestSettings(), clock=lambda: NOW)
    engine.dispose()


def _message(tenant: str, recording_id: str, audio) -> bytes:
    return build_message(recording_id=recording_id, tenant=tenant, started_at=NOW - timedelta(minutes=5),
                         caller_number=NUMBER, agent_id="a1", audio=audio, audio_format="wav").to_bytes()


def test_a_sealed_message_cannot_be_moved_to_another_tenant(deps: IngestDeps) -> None:
    with deps.engine.begin() as conn:
        acme, globex = (deps.ingest_keys.current(conn, tn, now=NOW) for tn in ("acme", "globex"))
    good = sealing.seal(_message("acme", "ok", sine_wav(1.0)), acme)
    assert ingest(good, deps).outcome is Outcome.STORED

    relabelled = json.loads(sealing.seal(_message("acme", "moved", sine_wav(1.0)), acme))
    relabelled["tenant"] = "globex"  # the envelope's tenant is bound into the HPKE info
    with pytest.raises(SealError, match="not a key of tenant globex"):
        ingest(json.dumps(relabelled).encode(), deps)
    relabelled["key_id"] = str(globex.id)  # and the key to the ciphertext
    with pytest.raises(SealError, match="does not open"):
        ingest(json.dumps(relabelled).encode(), deps)
    # Sealed correctly to acme's key, but naming globex inside.
    with pytest.raises(SealError, match="sealed for tenant 'acme' names tenant 'globex'"):
        ingest(sealing.seal(_message("globex", "smuggled", sine_wav(1.0)), acme), deps)
    with deps.engine.connect() as conn:
        assert conn.execute(sa.select(t.recordings.c.tenant_id, t.recordings.c.external_id)).all() == [("acme", "ok")]


def test_a_message_sealed_to_a_destroyed_ingest_key_is_unreadable(deps: IngestDeps) -> None:
    with deps.engine.begin() as conn:
        key = deps.ingest_keys.current(conn, "acme", now=NOW)
    sealed = sealing.seal(_message("acme", "late", sine_wav(1.0)), key)
    with deps.engine.begin() as conn:
        assert deps.ingest_keys.destroy_expired(conn, now=NOW + timedelta(days=30)) == 1
        assert deps.ingest_keys.current(conn, "acme", now=NOW + timedelta(days=30)).id != key.id
    with pytest.raises(SealError, match="destroyed"):
        ingest(sealed, deps)


def test_a_claim_check_touches_only_the_object_it_describes_in_its_own_tenant(deps: IngestDeps) -> None:
    bucket, audio = deps.storage.landing_bucket, sine_wav(1.0)
    deps.store.put(bucket, "globex/theirs", audio)
    ref = AudioRef.model_validate({"bucket": bucket, "key": "globex/theirs", "size": len(audio),
                                   "sha256": hashlib.sha256(audio).hexdigest()})
    with pytest.raises(ClaimCheckError, match="outside tenant 'acme'"):
        ingest(_message("acme", "foreign", ref), deps)
    assert deps.store.get(bucket, "globex/theirs") == audio  # neither read nor deleted

    # A duplicate naming an object it does not describe: the call is recognised, the object stays.
    deps.store.put(bucket, "acme/mine", audio)
    mine = AudioRef.model_validate({**ref.model_dump(), "key": "acme/mine"})
    assert ingest(_message("acme", "dup", mine), deps).outcome is Outcome.STORED
    assert deps.store.head(bucket, "acme/mine") is None  # stored: its own object is dropped
    deps.store.put(bucket, "acme/other-call", sine_wav(2.0))
    liar = AudioRef.model_validate({**ref.model_dump(), "key": "acme/other-call"})
    assert ingest(_message("acme", "dup", liar), deps).outcome is Outcome.DUPLICATE
    assert deps.store.get(bucket, "acme/other-call") == sine_wav(2.0)


def test_callvaults_producer_encrypts_landing_objects_and_seals_messages(deps: IngestDeps) -> None:
    producer = Producer(deps.kafka, deps.storage, inline_max_bytes=1024, store=deps.store,
                        seal_keys=lambda tenant: _current(deps, tenant))
    msg = producer.message_for(Call(audio=sine_wav(5.0), tenant="acme", agent_id="a1", caller_number=NUMBER,
                                    started_at=NOW - timedelta(minutes=5), recording_id=f"cv-{uuid.uuid4()}"))
    assert msg.audio.ref is not None and msg.audio.ref.content_key is not None
    assert readable(deps.store.get(deps.storage.landing_bucket, msg.audio.ref.key)) == []
    wire = producer.sealed(msg)
    assert readable(wire) == []
    assert ingest(wire, deps).outcome is Outcome.STORED
    assert deps.store.head(deps.storage.landing_bucket, msg.audio.ref.key) is None


def _current(deps: IngestDeps, tenant: str):
    with deps.engine.begin() as conn:
        return deps.ingest_keys.current(conn, tenant, now=datetime.now(timezone.utc))


def test_every_topic_has_its_retention_set_not_the_brokers_default(pipeline) -> None:
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    kafka = pipeline.kafka
    pipeline.push(Call(audio=sine_wav(1.0), tenant="acme", agent_id="a1", caller_number=NUMBER,
                       started_at=datetime.now(timezone.utc) - timedelta(minutes=1), recording_id="r"))
    pipeline.wait_for(lambda e: e.get("type") == "stored", count=1)  # the worker is up: topics are set

    async def retention() -> dict[str, str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
        await admin.start()
        try:
            names = [kafka.recordings_topic, kafka.dlq_topic, kafka.events_topic]
            described = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
        finally:
            await admin.close()
        out = {}
        for response in described:
            for resource in response.resources:
                out[resource[3]] = {c[0]: c[1] for c in resource[4]}["retention.ms"]
        return out

    hour = 3600 * 1000
    assert asyncio.run(retention()) == {kafka.recordings_topic: str(72 * hour), kafka.dlq_topic: str(7 * 24 * hour),
                                        kafka.events_topic: str(7 * 24 * hour)}


def test_a_producer_of_ones_own_seals_with_the_documented_hpke_parameters(deps: IngestDeps) -> None:
    """What `callvault keys ingest` documents, built by hand with a plain HPKE library."""
    import struct

    from cryptography.hazmat.primitives import hpke
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

    with deps.engine.begin() as conn:
        key = deps.ingest_keys.current(conn, "acme", now=NOW).to_json()
    info = b"".join(struct.pack(">I", len(p)) + p for p in
                    (b"callvault.sealed/v1", key["tenant"].encode(), key["key_id"].encode()))
    suite = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
    sealed = suite.encrypt(_message("acme", "own-producer", sine_wav(1.0)),
                           X25519PublicKey.from_public_bytes(base64.b64decode(key["public_key"])), info=info)
    envelope = {"schema": "callvault.sealed/v1", "tenant": "acme", "key_id": key["key_id"],
                "sealed": base64.b64encode(sealed).decode()}
    assert ingest(json.dumps(envelope).encode(), deps).outcome is Outcome.STORED


def test_a_claim_check_call_sent_again_is_a_duplicate_though_encrypted_anew(deps: IngestDeps) -> None:
    producer = Producer(deps.kafka, deps.storage, inline_max_bytes=1024, store=deps.store,
                        seal_keys=lambda tenant: _current(deps, tenant))
    call = Call(audio=sine_wav(5.0), tenant="acme", agent_id="a1", caller_number=NUMBER,
                started_at=NOW - timedelta(minutes=5), recording_id="sent-twice")
    first, again = producer.message_for(call), producer.message_for(call)  # a producer retrying
    assert first.audio.ref.sha256 != again.audio.ref.sha256  # a new content key, a new ciphertext
    assert ingest(producer.sealed(first), deps).outcome is Outcome.STORED
    assert ingest(producer.sealed(again), deps).outcome is Outcome.DUPLICATE
    assert deps.store.head(deps.storage.landing_bucket, again.audio.ref.key) is None

    lying = producer.message_for(Call(**{**call.__dict__, "recording_id": "lying"}))
    lying = lying.model_copy(update={"audio": lying.audio.model_copy(update={
        "ref": lying.audio.ref.model_copy(update={"plain_sha256": "0" * 64})})})
    with pytest.raises(ClaimCheckError, match="plain_sha256"):
        ingest(producer.sealed(lying), deps)


def test_a_restored_catalog_loses_an_erased_callers_dead_letters_again(deps: IngestDeps, ledger) -> None:
    """A caller whose only call was refused: no recording, no key; the erasure ledger's replay
    still purges the dead letter a catalog backup brings back."""
    from lifecycle.erasures import replay_ledger

    number_hash = deps.keys.number_hash("acme", NUMBER)
    with deps.engine.begin() as conn:
        letter = deps.quarantine.new(conn, reason="invalid_redaction", now=NOW, tenant="acme", number_hash=number_hash)
        backup = [dict(r) for r in conn.execute(sa.select(t.dead_letters)).mappings()]
        erase(conn, deps.store, deps.keys, ledger, tenant="acme", numbers=[NUMBER], actor=Actor("ic-1"), now=NOW)
        assert conn.execute(sa.select(sa.func.count()).select_from(t.dead_letters)).scalar() == 0
        conn.execute(t.dead_letters.insert(), backup)  # the restore
        assert deps.quarantine.key(conn, letter.id).key == letter.key
    replay_ledger(deps.engine, deps.store, deps.keys, ledger, now=NOW)
    with deps.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(t.dead_letters)).scalar() == 0
