"""ingest.schema: the v1 contract, its errors (PII-free) and the committed JSON Schema."""

from __future__ import annotations

import base64
import copy
import json
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest import schema
from ingest.exceptions import InvalidMessage, InvalidNumber, InvalidRedaction, UnsupportedSchema
from ingest.schema import (AudioFormat, AudioRef, Direction, RecordingMessage, build_message, guess_format,
                           parse_message)

NUMBER = "06 12 34 56 78"
E164 = "+33612345678"
AUDIO = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(256)) * 4
AUDIO_B64 = base64.b64encode(AUDIO).decode()
SHA = "ab" * 32


def valid() -> dict[str, Any]:
    return {
        "schema": "callvault.recording/v1", "recording_id": "pbx-1:2024.06_A-7", "tenant": "acme-fr",
        "started_at": "2026-03-29T01:30:00+01:00", "direction": "inbound", "caller_number": NUMBER,
        "agent_id": "agent.42@acme", "team_id": "team-7", "audio_format": "wav",
        "redactions": [{"start_ms": 1000, "end_ms": 2000}], "audio": {"inline": AUDIO_B64},
        "sent_at": "2026-03-29T00:35:00Z",
    }


def raw(msg: dict[str, Any]) -> bytes:
    return json.dumps(msg).encode()


def assert_pii_free(text: str) -> None:
    for secret in (NUMBER, E164, "612345678", "0612345678", AUDIO_B64[:16], AUDIO_B64[-16:]):
        assert secret not in text


# --- valid messages ------------------------------------------------------------------------

def test_valid_message_is_normalised() -> None:
    msg = parse_message(raw(valid()))
    assert msg.caller_number == E164
    assert msg.started_at == datetime(2026, 3, 29, 0, 30, tzinfo=timezone.utc)
    assert msg.started_at.utcoffset() == timedelta(0)
    assert msg.direction is Direction.INBOUND and msg.audio_format is AudioFormat.WAV
    assert msg.audio.inline == AUDIO and msg.audio.ref is None
    assert msg.spans == [(1000, 2000)]


@pytest.mark.parametrize(("number", "kept"), [
    ("+33 7 00 00 00 01", "+33700000001"), ("4012", "raw:4012"), ("3615", "raw:3615"), ("0612", "raw:0612"),
    ("+999 612345678", "raw:+999612345678"),
])
def test_numbers_libphonenumber_cannot_validate_are_kept(number: str, kept: str) -> None:
    data = valid()
    data["caller_number"] = number
    msg = parse_message(raw(data))
    assert msg.caller_number == kept and not msg.withheld
    assert parse_message(msg.to_bytes()).caller_number == kept  # the kept form reads back as itself


def test_round_trip_through_bytes() -> None:
    msg = parse_message(raw(valid()))
    again = parse_message(msg.to_bytes())
    assert again == msg
    assert again.to_bytes() == msg.to_bytes()
    assert json.loads(msg.to_bytes())["schema"] == "callvault.recording/v1"


def test_claim_check_message_round_trips() -> None:
    data = valid()
    data["audio"] = {"ref": {"bucket": "cv-landing", "key": "acme/2026/03/pbx-1.wav", "size": 123, "sha256": SHA}}
    del data["team_id"], data["sent_at"]
    msg = parse_message(raw(data))
    assert msg.audio.ref == AudioRef(bucket="cv-landing", key="acme/2026/03/pbx-1.wav", size=123, sha256=SHA)
    assert msg.team_id is None and msg.sent_at is None
    assert parse_message(msg.to_bytes()) == msg
    assert "team_id" not in json.loads(msg.to_bytes())


def test_build_message_matches_parsed_json() -> None:
    built = build_message(
        recording_id="pbx-1:2024.06_A-7", tenant="acme-fr", team_id="team-7", agent_id="agent.42@acme",
        started_at=datetime(2026, 3, 29, 1, 30, tzinfo=timezone(timedelta(hours=1))), caller_number=NUMBER,
        audio=AUDIO, redactions=[(1000, 2000)], sent_at=datetime(2026, 3, 29, 0, 35, tzinfo=timezone.utc))
    assert built.audio_format is AudioFormat.WAV  # guessed from the bytes
    assert built == parse_message(raw(valid()))


def test_build_message_refuses_naive_time() -> None:
    with pytest.raises(InvalidMessage) as info:
        build_message(recording_id="r1", tenant="acme", started_at=datetime(2026, 1, 1, 10, 0),
                      caller_number=NUMBER, agent_id="a", audio=AUDIO)
    assert [e.path for e in info.value.errors] == ["started_at"]


def test_redactions_are_sorted_and_merged() -> None:
    data = valid()
    data["redactions"] = [{"start_ms": 5000, "end_ms": 6000}, {"start_ms": 0, "end_ms": 100},
                          {"start_ms": 5500, "end_ms": 7000}, {"start_ms": 100, "end_ms": 200},
                          {"start_ms": 9000, "end_ms": 9001}]
    assert parse_message(raw(data)).spans == [(0, 200), (5000, 7000), (9000, 9001)]


def test_repr_hides_number_and_audio() -> None:
    assert_pii_free(repr(parse_message(raw(valid()))))


def test_check_clock_refuses_the_far_future() -> None:
    msg = parse_message(raw(valid()))
    msg.check_clock(msg.started_at)
    msg.check_clock(msg.started_at - timedelta(minutes=4))
    with pytest.raises(InvalidMessage) as info:
        msg.check_clock(msg.started_at - timedelta(hours=1))
    assert info.value.errors[0].path == "started_at" and info.value.code == "invalid_message"


@pytest.mark.parametrize(("data", "expected"), [
    (b"RIFF\0\0\0\0WAVEfmt ", AudioFormat.WAV), (b"OggS\0\x02" + b"\0" * 22 + b"OpusHead", AudioFormat.OPUS),
    (b"OggS\0\x02" + b"\0" * 22 + b"\x01vorbis", AudioFormat.OGG), (b"fLaC\0\0\0\x22", AudioFormat.FLAC),
    (b"ID3\x04", AudioFormat.MP3), (b"\xff\xf3\x44\xc4", AudioFormat.MP3), (b"hello", None), (b"", None),
])
def test_guess_format(data: bytes, expected: AudioFormat | None) -> None:
    assert guess_format(data) == expected


# --- invalid messages ----------------------------------------------------------------------

def setter(path: str, value: Any) -> Callable[[dict], None]:
    def apply(msg: dict) -> None:
        *parents, last = path.split(".")
        for part in parents:
            msg = msg[int(part)] if part.isdigit() else msg[part]
        if value is DELETE:
            del msg[last]
        else:
            msg[last] = value
    return apply


DELETE = object()
BAD = [
    ("recording_id", "", "recording_id", InvalidMessage),
    ("recording_id", "has space", "recording_id", InvalidMessage),
    ("recording_id", "x" * 201, "recording_id", InvalidMessage),
    ("recording_id", 12345, "recording_id", InvalidMessage),
    ("tenant", "Acme FR", "tenant", InvalidMessage),
    ("started_at", "2026-03-29T01:30:00", "started_at", InvalidMessage),
    ("started_at", 1774744200, "started_at", InvalidMessage),
    ("started_at", "yesterday", "started_at", InvalidMessage),
    ("started_at", "1970-01-01T00:00:00Z", "started_at", InvalidMessage),  # a reset clock
    ("started_at", "2000-01-01T00:30:00+01:00", "started_at", InvalidMessage),  # 1999 in UTC
    ("sent_at", "2026-03-29T00:35:00", "sent_at", InvalidMessage),
    ("direction", "sideways", "direction", InvalidMessage),
    ("caller_number", "7", "caller_number", InvalidNumber),
    ("caller_number", "06 12 34 56 78 90 12 34 56", "caller_number", InvalidNumber),
    ("caller_number", "not a number", "caller_number", InvalidNumber),
    ("caller_number", 612345678, "caller_number", InvalidMessage),
    ("agent_id", DELETE, "agent_id", InvalidMessage),
    ("team_id", "team 7", "team_id", InvalidMessage),
    ("audio_format", "aac", "audio_format", InvalidMessage),
    ("redactions", [{"start_ms": 2000, "end_ms": 1000}], "redactions.0", InvalidRedaction),
    ("redactions", [{"start_ms": 5, "end_ms": 5}], "redactions.0", InvalidRedaction),
    ("redactions", [{"start_ms": -1, "end_ms": 10}], "redactions.0.start_ms", InvalidRedaction),
    ("redactions", [{"start_ms": "10", "end_ms": 20}], "redactions.0.start_ms", InvalidRedaction),
    ("redactions", [{"start_ms": 1.5, "end_ms": 20}], "redactions.0.start_ms", InvalidRedaction),
    ("redactions", [{"start_ms": 0, "end_ms": 10**12}], "redactions.0.end_ms", InvalidRedaction),
    ("redactions", [{"start_ms": 0}], "redactions.0.end_ms", InvalidRedaction),
    ("redactions", [{"start_ms": i, "end_ms": i + 1} for i in range(1001)], "redactions", InvalidRedaction),
    ("redaction", [], "redaction", InvalidMessage),  # the typo that would store a card number
    ("audio", {}, "audio", InvalidMessage),
    ("audio", {"inline": AUDIO_B64, "ref": {"bucket": "b-1", "key": "k", "size": 1, "sha256": SHA}}, "audio",
     InvalidMessage),
    ("audio", {"inline": AUDIO_B64[:-2] + "!!"}, "audio.inline", InvalidMessage),
    ("audio", {"inline": "é" + AUDIO_B64}, "audio.inline", InvalidMessage),
    ("audio", {"ref": {"bucket": "b-1", "key": "k", "size": 1, "sha256": "XYZ"}}, "audio.ref.sha256",
     InvalidMessage),
    ("audio", {"ref": {"bucket": "B_1", "key": "k", "size": 0, "sha256": SHA}}, "audio.ref.bucket",
     InvalidMessage),
    ("schema", DELETE, "schema", InvalidMessage),
    ("schema", "callvault.recording/v2", "schema", UnsupportedSchema),
]


@pytest.mark.parametrize(("field", "value", "path", "error"), BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_each_bad_field_is_reported_by_path(field: str, value: Any, path: str, error: type) -> None:
    data = valid()
    setter(field, value)(data)
    with pytest.raises(InvalidMessage) as info:
        parse_message(raw(data))
    exc = info.value
    assert type(exc) is error
    assert path in [e.path for e in exc.errors], exc.errors
    assert exc.code == error.code
    assert_pii_free(str(exc))
    assert_pii_free(repr(exc.errors))


def test_several_errors_are_all_listed_and_summarised() -> None:
    data = valid()
    data.update(tenant="BAD", direction="x", caller_number="06 CALL NOW", audio_format="aac")
    with pytest.raises(InvalidMessage) as info:
        parse_message(raw(data))
    exc = info.value
    assert type(exc) is InvalidMessage  # mixed problems: the generic code
    assert {e.path for e in exc.errors} == {"tenant", "direction", "caller_number", "audio_format"}
    assert "4 validation errors" in str(exc)
    assert_pii_free(str(exc))


def test_unknown_key_holding_pii_is_not_echoed() -> None:
    data = valid()
    data[E164] = NUMBER
    data["caller"] = {"0612345678": 1}
    with pytest.raises(InvalidMessage) as info:
        parse_message(raw(data))
    assert {e.path for e in info.value.errors} == {"<key>", "caller"}
    assert_pii_free(str(info.value))


def test_the_first_second_of_2000_is_a_valid_start() -> None:
    data = valid()
    data["started_at"] = "2000-01-01T01:00:00+01:00"
    assert parse_message(raw(data)).started_at == schema.EARLIEST_START


@pytest.mark.parametrize(("text", "path", "error"), [
    ('"tenant": "other", ', "tenant", InvalidMessage),
    ('"redactions": [], ', "redactions", InvalidRedaction),
    ('"caller_number": "+33 6 12 34 56 78", ', "caller_number", InvalidMessage),
])
def test_a_key_given_twice_is_refused(text: str, path: str, error: type) -> None:
    """Parsers disagree on which of two equal keys wins; ours took the last without a word."""
    blob = b"{" + text.encode() + raw(valid())[1:]
    with pytest.raises(InvalidMessage) as info:
        parse_message(blob)
    assert type(info.value) is error and [e.path for e in info.value.errors] == [path]
    assert_pii_free(str(info.value))


def test_a_nested_key_given_twice_is_reported_by_its_path() -> None:
    blob = raw(valid()).replace(b'"end_ms": 2000}', b'"end_ms": 2000, "end_ms": 1500}')
    with pytest.raises(InvalidRedaction) as info:
        parse_message(blob)
    assert [e.path for e in info.value.errors] == ["redactions.0.end_ms"]


def test_odd_schema_value_is_not_echoed() -> None:
    data = valid()
    data["schema"] = "0612345678"
    with pytest.raises(UnsupportedSchema) as info:
        parse_message(raw(data))
    assert "0612345678" not in str(info.value)


@pytest.mark.parametrize("blob", [b"", b"{", b"null", b"[]", b'"x"', b"\xff\xfe", b"[" * 100_000 + b"]" * 100_000,
                                  b'{"schema": "callvault.recording/v1"', raw(valid())[:-5]])
def test_broken_json_is_an_invalid_message(blob: bytes) -> None:
    with pytest.raises(InvalidMessage) as info:
        parse_message(blob)
    assert type(info.value) in (InvalidMessage,)


@given(st.binary(max_size=400))
@settings(max_examples=300)
def test_fuzz_random_bytes(blob: bytes) -> None:
    try:
        parse_message(blob)
    except InvalidMessage:
        pass


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20)


@given(st.dictionaries(st.sampled_from(sorted(valid()) + ["extra"]), json_values, max_size=12) | json_values)
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_fuzz_random_json(value: Any) -> None:
    try:
        parse_message(json.dumps(value).encode())
    except InvalidMessage as exc:
        assert exc.code in ("invalid_message", "unsupported_schema", "invalid_number", "invalid_redaction")


@given(st.sampled_from(sorted(valid())), json_values)
@settings(max_examples=300)
def test_fuzz_one_field_of_a_valid_message_never_leaks(field: str, value: Any) -> None:
    data = copy.deepcopy(valid())
    data[field] = value
    try:
        parse_message(raw(data))
    except InvalidMessage as exc:
        assert_pii_free(str(exc))


# --- the committed JSON Schema -------------------------------------------------------------

def test_committed_json_schema_is_current() -> None:
    assert schema.JSON_SCHEMA_PATH.read_text() == schema.render_json_schema(), \
        "regenerate it: python -m ingest.schema"
    assert schema.main(["--check"]) == 0


def test_json_schema_describes_the_contract() -> None:
    doc = json.loads(schema.JSON_SCHEMA_PATH.read_text())
    assert doc["additionalProperties"] is False
    assert set(doc["required"]) == {"schema", "recording_id", "tenant", "started_at", "direction",
                                    "agent_id", "audio_format", "audio"}  # no number: withheld
    assert doc["properties"]["schema"]["const"] == "callvault.recording/v1"
    assert doc["$defs"]["AudioPayload"]["oneOf"] == [{"required": ["inline"]}, {"required": ["ref"]}]
    assert doc["$defs"]["Redaction"]["properties"]["start_ms"]["minimum"] == 0
    started = doc["properties"]["started_at"]
    assert datetime.fromisoformat(started["formatMinimum"]) == schema.EARLIEST_START


def test_parse_default_region_is_configurable() -> None:
    data = valid()
    data["caller_number"] = "020 7946 0958"
    assert parse_message(raw(data), default_region="GB").caller_number == "+442079460958"
    assert isinstance(RecordingMessage.model_json_schema(), dict)


@pytest.mark.parametrize("marker", [None, "", "   ", "anonymous", "Anonymous", " withheld ", "PRIVATE", "restricted",
                                    "unknown", "Unavailable", "blocked", "No  Caller ID"])
def test_a_withheld_or_absent_number_is_a_withheld_call(marker) -> None:
    data = valid()
    if marker is None:
        del data["caller_number"]
    else:
        data["caller_number"] = marker
    msg = parse_message(raw(data))
    assert msg.withheld and msg.caller_number is None
    assert "caller_number" not in json.loads(msg.to_bytes())  # sent on as absent, the one spelling


def test_a_number_that_is_not_a_marker_is_still_checked() -> None:
    data = valid()
    data["caller_number"] = "anonymous 0612"
    with pytest.raises(InvalidNumber):
        parse_message(raw(data))


def test_the_json_schema_says_how_to_send_a_withheld_number() -> None:
    doc = json.loads(schema.JSON_SCHEMA_PATH.read_text())
    assert "caller_number" not in doc["required"]
    assert "withheld" in doc["properties"]["caller_number"]["description"]
