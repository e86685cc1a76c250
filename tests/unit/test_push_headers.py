"""The HTTP push's audio format comes from the body's Content-Type: one callvault does not take, or
none (curl's default for --data-binary is application/x-www-form-urlencoded), is refused naming
Content-Type, not "audio_format: Field required", a field the integrator never sent."""

from __future__ import annotations

import pytest

from access.api.push_headers import metadata_fields
from ingest.exceptions import InvalidMessage


def test_the_content_type_gives_the_audio_format() -> None:
    fields = metadata_fields({"content-type": "audio/wav; codecs=1", "callvault-agent-id": "a1"}, "acme")
    assert fields["audio_format"] == "wav" and fields["tenant"] == "acme"


@pytest.mark.parametrize("headers, says", [
    ({"content-type": "application/x-www-form-urlencoded"}, "Content-Type 'application/x-www-form-urlencoded'"),
    ({"content-type": "text/plain"}, "Content-Type 'text/plain'"),
    ({}, "no Content-Type"),
])
def test_a_content_type_that_is_no_audio_format_is_named(headers, says) -> None:
    with pytest.raises(InvalidMessage) as refused:
        metadata_fields({"callvault-agent-id": "a1", **headers}, "acme")
    assert says in str(refused.value) and "audio/wav" in str(refused.value)
    assert refused.value.code == "invalid_message"


def test_an_explicit_audio_format_header_needs_no_content_type() -> None:
    assert metadata_fields({"callvault-audio-format": "flac"}, "acme")["audio_format"] == "flac"
