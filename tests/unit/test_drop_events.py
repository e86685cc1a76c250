"""The drop topic's events, parsed (``ingest.drop.dropped``): MinIO's (metadata in the event),
AWS S3's through SQS (none; the worker reads them with a HEAD) and EventBridge's, bare or in
SNS's envelope, as moto writes them where AWS's own shape matters; a test event, a removal and
an SNS subscription's confirmation ignored; anything else refused with the stable
``invalid_message``. The key's decodings ``look`` tries (``candidate_keys``) hold the true key
whichever way it was encoded. The worker taking them: tests/integration/test_drop_s3.py.
"""

from __future__ import annotations

import json
import logging
import re
from urllib.parse import quote, quote_plus

import boto3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from moto import mock_aws

from ingest.drop import Dropped, candidate_keys, dropped, tenant_of
from ingest.exceptions import IngestErrorCode, InvalidMessage
from ingest.producer import LANDING_METADATA

LANDING = "callvault-landing"


def record(key: str, *, event: str = "s3:ObjectCreated:Put", bucket: str = LANDING,
           user_metadata: dict | None = None, principal: str = "pbx-acme") -> dict:
    obj = {"key": quote_plus(key), "size": 10, "eTag": "abc"}
    if user_metadata is not None:
        obj["userMetadata"] = user_metadata
    return {"eventName": event, "userIdentity": {"principalId": principal},
            "s3": {"bucket": {"name": bucket}, "object": obj}}


def eventbridge(key: str, detail_type: str = "Object Created", bucket: str = LANDING) -> dict:
    return {"version": "0", "detail-type": detail_type, "source": "aws.s3", "account": "111122223333",
            "detail": {"bucket": {"name": bucket}, "object": {"key": key, "size": 10}, "requester": "111122223333"}}


def sns(message, kind: str = "Notification", **extra) -> dict:
    """SNS's envelope as SQS gets it without raw message delivery: the message a JSON *string*."""
    return {"Type": kind, "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
            "TopicArn": "arn:aws:sns:eu-west-3:111122223333:callvault-drops", "Subject": "Amazon S3 Notification",
            "Message": message if isinstance(message, str) else json.dumps(message),
            "Timestamp": "2026-11-26T10:00:00.000Z", "SignatureVersion": "1", "Signature": "EXAMPLEpH+DcEwjAPg8O9mY8",
            "SigningCertURL": "https://sns.eu-west-3.amazonaws.com/SimpleNotificationService-f3ecfb7224c72.pem",
            "UnsubscribeURL": "https://sns.eu-west-3.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=arn", **extra}


def parse(doc) -> list[Dropped]:
    return dropped(json.dumps(doc).encode(), LANDING)


def test_minio_records_carry_the_metadata_aws_records_leave_it_to_a_head() -> None:
    minio = record("acme/in/a b+c.wav", user_metadata={"X-Amz-Meta-Recording-Id": "r1", "content-type": "audio/wav"})
    aws = record("acme/in/a b+c.wav", event="ObjectCreated:CompleteMultipartUpload")
    assert parse({"Records": [minio, aws]}) == [
        Dropped(LANDING, "acme/in/a b+c.wav", {"recording-id": "r1"}, "s3:pbx-acme"),
        Dropped(LANDING, "acme/in/a b+c.wav", None, "s3:pbx-acme")]
    assert parse(eventbridge("acme/in/a b+c.wav")) == [
        Dropped(LANDING, "acme/in/a b+c.wav", None, "s3:111122223333")]
    assert parse(eventbridge(quote("acme/in/a b+c.wav"))) == [
        Dropped(LANDING, "acme/in/a b+c.wav", None, "s3:111122223333")]


def test_sidecars_other_buckets_and_callvaults_own_objects_are_not_drops() -> None:
    own = {f"X-Amz-Meta-{k}": v for k, v in LANDING_METADATA.items()}
    assert parse({"Records": [record("acme/a.wav.json"), record("acme/a.wav", bucket="elsewhere"),
                              record("acme/sealed", user_metadata=own), record("acme/a.wav.json", user_metadata={})]}) == []
    assert parse(eventbridge("acme/a.wav", bucket="elsewhere")) == []


def test_a_test_event_and_what_is_no_creation_are_ignored_with_a_line_without_a_number(caplog) -> None:
    caplog.set_level(logging.INFO, "callvault.ingest")
    assert parse({"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2026-11-26T10:00:00Z",
                  "Bucket": LANDING, "RequestId": "5582815E1AEA5ADF", "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3e"}) == []
    assert parse({"Records": [record("acme/0612345678.wav", event="ObjectRemoved:Delete"),
                              record("acme/x.wav", event="s3:ObjectRemoved:DeleteMarkerCreated"),
                              record("acme/x.wav", event="s3:0612345678")]}) == []
    assert parse(eventbridge("acme/0612345678.wav", "Object Deleted")) == []
    assert parse({"Records": []}) == []
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 5 and not any(re.search(r"\d\d", line) for line in lines), lines
    assert sum("another kind of event" in line for line in lines) == 1  # s3:0612345678: its name is not told


@pytest.mark.parametrize("raw", [
    b"", b"\xff\xfe", b"null", b"[]", b"1", b'"Records"', b"{}", b'{"Records": "x"}', b'{"Records": {}}',
    b'{"Records": [1]}', b'{"Records": [{}]}', b'{"Records": [{"eventName": "s3:ObjectCreated:Put"}]}',
    b'{"Records": [{"eventName": 5}]}', b'{"Event": "s3:Other"}', b'{"source": "aws.s3", "detail-type": 3}',
    b'{"source": "aws.s3", "detail-type": "Object Created", "detail": []}',
    json.dumps({"Records": [record("acme/a.wav", user_metadata={"X-Amz-Meta-Recording-Id": 7})]}).encode(),
    json.dumps({"Records": [{**record("acme/a.wav"), "s3": {"bucket": {"name": LANDING},
                                                          "object": {"key": ["a"]}}}]}).encode(),
    b"[" * 100_000,
    # SNS's envelope: its message must be an S3 event as a JSON string, one envelope only
    json.dumps(sns("not an S3 event")).encode(), json.dumps(sns("{}")).encode(), json.dumps(sns("[]")).encode(),
    json.dumps(sns("null")).encode(), json.dumps(sns("[" * 100_000)).encode(),
    json.dumps({**sns("x"), "Message": {"Records": []}}).encode(),
    json.dumps({k: v for k, v in sns({"Records": []}).items() if k != "Message"}).encode(),
    json.dumps(sns({"Records": []}, kind="Other")).encode(), json.dumps(sns({"Records": []}, kind=["x"])).encode(),
    json.dumps(sns(sns({"Records": [record("acme/a.wav")]}))).encode(),
    json.dumps(sns(sns({"Records": []}, kind="SubscriptionConfirmation"))).encode(),
])
def test_what_is_no_s3_event_is_refused_with_its_stable_reason(raw: bytes) -> None:
    with pytest.raises(InvalidMessage) as refused:
        dropped(raw, LANDING)
    assert refused.value.code is IngestErrorCode.INVALID_MESSAGE


# -- SNS's envelope (S3 -> SNS -> SQS without raw message delivery) ----------------------------------

def test_an_sns_envelope_is_unwrapped_once_its_message_taken_as_the_s3_event_it_is(caplog) -> None:
    caplog.set_level(logging.INFO, "callvault.ingest")
    records = {"Records": [record("acme/in/a b+c%d.wav", event="ObjectCreated:Put"),
                           record("acme/x.wav", event="ObjectRemoved:Delete")]}
    [drop] = parse(sns(records))
    assert [drop] == parse(records) == [Dropped(LANDING, "acme/in/a b+c%d.wav", None, "s3:pbx-acme")]
    assert drop.sent_key == quote_plus("acme/in/a b+c%d.wav")  # the key as sent rides along, for look()
    assert parse(sns(eventbridge("acme/in/a b.wav"))) == parse(eventbridge("acme/in/a b.wav")) == [
        Dropped(LANDING, "acme/in/a b.wav", None, "s3:111122223333")]
    assert parse(sns(eventbridge("acme/a.wav", "Object Deleted"))) == []
    assert parse(sns({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": LANDING})) == []
    lines = [r.getMessage() for r in caplog.records]
    assert sum("ignored an s3:TestEvent" in line for line in lines) == 1
    assert sum("ignored ObjectRemoved:Delete event" in line for line in lines) == 2
    assert sum("ignored EventBridge Object Deleted event" in line for line in lines) == 1


@pytest.mark.parametrize("kind", ["SubscriptionConfirmation", "UnsubscribeConfirmation"])
def test_a_subscriptions_confirmation_is_ignored_with_a_line_naming_its_kind_alone(kind, caplog) -> None:
    caplog.set_level(logging.INFO, "callvault.ingest")
    token = "2336412f37fb687f5d51e6e2425c464de12884c0a73b6b4b1a2d2ab0ed2c0ca8b7ae2d2fcd13e7d7a2b4c1b4b3a9aa"
    url = f"https://sns.eu-west-3.amazonaws.com/?Action=ConfirmSubscription&TopicArn=arn&Token={token}"
    envelope = sns("You have chosen to subscribe to the topic. To confirm, visit the SubscribeURL.", kind=kind,
                   Token=token, SubscribeURL=url)
    assert parse(envelope) == []
    [line] = [r.getMessage() for r in caplog.records]
    assert kind in line
    leaked = [k for k, v in envelope.items() if k != "Type" and v in line]
    assert leaked == [] and token[:8] not in line and "http" not in line and "arn:" not in line, line
    assert not re.search(r"\d\d", line), line


# -- properties ---------------------------------------------------------------------------------------

TENANT = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,19}[a-z0-9])?", fullmatch=True)
KEY_REST = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=40).filter(
    lambda s: not s.endswith(".json"))
META = st.dictionaries(st.from_regex(r"[a-z][a-z0-9-]{0,15}", fullmatch=True), st.text(max_size=20), max_size=4)


@settings(max_examples=200, deadline=None)
@given(tenant=TENANT, rest=KEY_REST, meta=st.none() | META, shape=st.sampled_from(["minio", "aws", "eventbridge"]))
def test_any_valid_record_shape_round_trips_to_the_same_drop(tenant, rest, meta, shape) -> None:
    key = f"{tenant}/{rest}"
    if shape == "eventbridge":
        doc, expected_meta, who = eventbridge(quote(key)), None, "111122223333"
    else:
        user = None if shape == "aws" or meta is None else {f"X-Amz-Meta-{k}": v for k, v in meta.items()}
        event = "s3:ObjectCreated:Put" if shape == "minio" else "ObjectCreated:Post"
        doc, expected_meta, who = {"Records": [record(key, event=event, user_metadata=user)]}, user and meta, "pbx"
        doc["Records"][0]["userIdentity"]["principalId"] = who
        if user == {}:
            expected_meta = {}
    if expected_meta is not None and set(LANDING_METADATA.items()) <= set(expected_meta.items()):
        return
    [drop] = parse(doc)
    assert drop == Dropped(LANDING, key, expected_meta, f"s3:{who}")
    assert drop.tenant == tenant


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
                        st.sampled_from(["Records", "s3", "object", "bucket", "name", "key", "eventName",
                                         "userMetadata", "Event", "source", "detail-type", "detail", "x",
                                         "Type", "Message"]),
                        inner, max_size=5), max_leaves=30)


@settings(max_examples=300, deadline=None)
@given(doc=JSON)
def test_garbage_never_raises_anything_but_the_stable_refusal(doc) -> None:
    try:
        found = dropped(json.dumps(doc).encode(), LANDING)
    except InvalidMessage as exc:
        assert exc.code is IngestErrorCode.INVALID_MESSAGE
    else:
        assert all(isinstance(d, Dropped) for d in found)


@settings(max_examples=300, deadline=None)
@given(doc=JSON, kind=st.sampled_from(["Notification", "SubscriptionConfirmation", "Other"]))
def test_garbage_in_an_sns_envelope_never_raises_anything_but_the_stable_refusal(doc, kind) -> None:
    try:
        found = parse(sns(json.dumps(doc), kind=kind))
    except InvalidMessage as exc:
        assert exc.code is IngestErrorCode.INVALID_MESSAGE
    else:
        assert all(isinstance(d, Dropped) for d in found)


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=200))
def test_garbage_bytes_never_raise_anything_but_the_stable_refusal(raw) -> None:
    try:
        dropped(raw, LANDING)
    except InvalidMessage as exc:
        assert exc.code is IngestErrorCode.INVALID_MESSAGE


# -- the key's decodings look() tries where the decoded key is not there -----------------------------

ENCODINGS = {
    "form, / kept (S3's notifications)": lambda key: quote_plus(key, safe="/"),
    "form, / encoded (MinIO's)": quote_plus,
    "percent (EventBridge's, as AWS may write it)": quote,
    "percent, + kept": lambda key: quote(key, safe="/+"),
    "raw (EventBridge's, as moto writes it)": lambda key: key,
}
KEY_CHARS = st.sampled_from(list(" +%/")) | st.characters(codec="utf-8", exclude_categories=("Cs",))


@settings(max_examples=300, deadline=None)
@given(tenant=TENANT, rest=st.text(KEY_CHARS, min_size=1, max_size=40).filter(lambda s: not s.endswith(".json")),
       encoding=st.sampled_from(sorted(ENCODINGS)))
def test_the_candidate_keys_hold_the_true_key_whichever_way_aws_encoded_it(tenant, rest, encoding) -> None:
    key = f"{tenant}/{rest}"
    sent = ENCODINGS[encoding](key)
    candidates = candidate_keys(sent)
    assert key in candidates
    assert len(candidates) == len(set(candidates)) <= 3  # each at most once
    assert all(tenant_of(c) and not c.endswith(".json") for c in candidates)  # a drop's key, never a sidecar
    if encoding.startswith("form"):  # the notification's own decoding is the true key: one HEAD finds it
        assert candidates[0] == key


def test_the_candidate_keys_are_in_a_fixed_order_and_never_a_sidecar_nor_outside_a_tenant() -> None:
    assert candidate_keys("acme/a+b%2Bc%20d.wav") == ["acme/a b+c d.wav", "acme/a+b+c d.wav", "acme/a+b%2Bc%20d.wav"]
    assert candidate_keys("acme%2Fa+b.wav") == ["acme/a b.wav", "acme/a+b.wav"]  # the raw one is under no tenant
    assert candidate_keys("acme/a.wav") == ["acme/a.wav"]
    assert candidate_keys("acme/a.wav%2Ejson") == ["acme/a.wav%2Ejson"]  # its decodings are sidecars
    assert candidate_keys("Acme/a.wav") == candidate_keys("a.wav") == candidate_keys("../acme/a.wav") == []
    assert candidate_keys("acme/" + "%41" * 500) == ["acme/" + "A" * 500]  # the raw one is over 1,024 bytes


# -- AWS's own shapes (moto: what MinIO cannot show) --------------------------------------------------

@mock_aws
def test_aws_notifications_through_sqs_and_eventbridge_as_moto_writes_them() -> None:
    s3, sqs = boto3.client("s3", region_name="eu-west-3"), boto3.client("sqs", region_name="eu-west-3")
    events = boto3.client("events", region_name="eu-west-3")
    s3.create_bucket(Bucket=LANDING, CreateBucketConfiguration={"LocationConstraint": "eu-west-3"})
    queue = sqs.create_queue(QueueName="drops")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="drops", EventPattern=json.dumps({"source": ["aws.s3"], "detail-type": ["Object Created"]}))
    events.put_targets(Rule="drops", Targets=[{"Id": "drops", "Arn": arn}])
    s3.put_bucket_notification_configuration(Bucket=LANDING, NotificationConfiguration={
        "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}], "EventBridgeConfiguration": {}})
    key = "acme/2026/11/call 1+a.wav"
    # A value no event field could hold by chance (a bare "r1" turned up inside moto's random ids).
    s3.put_object(Bucket=LANDING, Key=key, Body=b"RIFF", Metadata={"recording-id": "telephony-id-in-metadata"})
    bodies = [m["Body"] for m in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])]
    assert len(bodies) == 3  # the test event, the notification, EventBridge's Object Created
    found = [d for body in bodies for d in dropped(body.encode(), LANDING)]
    assert [(d.key, d.metadata) for d in found] == [(key, None), (key, None)]
    # S3 publishes no x-amz-meta-*
    assert not any("userMetadata" in body or "telephony-id-in-metadata" in body for body in bodies)


@mock_aws
def test_s3_through_sns_to_sqs_as_moto_writes_it_is_unwrapped() -> None:
    """S3 -> SNS -> SQS without raw message delivery: each body is SNS's envelope, the S3 event
    its ``Message`` string (moto delivers no EventBridge event to SNS: that shape is above)."""
    region = "eu-west-3"
    s3, sqs, sns_ = (boto3.client(name, region_name=region) for name in ("s3", "sqs", "sns"))
    s3.create_bucket(Bucket=LANDING, CreateBucketConfiguration={"LocationConstraint": region})
    topic = sns_.create_topic(Name="drops")["TopicArn"]
    queue = sqs.create_queue(QueueName="drops")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns_.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    s3.put_bucket_notification_configuration(Bucket=LANDING, NotificationConfiguration={
        "TopicConfigurations": [{"TopicArn": topic, "Events": ["s3:ObjectCreated:*"]}]})
    key = "acme/2026/11/call 1+a%b.wav"
    s3.put_object(Bucket=LANDING, Key=key, Body=b"RIFF", Metadata={"recording-id": "telephony-id-in-metadata"})
    bodies = [m["Body"] for m in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])]
    envelopes = [json.loads(body) for body in bodies]
    assert len(bodies) == 2  # the test event, the notification
    assert all(e["Type"] == "Notification" and isinstance(e["Message"], str) for e in envelopes)
    found = [d for body in bodies for d in dropped(body.encode(), LANDING)]
    assert [(d.key, d.metadata) for d in found] == [(key, None)]
    assert not any("telephony-id-in-metadata" in body for body in bodies)
