"""The S3 drop (issue 18), driven with the real AWS CLI against MinIO: MinIO's own Kafka
notification announces each upload, a real worker ingests it. A good call is stored and
playable (metadata as x-amz-meta-*, or a JSON sidecar for the number), bad metadata and an
incomplete upload are dead-lettered with their reason and seen through the status URL (with
curl), a replay is idempotent, and the dropped plaintext does not stay in the bucket. AWS's
shapes (SQS, SNS's envelope, EventBridge; no metadata in them) on a drop topic of their own;
``look``'s other decodings of a key against real objects.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timedelta, timezone
from urllib.parse import quote, quote_plus

import anyio
import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from ingest.drop import Dropped, Skip, dropped, look
from ingest.producer import LANDING_METADATA
from ingest.service import recording_uuid
from storage.catalog import tables as t
from storage.keys import KeyRing
from testbed.audio import sine_wav
from testbed.pipeline import create_topics, drop_topics
from tests.integration.conftest import running_pipeline
from tests.support.front_doors import api_env, aws, aws_env, curl, front_doors_on
from tests.support.stack import unique

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

    # A key with a space and a plus: MinIO URL-encodes it in its event (as AWS does), the worker decodes it.
    drop(wav, "acme/2026/11/call 3+b.wav", recording_id="drop-3", started_at=STARTED, agent_id="agent-7")
    doors.wait_status("drop-3", "stored")

    # A replay (the same upload again) is the same call; other audio under its id is refused.
    drop(wav, "acme/2026/11/call-1-again.wav", **meta)
    other = tmp_path / "other.wav"
    other.write_bytes(sine_wav(6.0, freqs=(660.0,)))
    drop(other, "acme/2026/11/call-1-other.wav", **meta)
    conflict = doors.pipeline.wait_for(lambda e: e.get("reason") == "recording_conflict", count=1)
    assert b"612345678" not in conflict[0]["value"]
    assert doors.status("drop-1").json["status"] == "stored"
    assert doors.pipeline.count(t.recordings) == 3
    assert landing_empties(doors)
    events = drop_events(doors.pipeline.storage.landing_bucket)
    assert len(events) >= 6 and not any(b"612345678" in e or b"12 34 56" in e for e in events)
    keys = {r["s3"]["object"]["key"] for e in events for r in json.loads(e)["Records"]}
    assert "acme%2F2026%2F11%2Fcall+3%2Bb.wav" in keys, keys  # what MinIO sends: unquote_plus reads it
    with doors.pipeline.engine.connect() as conn:
        doors_of = dict(conn.execute(sa.select(t.pushes.c.external_id, t.pushes.c.door)).all())
    assert doors_of == {"drop-1": "s3-drop", "drop-2": "s3-drop", "drop-3": "s3-drop"}


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


# -- AWS S3's events (bridged SQS or EventBridge -> Kafka): no x-amz-meta-* in them ------------------
# MinIO is the object store (the objects are real, uploaded with the AWS CLI); what AWS alone
# shows is the shape of its events, written here as AWS documents them, on a drop topic of
# this pipeline's own (no MinIO notification: the landing bucket announces nothing itself).


@pytest.fixture
def aws_doors(kafka_bootstrap, storage_settings, pg_schema_url, tmp_path):
    """The ``front_doors`` world, its landing bucket silent, its worker on a drop topic of its
    own (one partition: the events are taken in the order sent) fed by ``send``."""
    topic = unique("e2e-aws-drops")
    asyncio.run(create_topics(kafka_bootstrap, [topic], 1))
    try:
        with running_pipeline(kafka_bootstrap, storage_settings, pg_schema_url, tmp_path,
                              extra_env={**api_env(), "CALLVAULT_KAFKA_DROP_TOPIC": topic}) as pipe, \
                front_doors_on(pipe, tmp_path / "api.log") as doors:
            yield doors, lambda *events: send(kafka_bootstrap, topic, events)
    finally:
        asyncio.run(drop_topics(kafka_bootstrap, topic))


def send(bootstrap: str, topic: str, events) -> None:
    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            for event in events:
                await producer.send_and_wait(topic, json.dumps(event).encode())
        finally:
            await producer.stop()
    asyncio.run(run())


def sqs_body(bucket: str, key: str, event: str = "ObjectCreated:Put") -> dict:
    """An S3 event notification as AWS puts it in an SQS message's body: the key URL-encoded,
    the event name without ``s3:``, no ``userMetadata``."""
    return {"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "eu-west-3", "eventTime": STARTED,
        "eventName": event, "userIdentity": {"principalId": "AWS:AIDAEXAMPLEPBX"},
        "requestParameters": {"sourceIPAddress": "192.0.2.7"},
        "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810", "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG"},
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "callvault-drop",
               "bucket": {"name": bucket, "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
                          "arn": f"arn:aws:s3:::{bucket}"},
               "object": {"key": quote_plus(key), "size": 1024, "eTag": "d41d8cd98f00b204e9800998ecf8427e",
                          "sequencer": "0055AED6DCD90281E5"}}}]}


def eventbridge(bucket: str, key: str, detail_type: str = "Object Created") -> dict:
    """S3's event on EventBridge (a rule targeting SQS, or a Pipe to the topic): the key as is
    (as moto writes it; not form-encoded, unlike the notifications')."""
    return {"version": "0", "id": "17793124-05d4-b198-2fde-7ededc63b103", "detail-type": detail_type,
            "source": "aws.s3", "account": "111122223333", "time": STARTED, "region": "eu-west-3",
            "resources": [f"arn:aws:s3:::{bucket}"],
            "detail": {"version": "0", "bucket": {"name": bucket},
                       "object": {"key": key, "size": 1024, "etag": "b1946ac92492d2347c6235b4d2611184",
                                  "sequencer": "617f08299329d189"},
                       "request-id": "N4N7GDK58NMKJ12R", "requester": "111122223333",
                       "source-ip-address": "192.0.2.7", "reason": "PutObject"}}


def test_aws_s3_events_without_metadata_are_taken_with_the_objects_own(aws_doors, minio, tmp_path):
    doors, send_events = aws_doors
    bucket = doors.pipeline.storage.landing_bucket
    env = aws_env(minio.url, minio.access_key, minio.secret_key, minio.region, tmp_path)

    def upload(path, key: str, **metadata: str) -> None:
        meta = ",".join(f"{k.replace('_', '-')}={v}" for k, v in metadata.items())
        aws("s3", "cp", str(path), f"s3://{bucket}/{key}", "--metadata", meta, env=env)

    wav = tmp_path / "call.wav"
    wav.write_bytes(sine_wav(6.0, freqs=(440.0,)))
    spaced, bridged, numbered = "acme/2026/11/call 1+a.wav", "acme/2026/11/call 2+b.wav", "acme/2026/11/call-3.wav"
    upload(wav, spaced, recording_id="aws-1", started_at=STARTED, agent_id="agent-7", redactions="1000-2500")
    upload(wav, bridged, recording_id="aws-2", started_at=STARTED, agent_id="agent-8", direction="outbound")
    upload(wav, numbered, recording_id="aws-3", started_at=STARTED, agent_id="a7", caller_number="0612345678")
    # callvault's own sealed object in the landing bucket is announced too: not a drop.
    own = "acme/sealed-own.bin"
    doors.pipeline.store.put(bucket, own, b"sealed", metadata=LANDING_METADATA)
    send_events(
        {"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": STARTED, "Bucket": bucket,
         "RequestId": "5582815E1AEA5ADF", "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE"},
        sqs_body(bucket, spaced, "ObjectRemoved:Delete"),
        eventbridge(bucket, spaced, "Object Deleted"),
        sqs_body(bucket, own),
        {"Type": "Notification", "Message": "not an S3 event"},
        sqs_body(bucket, spaced),
        eventbridge(bucket, bridged),
        sqs_body(bucket, spaced),  # announced twice (a redelivery, or SQS and EventBridge both): taken once
        sqs_body(bucket, numbered))

    doors.wait_status("aws-1", "stored")
    doors.wait_status("aws-2", "stored")
    refused = doors.wait_status("aws-3", "dead-lettered")
    assert refused["reason"] == "invalid_message"  # the object's metadata, read by a HEAD: the same rules
    with doors.pipeline.engine.connect() as conn:
        rows = {r["external_id"]: r for r in conn.execute(sa.select(t.recordings)).mappings()}
        doors_of = dict(conn.execute(sa.select(t.pushes.c.external_id, t.pushes.c.door)).all())
        letters = conn.execute(sa.select(sa.func.count()).select_from(t.dead_letters)).scalar()
    assert set(rows) == {"aws-1", "aws-2"} and rows["aws-2"]["direction"] == "outbound"
    assert doors_of == {"aws-1": "s3-drop", "aws-2": "s3-drop"}
    assert letters == 2  # the test event and the removals were ignored, not dead-lettered
    refusals = doors.pipeline.wait_for(lambda e: e.get("type") == "dead-letter", count=2)
    assert sorted(e["reason"] for e in refusals) == ["invalid_message", "invalid_message"]
    assert any("not an S3 event" in e["error"] for e in refusals)
    assert not any("0612345678" in e["error"] for e in refusals)
    rid = recording_uuid("acme", "aws-1")
    detail = curl("-H", f"Authorization: Bearer {doors.tokens['ic-acme']}", f"{doors.api.url}/recordings/{rid}")
    assert detail.status == 200 and detail.json["redactions"] == [{"start_ms": 1000, "end_ms": 2500}]
    assert landing_keys_settle(doors, [own])  # the drops deleted (refused or not), callvault's own kept
    log = doors.pipeline.log_path.read_text(errors="replace")
    assert "ignored an s3:TestEvent" in log and "ignored ObjectRemoved:Delete event" in log
    assert "ignored EventBridge Object Deleted event" in log and "callvault's own sealed landing object" in log
    assert "already handled" in log and "0612345678" not in log


def landing_keys_settle(doors, expected: list[str], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while landing_keys(doors) != expected and time.monotonic() < deadline:
        time.sleep(0.3)
    return landing_keys(doors) == expected


def sns(event: dict) -> dict:
    """S3 -> SNS -> SQS without raw message delivery: the event is the envelope's JSON string."""
    return {"Type": "Notification", "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
            "TopicArn": "arn:aws:sns:eu-west-3:111122223333:callvault-drops", "Subject": "Amazon S3 Notification",
            "Message": json.dumps(event), "Timestamp": STARTED, "SignatureVersion": "1", "Signature": "EXAMPLEpH+Dc",
            "SigningCertURL": "https://sns.eu-west-3.amazonaws.com/SimpleNotificationService-f3ecfb7224c72.pem",
            "UnsubscribeURL": "https://sns.eu-west-3.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=arn"}


def test_sns_wrapped_and_otherwise_encoded_events_are_taken_a_redelivery_still_skipped(aws_doors, minio, tmp_path):
    """A key with a space, a plus and a percent: from SNS's envelope of S3's notification, and
    from an EventBridge event whose key is form-encoded (``+`` a space), not as the worker first
    decodes EventBridge's: ``look`` finds it under its other decoding. Sent again once the
    objects are gone: skipped, every decoding tried, none there."""
    doors, send_events = aws_doors
    bucket = doors.pipeline.storage.landing_bucket
    env = aws_env(minio.url, minio.access_key, minio.secret_key, minio.region, tmp_path)
    wav = tmp_path / "call.wav"
    wav.write_bytes(sine_wav(6.0, freqs=(440.0,)))
    wrapped, other_way = "acme/2026/11/call 1+a%b.wav", "acme/2026/11/call 2+b%c.wav"
    for key, rid in ((wrapped, "sns-1"), (other_way, "eb-2")):
        aws("s3", "cp", str(wav), f"s3://{bucket}/{key}", "--metadata",
            f"recording-id={rid},started-at={STARTED},agent-id=agent-7", env=env)
    form_encoded = eventbridge(bucket, quote_plus(other_way, safe="/"))
    assert dropped(json.dumps(form_encoded).encode(), bucket)[0].key != other_way  # the first decoding misses
    confirmation = {**sns({}), "Type": "SubscriptionConfirmation", "Message": "To confirm, visit the SubscribeURL",
                    "Token": "2336412f37fb687f5d51e6e2425c464de12884c0a7", "SubscribeURL": "https://sns.example/?Token=x"}
    send_events(confirmation, sns({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": bucket}),
                sns(sqs_body(bucket, wrapped)), form_encoded)
    doors.wait_status("sns-1", "stored")
    doors.wait_status("eb-2", "stored")
    assert landing_keys_settle(doors, [])
    send_events(sns(sqs_body(bucket, wrapped)), form_encoded, eventbridge(bucket, quote(other_way)))  # redelivered
    log_path = doors.pipeline.log_path
    deadline = time.monotonic() + 30
    while log_path.read_text(errors="replace").count("already handled") < 3 and time.monotonic() < deadline:
        time.sleep(0.3)
    log = log_path.read_text(errors="replace")
    assert log.count("already handled") == 3
    with doors.pipeline.engine.connect() as conn:
        assert set(conn.execute(sa.select(t.recordings.c.external_id)).scalars()) == {"sns-1", "eb-2"}
        assert conn.execute(sa.select(sa.func.count()).select_from(t.dead_letters)).scalar() == 0
    assert "ignored an SNS SubscriptionConfirmation" in log and "ignored an s3:TestEvent" in log
    assert log.count("found under its key form-decoded, not as first decoded") == 1  # EventBridge's, form-encoded
    assert "2336412f" not in log and "sns.example" not in log


# -- look(): the key's other decodings, against real objects ----------------------------------------

@pytest.fixture
def heads(store):
    """The HEADs the store's real client makes, by key."""
    made: list[str] = []
    store.client.meta.events.register("provide-client-params.s3.HeadObject", lambda params, **_: made.append(params["Key"]))
    return made


def test_look_tries_the_other_decodings_only_on_a_miss_each_once(store, scratch_bucket, heads):
    key = "acme/in/call 1+a%b.wav"
    store.put(scratch_bucket, key, b"RIFF", metadata={"recording-id": "r-head"})
    seen = looked_by(store)

    announced = Dropped(scratch_bucket, key, {"recording-id": "r-event"}, "s3:pbx", sent_key=quote_plus(key))
    assert seen(announced) == replace_size(announced, 4) and heads == [key]  # the common path: one HEAD

    heads.clear()
    store.put(scratch_bucket, "acme/in/100%25+1.wav", b"RIFF")  # a key that was never encoded
    raw = Dropped(scratch_bucket, "acme/in/100% 1.wav", None, "s3:pbx", sent_key="acme/in/100%25+1.wav")
    found = seen(raw)
    assert heads == ["acme/in/100% 1.wav", "acme/in/100%+1.wav", "acme/in/100%25+1.wav"]
    assert isinstance(found, Dropped) and found.key == "acme/in/100%25+1.wav" and found.size == 4

    heads.clear()
    eventbridge_form = Dropped(scratch_bucket, "acme/in/call+1+a%b.wav", None, "s3:eb",
                               sent_key=quote_plus(key, safe="/"))
    found = seen(eventbridge_form)
    assert heads == ["acme/in/call+1+a%b.wav", key]
    assert found == Dropped(scratch_bucket, key, {"recording-id": "r-head"}, "s3:eb", size=4)  # the HEAD's metadata
    assert found.tenant == "acme"

    heads.clear()
    store.delete_many(scratch_bucket, [key])
    assert seen(eventbridge_form) is Skip.GONE
    assert heads == ["acme/in/call+1+a%b.wav", key, quote_plus(key, safe="/")]  # each decoding once, none there


def test_look_never_takes_a_sidecar_an_object_outside_a_tenant_nor_callvaults_own(store, scratch_bucket, heads):
    seen = looked_by(store)
    store.put(scratch_bucket, "acme/a b.wav.json", b"{}")
    store.put(scratch_bucket, "acme%2Fa b.wav", b"RIFF")
    sent = "acme%2Fa+b.wav%2Ejson"  # decodings: the sidecar, "acme/a+b.wav.json"; as sent: under no tenant
    assert seen(Dropped(scratch_bucket, "acme/a b.wav", None, "s3:x", sent_key=sent)) is Skip.GONE
    assert heads == ["acme/a b.wav"]
    heads.clear()
    assert seen(Dropped(scratch_bucket, "acme/a b.wav", None, "s3:x", sent_key="acme%2Fa b.wav")) is Skip.GONE
    assert "acme%2Fa b.wav" not in heads  # there, but under no tenant's prefix: not asked for
    store.put(scratch_bucket, "acme/sealed+1", b"sealed", metadata=LANDING_METADATA)
    assert seen(Dropped(scratch_bucket, "acme/sealed 1", None, "s3:x", sent_key="acme/sealed+1")) is Skip.OURS
    store.put(scratch_bucket, "acme/mine+1", b"RIFF", metadata=LANDING_METADATA)
    # the event's metadata (MinIO's) was the announced object's: the one found is judged by its own
    own = Dropped(scratch_bucket, "acme/mine 1", {"recording-id": "r"}, "s3:x", sent_key="acme/mine+1")
    assert seen(own) is Skip.OURS


def looked_by(store):
    return lambda drop: anyio.run(look, drop, store)


def replace_size(drop: Dropped, size: int) -> Dropped:
    return Dropped(drop.bucket, drop.key, drop.metadata, drop.principal, size=size)


@pytest.mark.parametrize("sidecar, says", [(b"[" * 100_000 + b"]" * 100_000, "not JSON"), (b"{not json", "not JSON"),
                                           (b"[1]", "JSON object")])
def test_a_sidecar_that_is_no_json_object_is_invalid_metadata(store, scratch_bucket, sidecar, says):
    """Bad metadata is dead-lettered invalid_message, also a sidecar nested past the JSON parser's depth
    (a RecursionError was retried as a bug of ours, then dead-lettered internal_error)."""
    from ingest.drop import metadata_of
    from ingest.exceptions import InvalidMessage

    store.put(scratch_bucket, "acme/2026/x.wav.json", sidecar)
    with pytest.raises(InvalidMessage, match=says):
        metadata_of(Dropped(scratch_bucket, "acme/2026/x.wav", {}, "p"), store)
