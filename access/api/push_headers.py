"""The metadata of a pushed call, from its ``Callvault-*`` headers (``views.push``).

Each header is a field of message schema v1 (``Callvault-Recording-Id`` → ``recording_id``);
``Callvault-Redactions`` is ``START_MS-END_MS`` spans separated by commas or spaces; the audio
format is ``Callvault-Audio-Format`` or the body's ``Content-Type``. The fields go to the
schema as they are, so an unknown ``Callvault-*`` header is refused like an unknown key of a
Kafka message (a misspelt ``Callvault-Redaction`` must not drop the payment spans). Values are
never echoed back: the schema's errors name fields and error types only.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from core.errors import FieldError
from ingest.exceptions import InvalidMessage

from ..exceptions import BadRequest
from ..policy import ALL_TENANTS, User

PREFIX = "callvault-"
CONTENT_TYPES = {"audio/wav": "wav", "audio/x-wav": "wav", "audio/wave": "wav", "audio/vnd.wave": "wav",
                 "audio/mpeg": "mp3", "audio/mp3": "mp3", "audio/ogg": "ogg", "audio/opus": "opus",
                 "audio/flac": "flac", "audio/x-flac": "flac"}
_SPAN = re.compile(r"^(\d{1,9})-(\d{1,9})$")


def tenant_of(headers: Mapping[str, str], user: User) -> str:
    """``Callvault-Tenant``, or the user's one tenant."""
    named = headers.get(f"{PREFIX}tenant")
    if named:
        return named
    mine = sorted(user.tenants - {ALL_TENANTS})
    if len(mine) == 1 and ALL_TENANTS not in user.tenants:
        return mine[0]
    raise BadRequest("say which tenant the call is of: Callvault-Tenant (or ?tenant= for a status)",
                     hint="a token of one tenant may leave it out")


def _spans(value: str) -> list[Any]:
    spans: list[Any] = []
    for item in filter(None, re.split(r"[,\s]+", value.strip())):
        match = _SPAN.match(item)
        # A malformed span goes to the schema as it is, which refuses it (invalid_redaction).
        spans.append({"start_ms": int(match[1]), "end_ms": int(match[2])} if match else {"start_ms": item})
    return spans


def metadata_fields(headers: Mapping[str, str], tenant: str) -> dict[str, Any]:
    """The message's fields (all but ``schema`` and ``audio``), as JSON values."""
    fields: dict[str, Any] = {"direction": "inbound"}
    for name, value in headers.items():
        name = name.lower()
        if name.startswith(PREFIX) and name != f"{PREFIX}tenant":
            fields[name[len(PREFIX):].replace("-", "_")] = value
    if "redactions" in fields:
        fields["redactions"] = _spans(fields["redactions"])
    if "audio_format" not in fields:
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in CONTENT_TYPES:  # named: "audio_format: Field required" names no header sent
            said = f"Content-Type {content_type[:100]!r} is no audio format" if content_type else "no Content-Type"
            raise InvalidMessage(f"{said}: the body's Content-Type says its audio format",
                                 errors=[FieldError(("audio_format",), "missing")],
                                 hint="one of audio/wav, audio/mpeg, audio/ogg, audio/opus, audio/flac "
                                      "(curl: -H 'Content-Type: audio/wav')")
        fields["audio_format"] = CONTENT_TYPES[content_type]
    return {**fields, "tenant": tenant}
