"""Message schema v1: what telephony puts on ``callvault.recordings`` (DESIGN.md §Messages).

The contract is strict on purpose.  Unknown keys are refused (``extra="forbid"``): a typo
such as ``"redaction"`` for ``"redactions"`` would otherwise drop the payment spans and
store a card number.  Times must carry an offset, because retention runs on the call's
start and "10:00" means two instants a DST change apart; a start before 2000 is a reset
clock (Unix epoch, year 1), refused rather than silently expired on arrival.  Numbers and
millisecond values are strictly typed (no "100" for 100, no Unix timestamps).  A key given
twice in one object is refused: JSON parsers disagree on which one wins, so
``"redactions": [...], "redactions": []`` could mean spans to one reader and none to us.
Anything new goes into a v2.

Validation errors are turned into ``InvalidMessage`` with field paths and error types only:
pydantic's own errors carry the offending *input* (the number, the base64 audio) and must
not reach logs or the dead-letter topic.

``python -m ingest.schema`` (re)writes the JSON Schema committed for integrators;
``--check`` exits 1 when the committed file is stale.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import sys
from collections import Counter
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Iterable, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictInt,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from core.errors import InvalidNumber as NumberError
from core.phone import MAX_INPUT_LENGTH, is_withheld, normalise_number
from core.vocabulary import Direction
from ingest.exceptions import FieldError, InvalidMessage, InvalidNumber, InvalidRedaction, UnsupportedSchema

SCHEMA_V1 = "callvault.recording/v1"
JSON_SCHEMA_PATH = Path(__file__).with_name("schema") / "recording-v1.schema.json"
MAX_REDACTIONS = 1000
MAX_CALL_MS = 24 * 3600 * 1000  # no call lasts a day; bounds spans to sane integers
EARLIEST_START = datetime(2000, 1, 1, tzinfo=timezone.utc)  # before: a reset clock, not a call


class AudioFormat(StrEnum):
    """What telephony says it sent.  Only a hint: the decoder sniffs the bytes anyway."""

    WAV = "wav"
    MP3 = "mp3"
    OGG = "ogg"
    OPUS = "opus"
    FLAC = "flac"


RecordingId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{1,200}$")]
Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")]
ACTOR_ID_PATTERN = r"^[A-Za-z0-9._:@-]{1,128}$"  # an agent or team id, as telephony sends it
ActorId = Annotated[str, StringConstraints(pattern=ACTOR_ID_PATTERN)]
Instant = Annotated[AwareDatetime, Field(strict=True)]
Millis = Annotated[StrictInt, Field(ge=0, le=MAX_CALL_MS)]


def _from_base64(value: object) -> object:
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise PydanticCustomError("base64", "not valid base64") from None
    return value


InlineAudio = Annotated[
    bytes,
    BeforeValidator(_from_base64),
    PlainSerializer(lambda b: base64.b64encode(b).decode("ascii"), return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "contentEncoding": "base64",
                    "description": "The audio file itself, standard base64 (RFC 4648 §4, padded)."}),
]


def _key32(value: object) -> object:
    if isinstance(value, bytes) and len(value) != 32:
        raise PydanticCustomError("key_length", "must be 32 bytes")
    return value


ContentKey = Annotated[
    bytes,
    BeforeValidator(_from_base64),
    AfterValidator(_key32),
    PlainSerializer(lambda b: base64.b64encode(b).decode("ascii"), return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "contentEncoding": "base64", "description": "32 bytes, standard base64."}),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Redaction(_Model):
    """A span to silence, in ms from the start of the audio, end exclusive."""

    start_ms: Millis
    end_ms: Millis

    @model_validator(mode="after")
    def _ordered(self) -> "Redaction":
        if self.start_ms >= self.end_ms:
            raise PydanticCustomError("span_order", "start_ms must be less than end_ms")
        return self


def merge_spans(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sort spans and merge the ones that overlap or touch; telephony may send either."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


class AudioRef(_Model):
    """Claim check: the audio waits in the EU landing bucket (too big for a Kafka message)."""

    bucket: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")]
    key: Annotated[str, StringConstraints(min_length=1, max_length=1024, pattern=r"^[^\x00-\x1f\x7f]+$")]
    size: Annotated[StrictInt, Field(ge=1)]
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    content_key: ContentKey | None = Field(None, repr=False, description=(
        "The key the landing object is encrypted with (callvault's framed AES-256-GCM, bound to the tenant "
        "and the landing key). Only inside a sealed message (callvault.sealed/v1): size and sha256 are "
        "those of the encrypted object."))
    plain_sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")] | None = Field(None, description=(
        "With content_key: the SHA-256 of the audio before encryption, checked once decrypted. It is what makes "
        "a re-sent call (uploaded again, so encrypted anew) a duplicate rather than a conflict."))


class AudioPayload(_Model):
    """Exactly one of inline (small files) or ref (claim check)."""

    model_config = ConfigDict(json_schema_extra={"oneOf": [{"required": ["inline"]}, {"required": ["ref"]}]})

    inline: InlineAudio | None = Field(None, repr=False)
    ref: AudioRef | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> "AudioPayload":
        if (self.inline is None) == (self.ref is None):
            raise PydanticCustomError("audio_source", "exactly one of inline or ref is required")
        return self


class RecordingMessage(_Model):
    """One recorded call. Kafka key: the recording_id. Delivery is at least once; replays are harmless.
    A key appears at most once per object."""

    model_config = ConfigDict(title="callvault recording message v1", validate_by_name=True,
                              validate_by_alias=True, serialize_by_alias=True)

    schema_: Literal["callvault.recording/v1"] = Field(alias="schema")
    recording_id: RecordingId = Field(description="Telephony's id for the call; the idempotency key.")
    tenant: Slug = Field(description="The client (data controller) the call belongs to.")
    started_at: Instant = Field(description="Call start, RFC 3339 with an offset (Z or +01:00), not before 2000.",
                                json_schema_extra={"formatMinimum": EARLIEST_START.isoformat().replace("+00:00", "Z")})
    direction: Direction
    caller_number: str | None = Field(None, max_length=MAX_INPUT_LENGTH, repr=False, description=(
        "The customer's number, whatever the direction. Any format; national numbers are read as French "
        "and a valid or possible number is normalised to E.164. A number that is neither (an internal "
        "extension, a short code, a range not known yet) is kept as given: \"raw:\" and its digits, with a "
        "leading + if it had one. Only what is no phone number at all is refused: letters or symbols, fewer "
        "than 2 or more than 17 digits. For a caller who withheld their number, leave it out, send "
        "null, an empty string, or one of \"withheld\", \"anonymous\", \"private\", \"restricted\", "
        "\"unknown\", \"unavailable\", \"blocked\": the call is stored like any other, under the "
        "tenant's withheld identity, and no request by number ever matches it."))
    agent_id: ActorId
    team_id: ActorId | None = None
    audio_format: AudioFormat
    redactions: tuple[Redaction, ...] = Field((), max_length=MAX_REDACTIONS, description=(
        "Spans to replace with silence before anything is stored (payment taken, ...); overlaps are merged."))
    audio: AudioPayload
    sent_at: Instant | None = None

    @field_validator("started_at", "sent_at")
    @classmethod
    def _to_utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else value.astimezone(timezone.utc)

    @field_validator("started_at")
    @classmethod
    def _not_before_2000(cls, value: datetime) -> datetime:
        if value < EARLIEST_START:
            raise PydanticCustomError("too_early", "is before 2000: a reset clock, not a call")
        return value

    @field_validator("caller_number")
    @classmethod
    def _canonical(cls, value: str | None, info: ValidationInfo) -> str | None:
        if is_withheld(value):
            return None
        region = (info.context or {}).get("default_region", "FR")
        try:
            return normalise_number(value, region)
        except NumberError as exc:
            raise PydanticCustomError("invalid_number", exc.errors[0].msg) from None

    @field_validator("redactions")
    @classmethod
    def _merged(cls, spans: tuple[Redaction, ...]) -> tuple[Redaction, ...]:
        pairs = merge_spans((s.start_ms, s.end_ms) for s in spans)
        return tuple(Redaction(start_ms=a, end_ms=b) for a, b in pairs)

    @property
    def withheld(self) -> bool:
        """The caller withheld their number (or telephony had none)."""
        return self.caller_number is None

    @property
    def spans(self) -> list[tuple[int, int]]:
        return [(r.start_ms, r.end_ms) for r in self.redactions]

    def to_bytes(self) -> bytes:
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()

    def check_clock(self, now: datetime, *, max_ahead: timedelta = timedelta(minutes=5)) -> None:
        """Refuse a call that starts in the future (a wrong clock or a wrong offset upstream)."""
        if self.started_at > now + max_ahead:
            raise InvalidMessage.from_errors([FieldError(("started_at",), "in_future", "starts in the future")])


# --- turning pydantic errors into ours ---------------------------------------------------

# Types whose message template never contains the input; others are reported by type only.
_SAFE_MSG_TYPES = frozenset({
    "missing", "extra_forbidden", "timezone_aware", "literal_error", "enum", "string_type", "string_too_short",
    "string_too_long", "string_pattern_mismatch", "int_type", "greater_than", "greater_than_equal",
    "less_than", "less_than_equal", "too_long", "too_short", "datetime_type", "datetime_parsing", "bytes_type",
    "model_type", "model_attributes_type", "dict_type", "tuple_type", "json_invalid", "json_type",
    "invalid_number", "base64", "span_order", "audio_source", "too_early", "key_length",
})
_SAFE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_SAFE_SCHEMA = re.compile(r"^[A-Za-z._/-]*\d{0,3}$")


def _safe_loc(part: str | int) -> str | int:
    """Field names and indexes pass; an unknown key could be anything, even a number."""
    if isinstance(part, int) or (_SAFE_KEY.match(part) and not re.search(r"\d{4,}", part)):
        return part
    return "<key>"


def _translate(exc: ValidationError) -> InvalidMessage:
    raw = exc.errors(include_url=False)
    for e in raw:
        if e["loc"] == ("schema",) and e["type"] == "literal_error" and isinstance(e.get("input"), str):
            shown = e["input"] if len(e["input"]) <= 64 and _SAFE_SCHEMA.match(e["input"]) else "<other>"
            return UnsupportedSchema(f"unsupported schema {shown!r}; this worker reads {SCHEMA_V1!r}",
                                     errors=[FieldError(("schema",), "unsupported_schema")])
    return _invalid([FieldError(tuple(_safe_loc(p) for p in e["loc"]), e["type"],
                                e["msg"][:160] if e["type"] in _SAFE_MSG_TYPES else "") for e in raw])


def _invalid(errors: list[FieldError]) -> InvalidMessage:
    """The most specific error class that covers every problem found."""
    if all(e.type == "invalid_number" for e in errors):
        return InvalidNumber.from_errors(errors)
    if all(e.loc[:1] == ("redactions",) for e in errors):
        return InvalidRedaction.from_errors(errors)
    return InvalidMessage.from_errors(errors)


class _Object(dict):
    """A parsed JSON object that remembers which of its keys were given more than once."""

    repeated: list[str]


def _object(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object(pairs)
    obj.repeated = [key for key, n in Counter(key for key, _ in pairs).items() if n > 1]
    return obj


def _repeated_keys(value: Any, loc: tuple[str | int, ...] = ()) -> Iterable[FieldError]:
    if isinstance(value, _Object):
        for key in value.repeated:
            yield FieldError(tuple(_safe_loc(p) for p in (*loc, key)), "duplicate_key", "key given more than once")
        for key, item in value.items():
            yield from _repeated_keys(item, (*loc, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _repeated_keys(item, (*loc, i))


def parse_message(raw: bytes, *, default_region: str = "FR") -> RecordingMessage:
    """Bytes from Kafka to a validated message, or ``InvalidMessage`` (or a subclass)."""
    try:
        msg = RecordingMessage.model_validate_json(raw, context={"default_region": default_region})
    except ValidationError as exc:
        raise _translate(exc) from None
    # Only a valid message is parsed again (shallow, and already known to be UTF-8 JSON):
    # pydantic keeps the last of repeated keys without a word.
    errors = list(_repeated_keys(json.loads(raw, object_pairs_hook=_object)))
    if errors:
        raise _invalid(errors)
    return msg


def guess_format(data: bytes) -> AudioFormat | None:
    """The format a file's magic bytes announce, for producers that don't know it."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return AudioFormat.WAV
    if data[:4] == b"OggS":
        return AudioFormat.OPUS if b"OpusHead" in data[:80] else AudioFormat.OGG
    if data[:4] == b"fLaC":
        return AudioFormat.FLAC
    if data[:3] == b"ID3" or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0):
        return AudioFormat.MP3
    return None


def build_message(*, recording_id: str, tenant: str, started_at: datetime, caller_number: str | None, agent_id: str,
                  audio: bytes | AudioRef, audio_format: AudioFormat | str | None = None,
                  direction: Direction | str = Direction.INBOUND, team_id: str | None = None,
                  redactions: Iterable[tuple[int, int]] = (), sent_at: datetime | None = None,
                  default_region: str = "FR") -> RecordingMessage:
    """A validated v1 message from Python values (the producer and tests use this)."""
    if audio_format is None and isinstance(audio, bytes):
        audio_format = guess_format(audio)
    fields: dict[str, Any] = {
        "schema": SCHEMA_V1, "recording_id": recording_id, "tenant": tenant, "started_at": started_at,
        "direction": direction, "caller_number": caller_number, "agent_id": agent_id, "team_id": team_id,
        "audio_format": audio_format, "redactions": [{"start_ms": a, "end_ms": b} for a, b in redactions],
        "audio": {"ref": audio} if isinstance(audio, AudioRef) else {"inline": audio}, "sent_at": sent_at,
    }
    try:
        return RecordingMessage.model_validate(fields, context={"default_region": default_region})
    except ValidationError as exc:
        raise _translate(exc) from None


def json_schema() -> dict[str, Any]:
    schema = RecordingMessage.model_json_schema(by_alias=True, mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def render_json_schema() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    text = render_json_schema()
    if "--check" in args:
        current = JSON_SCHEMA_PATH.read_text() if JSON_SCHEMA_PATH.exists() else ""
        if current != text:
            print(f"{JSON_SCHEMA_PATH} is stale: run python -m ingest.schema", file=sys.stderr)
            return 1
        return 0
    JSON_SCHEMA_PATH.parent.mkdir(parents=True, exist_ok=True)
    JSON_SCHEMA_PATH.write_text(text)
    print(f"wrote {JSON_SCHEMA_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
