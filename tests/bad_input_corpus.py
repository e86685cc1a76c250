"""Every kind of malformed recording message the worker must dead-letter, and the reason it gives.

One source of truth for three tests: the pure validation (``tests/unit/test_bad_input_corpus.py``),
the ingest service in process (``tests/integration/test_bad_input_corpus.py``) and the real
worker on Kafka (``tests/integration/test_ingest_e2e.py``).  Each case is a kind, not a sample:
a name, the bytes put on ``callvault.recordings``, the reason code the dead letter must carry and
words its ``callvault-error`` header must contain.

``Stage.MESSAGE`` cases fail validation (``parse_message`` and the clock check), with no I/O.
``Stage.SERVICE`` cases are valid messages that the world refuses: an unknown tenant, a claim
check that does not hold, audio that does not decode or breaks a limit of ``LIMITS``.

Every message carries ``NUMBER`` (or a bad number of its own) and, where it has audio, a tone:
``secrets`` lists what no error header may contain.  Nothing here depends on pytest.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import struct
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cache
from typing import Any, Callable

from ingest.exceptions import IngestErrorCode as Code
from ingest.schema import SCHEMA_V1
from ingest.sealing import SEALED_V1
from testbed.audio import encode, pcm_to_wav, sine_wav, transcode

TENANT = "acme"
NUMBER = "06 12 34 56 78"
NUMBER_FORMS = (NUMBER, "+33612345678", "0612345678", "612345678")
# The worker's limits while the corpus runs (small, so "too long" and "too big" stay cheap).
LIMITS = {"max_duration_seconds": 30, "max_audio_bytes": 256 * 1024}
DELETE = object()


class Stage(StrEnum):
    MESSAGE = "message"  # refused by validation alone
    SERVICE = "service"  # a valid message: refused by the tenant check, the claim check or the audio path


@dataclass(frozen=True)
class World:
    """What a case needs from where it is sent: the time, and the landing bucket for claim checks."""

    now: datetime
    landing_bucket: str = "cv-landing"
    put: Callable[[str, bytes], None] = lambda key, data: None  # upload to the landing bucket


@dataclass(frozen=True)
class BadInput:
    name: str
    build: Callable[[World], bytes]
    reason: Code
    says: str  # a substring of the PII-free error header
    stage: Stage

    @property
    def key(self) -> bytes:
        return self.name.encode()


# --- audio ---------------------------------------------------------------------------------

@cache
def tone(seconds: float = 2.0) -> bytes:
    return sine_wav(seconds)


def _patched(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


def _cut(data: bytes, fraction: float) -> bytes:
    return data[: int(len(data) * fraction)]


# --- messages ------------------------------------------------------------------------------

def fields(world: World, recording_id: str, audio: bytes | None = None) -> dict[str, Any]:
    """A valid v1 message as JSON values: the one every case breaks in one way."""
    return {
        "schema": SCHEMA_V1, "recording_id": recording_id, "tenant": TENANT,
        "started_at": (world.now - timedelta(minutes=5)).isoformat(), "direction": "inbound",
        "caller_number": NUMBER, "agent_id": "agent-7", "team_id": "team-a", "audio_format": "wav",
        "redactions": [{"start_ms": 200, "end_ms": 400}],
        "audio": {"inline": base64.b64encode(tone() if audio is None else audio).decode()},
    }


def good(world: World, recording_id: str, seconds: float = 1.0) -> bytes:
    """A call the worker stores, to send between the bad ones."""
    return json.dumps(fields(world, recording_id, tone(seconds))).encode()


def _dumps(msg: dict[str, Any]) -> bytes:
    return json.dumps({k: v for k, v in msg.items() if v is not DELETE}).encode()


def raw(name: str, reason: Code, says: str, blob: Callable[[World], bytes]) -> BadInput:
    return BadInput(name, blob, reason, says, Stage.MESSAGE)


def field(name: str, reason: Code, says: str, **changes: Any) -> BadInput:
    """A valid message with some fields replaced (``DELETE`` removes one); ``now`` is ``world.now``."""
    def build(world: World) -> bytes:
        values = {k: v(world) if callable(v) else v for k, v in changes.items()}
        return _dumps({**fields(world, name), **values})
    return BadInput(name, build, reason, says, Stage.MESSAGE)


def served(name: str, reason: Code, says: str, *, audio: Callable[[], bytes] | None = None,
           ref: Callable[[World], dict] | None = None, **changes: Any) -> BadInput:
    """A valid message that the tenant check, the claim check or the audio path refuses."""
    def build(world: World) -> bytes:
        msg = {**fields(world, name, audio() if audio else None), **changes}
        if ref is not None:
            msg["audio"] = {"ref": ref(world)}
        return _dumps(msg)
    return BadInput(name, build, reason, says, Stage.SERVICE)


def _claim(data: bytes, *, stored: bytes | None = None, bucket: str | None = None,
           key: str = "acme/claim") -> Callable[[World], dict]:
    """A claim check for ``data``; ``stored`` is what is really uploaded (None: nothing)."""
    def ref(world: World) -> dict:
        if stored is not None:
            world.put(key, stored)
        return {"bucket": bucket or world.landing_bucket, "key": key, "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest()}
    return ref


def _envelope(*, key_id: str) -> bytes:
    return json.dumps({"schema": SEALED_V1, "tenant": TENANT, "key_id": key_id,
                       "sealed": base64.b64encode(random.Random(3).randbytes(200)).decode()}).encode()


def _shift(**delta: float) -> Callable[[World], str]:
    return lambda world: (world.now + timedelta(**delta)).isoformat()


def _text_b64(text: bytes) -> dict:
    return {"inline": base64.b64encode(text).decode()}


REQUIRED = ("schema", "recording_id", "tenant", "started_at", "direction", "agent_id", "audio_format", "audio")
# (caller_number may be left out: a withheld number.)
INVALID, SCHEMA, NUMBER_CODE, REDACTION = (Code.INVALID_MESSAGE, Code.UNSUPPORTED_SCHEMA, Code.INVALID_NUMBER,
                                           Code.INVALID_REDACTION)
REF = {"bucket": "cv-landing", "key": "acme/x", "size": 10, "sha256": "0" * 64}

CORPUS: tuple[BadInput, ...] = (
    # Not a JSON object at all.
    raw("not-json", INVALID, "Invalid JSON", lambda w: b"\x00\x01garbage"),
    raw("empty-message", INVALID, "Invalid JSON: EOF", lambda w: b""),
    raw("cut-json", INVALID, "Invalid JSON: EOF", lambda w: _cut(good(w, "cut-json"), 0.5)),
    raw("utf16-json", INVALID, "Invalid JSON", lambda w: good(w, "utf16-json").decode().encode("utf-16")),
    raw("latin1-byte-in-string", INVALID, "Invalid JSON",
        lambda w: good(w, "latin1-byte-in-string").replace(b'"agent-7"', b'"agent-\xe97"')),
    raw("json-array", INVALID, "<message>: Input should be an object",
        lambda w: b"[" + good(w, "json-array") + b"]"),
    raw("json-number", INVALID, "<message>: Input should be an object", lambda w: b"42"),
    raw("json-null", INVALID, "<message>: Input should be an object", lambda w: b"null"),
    raw("json-encoded-twice", INVALID, "<message>: Input should be an object",
        lambda w: json.dumps(good(w, "json-encoded-twice").decode()).encode()),
    raw("nested-too-deep", INVALID, "recursion limit", lambda w: b"[" * 100_000 + b"]" * 100_000),
    raw("key-given-twice", INVALID, "tenant: key given more than once",
        lambda w: b'{"tenant": "beta", ' + good(w, "key-given-twice")[1:]),
    # The contract: schema, required fields, no unknown keys.
    field("schema-v2", SCHEMA, "unsupported schema 'callvault.recording/v2'", schema="callvault.recording/v2"),
    field("schema-odd", SCHEMA, "unsupported schema '<other>'", schema="0612345678"),
    *(field(f"missing-{name.replace('_', '-')}", INVALID, f"{name}: Field required", **{name: DELETE})
      for name in REQUIRED),
    field("unknown-key", INVALID, "redaction: Extra inputs are not permitted", redaction=[]),
    # Ids and slugs.
    field("recording-id-number", INVALID, "recording_id: Input should be a valid string", recording_id=12345),
    field("recording-id-oversized", INVALID, "recording_id: String should match pattern", recording_id="r" * 201),
    field("recording-id-path", INVALID, "recording_id: String should match pattern", recording_id="../etc/passwd"),
    field("tenant-empty", INVALID, "tenant: String should match pattern", tenant=""),
    field("tenant-not-a-slug", INVALID, "tenant: String should match pattern", tenant="Acme FR"),
    field("agent-id-empty", INVALID, "agent_id: String should match pattern", agent_id=""),
    field("team-id-with-space", INVALID, "team_id: String should match pattern", team_id="team a"),
    field("direction-unknown", INVALID, "direction: Input should be 'inbound' or 'outbound'", direction="sideways"),
    field("audio-format-aac", INVALID, "audio_format: Input should be 'wav'", audio_format="aac"),
    # Times.
    field("started-at-naive", INVALID, "started_at: Input should have timezone info",
          started_at=lambda w: w.now.replace(tzinfo=None).isoformat()),
    field("started-at-unix-seconds", INVALID, "started_at: Input should be a valid datetime",
          started_at=lambda w: int(w.now.timestamp())),
    field("started-at-words", INVALID, "started_at: Input should be a valid datetime", started_at="yesterday"),
    field("started-at-impossible-day", INVALID, "started_at: Input should be a valid datetime, day value",
          started_at="2026-02-30T10:00:00Z"),
    field("started-at-offset-25h", INVALID, "timezone offset must be less than 24 hours",
          started_at="2026-02-01T10:00:00+25:00"),
    field("started-at-far-future", INVALID, "started_at: starts in the future", started_at=_shift(days=2)),
    field("started-at-epoch", INVALID, "started_at: is before 2000", started_at="1970-01-01T00:00:00Z"),
    field("sent-at-naive", INVALID, "sent_at: Input should have timezone info", sent_at="2026-01-01T10:00:00"),
    # The caller number (the header never repeats it).
    field("number-letters", NUMBER_CODE, "caller_number: not a phone number", caller_number="06 CALL NOW"),
    field("number-too-short", NUMBER_CODE, "caller_number: too short", caller_number="7"),
    field("number-too-long", NUMBER_CODE, "caller_number: too long", caller_number="+33 6 12 34 56 78 90 12 34 56"),
    # (An empty, absent or "anonymous" number is a withheld number: stored, so not in this corpus; so is a
    # number libphonenumber cannot validate, such as "+33 7 00 00 00 01", "+999 612345678" or "4012".)
    field("number-blank-then-junk", NUMBER_CODE, "caller_number: not a phone number", caller_number="  --  "),
    field("number-star-and-hash", NUMBER_CODE, "caller_number: not a phone number", caller_number="*31#0612345678"),
    field("number-plus-inside", NUMBER_CODE, "caller_number: not a phone number", caller_number="06+12 34 56 78"),
    field("number-as-integer", INVALID, "caller_number: Input should be a valid string", caller_number=612345678),
    field("number-over-64-chars", INVALID, "caller_number: String should have at most 64 characters",
          caller_number="06 12 34 56 78 " * 5),
    # The audio payload.
    field("audio-neither-inline-nor-ref", INVALID, "audio: exactly one of inline or ref", audio={}),
    field("audio-both-inline-and-ref", INVALID, "audio: exactly one of inline or ref",
          audio={**_text_b64(b"RIFF"), "ref": REF}),
    field("inline-not-base64", INVALID, "audio.inline: not valid base64", audio={"inline": "not base64!!"}),
    field("inline-mime-base64", INVALID, "audio.inline: not valid base64",
          audio={"inline": base64.encodebytes(tone()).decode()}),
    field("claim-bad-sha256", INVALID, "audio.ref.sha256: String should match pattern",
          audio={"ref": {**REF, "sha256": "XYZ"}}),
    field("claim-size-zero", INVALID, "audio.ref.size: Input should be greater than or equal to 1",
          audio={"ref": {**REF, "size": 0}}),
    field("claim-bucket-invalid", INVALID, "audio.ref.bucket: String should match pattern",
          audio={"ref": {**REF, "bucket": "B_1"}}),
    # Redaction spans: a wrong one could leave a card number audible.
    field("span-reversed", REDACTION, "start_ms must be less than end_ms",
          redactions=[{"start_ms": 2000, "end_ms": 1000}]),
    field("span-empty", REDACTION, "start_ms must be less than end_ms", redactions=[{"start_ms": 5, "end_ms": 5}]),
    field("span-negative", REDACTION, "redactions.0.start_ms: Input should be greater than or equal to 0",
          redactions=[{"start_ms": -100, "end_ms": 10}]),
    field("span-ms-as-string", REDACTION, "redactions.0.start_ms: Input should be a valid integer",
          redactions=[{"start_ms": "10", "end_ms": 20}]),
    field("span-fractional-ms", REDACTION, "redactions.0.start_ms: Input should be a valid integer",
          redactions=[{"start_ms": 1.5, "end_ms": 20}]),
    field("span-over-a-day", REDACTION, "redactions.0.end_ms: Input should be less than or equal to 86400000",
          redactions=[{"start_ms": 0, "end_ms": 10**12}]),
    field("span-missing-end", REDACTION, "redactions.0.end_ms: Field required", redactions=[{"start_ms": 0}]),
    field("spans-over-1000", REDACTION, "redactions: Tuple should have at most 1000 items",
          redactions=[{"start_ms": i, "end_ms": i + 1} for i in range(1001)]),
    field("spans-not-a-list", REDACTION, "redactions: Input should be a valid array",
          redactions={"start_ms": 0, "end_ms": 1}),
    # Valid messages the world refuses: tenant, claim check.
    served("unknown-tenant", Code.UNKNOWN_TENANT, "tenant 'nobody' is not configured", tenant="nobody"),
    served("claim-missing-object", Code.CLAIM_CHECK_FAILED, "missing from the landing bucket",
           ref=_claim(tone(), key="acme/never-uploaded")),
    served("claim-foreign-bucket", Code.CLAIM_CHECK_FAILED, "not the landing bucket",
           ref=_claim(tone(), bucket="some-us-bucket")),
    served("claim-altered", Code.CLAIM_CHECK_FAILED, "does not match the size/SHA-256",
           ref=_claim(tone(), stored=tone()[:-2] + b"\x01\x02", key="acme/altered")),
    served("claim-wrong-size", Code.CLAIM_CHECK_FAILED, "does not match the size/SHA-256",
           ref=_claim(tone(), stored=tone() + b"\0\0", key="acme/longer")),
    served("claim-other-tenant", Code.CLAIM_CHECK_FAILED, "outside tenant 'acme'",
           ref=_claim(tone(), stored=tone(), key="globex/claim")),
    # Sealed envelopes that do not open (tests/integration/test_transit.py seals real ones).
    BadInput("sealed-unknown-key", lambda world: _envelope(key_id="6f0c7f1e-0d6b-4c38-9a55-0b1d8d3e2a10"),
             Code.UNREADABLE_SEAL, "is not a key of tenant acme", Stage.SERVICE),
    BadInput("sealed-malformed", lambda world: _envelope(key_id="not-a-uuid"),
             Code.INVALID_MESSAGE, "malformed sealed envelope", Stage.SERVICE),
    # Audio that is not audio, or not a call.
    served("audio-is-text", Code.UNDECODABLE_AUDIO, "not decodable audio",
           audio=lambda: b"hello world, this is not audio at all"),
    served("audio-random-bytes", Code.UNDECODABLE_AUDIO, "not decodable audio",
           audio=lambda: random.Random(7).randbytes(4000)),
    served("audio-aiff", Code.UNDECODABLE_AUDIO, "not a WAV, MP3, Ogg or FLAC file",
           audio=lambda: transcode(tone(), ["-c:a", "pcm_s16be"], ".aiff")),
    served("wav-sample-rate-zero", Code.UNDECODABLE_AUDIO, "not decodable audio",
           audio=lambda: _patched(tone(), 24, "<I", 0)),
    served("wav-zero-channels", Code.UNDECODABLE_AUDIO, "not decodable audio",
           audio=lambda: _patched(tone(), 22, "<H", 0)),
    served("wav-unknown-codec", Code.UNDECODABLE_AUDIO, "not decodable audio",
           audio=lambda: _patched(tone(), 20, "<H", 0x1234)),
    served("wav-three-channels", Code.UNDECODABLE_AUDIO, "3 audio channels",
           audio=lambda: sine_wav(1.0, 8000, 3, (300, 500, 700))),
    served("wav-sample-rate-1mhz", Code.UNDECODABLE_AUDIO, "a sample rate of 1000000 Hz",
           audio=lambda: _patched(_patched(tone(), 24, "<I", 1_000_000), 28, "<I", 2_000_000)),
    served("wav-sample-rate-100hz", Code.UNDECODABLE_AUDIO, "a sample rate of 100 Hz",
           audio=lambda: _patched(_patched(tone(), 24, "<I", 100), 28, "<I", 200)),
    served("wav-one-sample", Code.EMPTY_AUDIO, "under 100 ms is not a call", audio=lambda: pcm_to_wav(b"\x00\x10")),
    served("wav-cut-by-a-tenth", Code.TRUNCATED_AUDIO, "the file is cut short", audio=lambda: _cut(tone(), 0.9)),
    served("audio-zero-bytes", Code.EMPTY_AUDIO, "the audio is empty (0 bytes)", audio=lambda: b""),
    served("wav-header-only", Code.EMPTY_AUDIO, "the audio decodes to no samples", audio=lambda: pcm_to_wav(b"")),
    served("wav-truncated", Code.TRUNCATED_AUDIO, "the file is cut short", audio=lambda: _cut(tone(), 1 / 3)),
    served("wav-stereo-header-mono-data", Code.TRUNCATED_AUDIO, "the file is cut short",
           audio=lambda: _patched(_patched(tone(), 22, "<H", 2), 32, "<H", 4)),
    served("mp3-truncated", Code.TRUNCATED_AUDIO, "the file is cut short",
           audio=lambda: _cut(encode(tone(), "mp3"), 0.5)),
    served("flac-truncated", Code.TRUNCATED_AUDIO, "the file is cut short",
           audio=lambda: _cut(encode(tone(), "flac"), 0.8)),
    served("ogg-truncated", Code.TRUNCATED_AUDIO, "the Ogg stream has no final page",
           audio=lambda: _cut(encode(tone(), "opus"), 0.5)),
    served("audio-too-long", Code.AUDIO_TOO_LARGE, "lasts over 30000 ms",
           audio=lambda: encode(tone(LIMITS["max_duration_seconds"] + 1), "opus")),
    served("audio-too-many-bytes", Code.AUDIO_TOO_LARGE, f"over the {LIMITS['max_audio_bytes']}-byte cap",
           audio=lambda: tone(20.0)),
    served("span-after-the-audio", REDACTION, "start after the audio ends",
           redactions=[{"start_ms": 5000, "end_ms": 6000}]),
)


def secrets(message: bytes) -> list[str]:
    """What an error header about ``message`` must never show: numbers and audio."""
    found = list(NUMBER_FORMS)
    try:
        value = json.loads(message)
    except (ValueError, RecursionError):
        return found
    if not isinstance(value, dict):
        return found
    number, audio = value.get("caller_number"), value.get("audio")
    if isinstance(number, (str, int)) and len(str(number)) >= 4:
        found.append(str(number))
        digits = "".join(ch for ch in str(number) if ch.isdigit())
        found += [digits] if len(digits) >= 4 else []
    inline = audio.get("inline") if isinstance(audio, dict) else None
    if isinstance(inline, str) and len(inline) >= 16:
        found += [inline[:16], inline[-16:]]
    return found


def leaked(header: str, message: bytes) -> list[str]:
    return [secret for secret in secrets(message) if secret in header]
