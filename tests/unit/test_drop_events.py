"""The drop topic's events, parsed (``ingest.drop.dropped``): MinIO's (metadata in the event),
AWS S3's through SQS (none; the worker reads them with a HEAD) and EventBridge's, as moto writes
them where AWS's own shape matters; a test event and a removal ignored; anything else refused
with the stable ``invalid_message``. The worker taking them: tests/integration/test_drop_s3.py.
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

from ingest.drop import Dropped, dropped
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
])
def test_what_is_no_s3_event_is_refused_with_its_stable_reason(raw: bytes) -> None:
    with pytest.raises(InvalidMessage) as refused:
        dropped(raw, LANDING)
    assert refused.value.code is IngestErrorCode.INVALID_MESSAGE


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
                                         "userMetadata", "Event", "source", "detail-type", "detail", "x"]),
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


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=200))
def test_garbage_bytes_never_raise_anything_but_the_stable_refusal(raw) -> None:
    try:
        dropped(raw, LANDING)
    except InvalidMessage as exc:
        assert exc.code is IngestErrorCode.INVALID_MESSAGE


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
