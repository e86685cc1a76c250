"""Errors of the ingest package; each ``code`` is the reason code on the dead-letter topic.

    CallvaultError
    └── IngestError                      ingest_error
        ├── InvalidMessage               invalid_message     the message is not a valid v1 message
        │   ├── UnsupportedSchema        unsupported_schema  a ``schema`` we do not speak (v2, typo...)
        │   ├── InvalidNumber            invalid_number      the caller number is not a phone number
        │   └── InvalidRedaction         invalid_redaction   a redaction span is malformed or outside the audio
        ├── UnknownTenant                unknown_tenant      the tenant is not configured in callvault
        ├── TenantMismatch               tenant_mismatch     on a per-tenant topic, the message names another tenant
        ├── RecordingConflict            recording_conflict  same recording id, different audio or spans
        ├── ClaimCheckError              claim_check_failed  the landing object is missing, elsewhere, of another
        │                                                    tenant, or altered
        ├── SealError                    unreadable_seal     a sealed message or landing object does not open: a key
        │                                                    unknown, of another tenant or destroyed, or tampering
        └── AudioError                   audio_error
            ├── UndecodableAudio         undecodable_audio   ffmpeg cannot read it (not audio, corrupt)
            │   └── TruncatedAudio       truncated_audio     it decodes, but the file is cut short
            ├── EmptyAudio               empty_audio         no bytes, or no samples once decoded
            ├── AudioTooLarge            audio_too_large     over the byte or duration cap
            └── AudioEncodingFailed      encoding_failed     *we* could not encode it (ffmpeg/codec
                                                             problem on this host, not the message's fault)
    └── KafkaAccessError                 kafka_access        a Kafka listener refused us (credentials, TLS,
                                                             ACLs); not about a message, never dead-lettered

Every error except ``AudioEncodingFailed`` is the sender's fault: the worker dead-letters the
message and moves on.  ``AudioEncodingFailed`` means this host is broken, so retrying (or
stopping) is right and dead-lettering would lose good calls.

Messages are shown to operators and written to the DLQ, so they never contain the phone
number, the audio or other values taken from the message: only field paths, error types,
and facts we computed (durations, sizes).
"""

from __future__ import annotations

from enum import StrEnum

from core.errors import CallvaultError, FieldError, InvalidInput
from core.errors import InvalidNumber as NumberError

__all__ = ["FieldError"]  # re-exported: the schema and audio modules name their problems with it


class IngestErrorCode(StrEnum):
    """The stable reason codes (DLQ header, metrics label); never rename one."""

    INGEST_ERROR = "ingest_error"
    INVALID_MESSAGE = "invalid_message"
    UNSUPPORTED_SCHEMA = "unsupported_schema"
    INVALID_NUMBER = "invalid_number"
    INVALID_REDACTION = "invalid_redaction"
    AUDIO_ERROR = "audio_error"
    UNDECODABLE_AUDIO = "undecodable_audio"
    TRUNCATED_AUDIO = "truncated_audio"
    EMPTY_AUDIO = "empty_audio"
    AUDIO_TOO_LARGE = "audio_too_large"
    ENCODING_FAILED = "encoding_failed"
    UNKNOWN_TENANT = "unknown_tenant"
    TENANT_MISMATCH = "tenant_mismatch"  # per-tenant topic: the tenant is the topic's, not the body's
    RECORDING_CONFLICT = "recording_conflict"
    CLAIM_CHECK_FAILED = "claim_check_failed"
    INTERNAL_ERROR = "internal_error"
    WORKER_CRASH = "worker_crash"  # the message killed the worker (out of memory, SIGKILL) too often
    UNREADABLE_SEAL = "unreadable_seal"


class IngestError(CallvaultError):
    code = IngestErrorCode.INGEST_ERROR


class InvalidMessage(IngestError, InvalidInput):
    """The message fails validation; ``errors`` lists every field problem found."""

    code = IngestErrorCode.INVALID_MESSAGE


class UnsupportedSchema(InvalidMessage):
    code = IngestErrorCode.UNSUPPORTED_SCHEMA


class InvalidNumber(InvalidMessage, NumberError):
    code = IngestErrorCode.INVALID_NUMBER


class InvalidRedaction(InvalidMessage):
    code = IngestErrorCode.INVALID_REDACTION


class AudioError(IngestError):
    code = IngestErrorCode.AUDIO_ERROR


class UndecodableAudio(AudioError):
    code = IngestErrorCode.UNDECODABLE_AUDIO


class TruncatedAudio(UndecodableAudio):
    code = IngestErrorCode.TRUNCATED_AUDIO


class EmptyAudio(AudioError):
    code = IngestErrorCode.EMPTY_AUDIO


class AudioTooLarge(AudioError):
    code = IngestErrorCode.AUDIO_TOO_LARGE


class AudioEncodingFailed(AudioError):
    code = IngestErrorCode.ENCODING_FAILED


class UnknownTenant(IngestError):
    code = IngestErrorCode.UNKNOWN_TENANT


class TenantMismatch(IngestError):
    """The broker authorized the producer for its topic's tenant only: a body naming another
    tenant is refused, never stored under either."""

    code = IngestErrorCode.TENANT_MISMATCH


class KafkaAccessError(CallvaultError):
    """A Kafka listener refused to connect, authenticate or authorize us (names the listener)."""

    code = "kafka_access"


class RecordingConflict(IngestError):
    code = IngestErrorCode.RECORDING_CONFLICT


class ClaimCheckError(IngestError):
    code = IngestErrorCode.CLAIM_CHECK_FAILED


class SealError(IngestError):
    code = IngestErrorCode.UNREADABLE_SEAL
