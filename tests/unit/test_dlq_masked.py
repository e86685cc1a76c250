"""`callvault dlq show` of what a third-party producer sends: a message with no Kafka key shows the
recording id it carries; one that is no JSON object shows its number as unknown, never as withheld."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from ingest.dlq import DeadLetter

AT = datetime(2026, 11, 26, tzinfo=timezone.utc)


def letter(value: bytes, key: bytes | None = None) -> DeadLetter:
    return DeadLetter(partition=0, offset=1, at=AT, key=key, reason="invalid_message", error="e", value=value)


def test_a_message_without_a_key_shows_its_own_recording_id() -> None:
    shown = letter(json.dumps({"recording_id": "pbx-42", "caller_number": "+33612345678"}).encode()).masked()
    assert shown["recording_id"] == "pbx-42" and "612345678" not in json.dumps(shown)


def test_the_kafka_key_wins_and_a_withheld_number_stays_withheld() -> None:
    shown = letter(json.dumps({"recording_id": "other", "caller_number": None}).encode(), key=b"pbx-43").masked()
    assert (shown["recording_id"], shown["caller_number"]) == ("pbx-43", "withheld")


def test_a_message_that_is_no_json_object_has_no_known_number() -> None:
    for value in (b"", b"{not json", b"[1, 2]", b"[" * 100_000):
        shown = letter(value).masked()
        assert shown["caller_number"] == "-" and shown["recording_id"] == "", value[:10]
