"""Sealing invariants (``ingest.sealing``), property-based: whatever the call, nothing of its
number or audio is in the bytes that travel; only the tenant's own live key opens them; a
sealed message, landing object or dead letter moved to another tenant, key or id does not open.

Pure (no catalog): the keys are made here as ``storage.transit`` makes them. Hypothesis prints
the falsifying example and its reproduction blob on failure.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest import sealing
from ingest.exceptions import InvalidMessage, SealError
from ingest.schema import build_message, parse_message
from storage.crypto import DecryptionError, new_data_key
from storage.transit import PublicIngestKey

NOW = datetime(2026, 11, 25, 12, tzinfo=timezone.utc)
SETTINGS = settings(max_examples=150, deadline=None, print_blob=True)

tenants = st.from_regex(r"[a-z][a-z0-9-]{0,20}[a-z0-9]", fullmatch=True)
french_mobiles = st.integers(0, 99999).map(lambda n: f"+336123{n:05d}")
audio = st.binary(min_size=64, max_size=4096)


def key_pair(tenant: str) -> tuple[X25519PrivateKey, PublicIngestKey]:
    private = X25519PrivateKey.generate()
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return private, PublicIngestKey(tenant, uuid.uuid4(), public, NOW + timedelta(days=1))


def message(tenant: str, number: str, data: bytes, spans: list[tuple[int, int]]) -> bytes:
    return build_message(recording_id=f"cv-{uuid.uuid4()}", tenant=tenant, started_at=NOW, caller_number=number,
                         agent_id="agent-1", audio=data, audio_format="wav", redactions=spans).to_bytes()


def written_forms(e164: str) -> list[str]:
    national = "0" + e164[3:]
    return [e164, e164[1:], national, national[1:]]


def visible(wire: bytes, number: str, data: bytes) -> list[str]:
    """Anything of the number or of the audio in the wire bytes, or in a base64 string in them."""
    parts = [wire]
    for value in json.loads(wire).values():
        try:
            parts.append(base64.b64decode(value, validate=True))
        except Exception:  # noqa: BLE001 - not base64: already searched as text
            pass
    found = []
    for part in parts:
        found += [f for f in written_forms(number) if f.encode() in part]
        found += ["audio"] * any(data[i:i + 16] in part for i in range(0, len(data) - 16, 16))
        found += ["audio (base64)"] * (base64.b64encode(data)[:24] in part)
    return found


@SETTINGS
@given(tenant=tenants, number=french_mobiles, data=audio,
       spans=st.lists(st.tuples(st.integers(0, 5000), st.integers(1, 5000)).map(lambda p: (p[0], p[0] + p[1])),
                      max_size=3))
def test_a_sealed_message_shows_nothing_and_opens_only_with_its_tenants_key(tenant, number, data, spans):
    private, public = key_pair(tenant)
    plain = message(tenant, number, data, spans)
    wire = sealing.seal(plain, public)
    assert visible(wire, number, data) == []
    env = sealing.envelope(wire)
    assert (env.tenant, env.key_id) == (tenant, public.id)
    assert sealing.open_envelope(env, private) == plain
    assert parse_message(sealing.open_envelope(env, private)).caller_number == number

    other_private, _ = key_pair(tenant)
    with pytest.raises(SealError):
        sealing.open_envelope(env, other_private)  # another key of the same tenant
    with pytest.raises(SealError):
        sealing.open_envelope(sealing.Envelope(tenant + "x", env.key_id, env.sealed), private)  # moved tenant
    with pytest.raises(SealError):
        sealing.open_envelope(sealing.Envelope(tenant, uuid.uuid4(), env.sealed), private)  # relabelled key
    flipped = bytearray(env.sealed)
    flipped[len(flipped) // 2] ^= 1
    with pytest.raises(SealError):
        sealing.open_envelope(sealing.Envelope(tenant, env.key_id, bytes(flipped)), private)


@SETTINGS
@given(tenant=tenants, data=st.binary(min_size=1, max_size=200_000), name=st.uuids())
def test_a_landing_object_opens_only_with_its_content_key_tenant_and_name(tenant, data, name):
    key = f"{tenant}/{name}"
    content_key, chunks = sealing.encrypt_landing([data], tenant=tenant, key=key, length=len(data))
    blob = b"".join(chunks)
    assert data[:32] not in blob or len(data) < 32
    assert sealing.decrypt_landing(blob, content_key=content_key, tenant=tenant, key=key) == data
    for wrong in ({"content_key": new_data_key(), "tenant": tenant, "key": key},
                  {"content_key": content_key, "tenant": tenant + "x", "key": key},
                  {"content_key": content_key, "tenant": tenant, "key": key + "x"}):
        with pytest.raises(SealError):
            sealing.decrypt_landing(blob, **wrong)


@SETTINGS
@given(original=st.binary(max_size=20_000))
def test_a_dead_letter_opens_only_with_its_own_key(original):
    dead_letter_id, key = uuid.uuid4(), new_data_key()
    record = sealing.quarantine(original, dead_letter_id=dead_letter_id, key=key)
    assert sealing.quarantine_id(record) == dead_letter_id
    assert len(original) < 16 or original[:16] not in record
    assert sealing.release(record, key=key) == original
    with pytest.raises(DecryptionError):
        sealing.release(record, key=new_data_key())
    moved = json.loads(record) | {"id": str(uuid.uuid4())}  # another dead letter's id: its key would not open it
    with pytest.raises(DecryptionError):
        sealing.release(json.dumps(moved).encode(), key=key)


@pytest.mark.parametrize("raw", [
    b'{"schema":"callvault.sealed/v1"}',
    b'{"schema":"callvault.sealed/v1","tenant":"acme","key_id":"x","sealed":"AA=="}',
    b'{"schema":"callvault.sealed/v1","tenant":"acme","key_id":"6f0c7f1e-0d6b-4c38-9a55-0b1d8d3e2a10","sealed":"**"}',
    b'{"schema":"callvault.sealed/v1","tenant":"acme","key_id":"6f0c7f1e-0d6b-4c38-9a55-0b1d8d3e2a10",'
    b'"sealed":"AA==","extra":1}',
    b'["callvault.sealed/v1"]',
])
def test_a_malformed_envelope_is_an_invalid_message(raw):
    with pytest.raises(InvalidMessage, match="malformed sealed envelope"):
        sealing.envelope(raw)


def test_a_plain_message_is_no_envelope():
    assert sealing.envelope(message("acme", "+33612345678", b"x" * 100, [])) is None


def test_an_envelope_nested_past_the_json_parser_is_malformed_not_a_bug() -> None:
    """A third-party producer's message naming the sealed schema and nesting 100,000 deep: refused as a
    malformed envelope (invalid_message), not a RecursionError retried as a bug (internal_error)."""
    from ingest.exceptions import InvalidMessage
    from ingest.sealing import envelope, quarantine_id

    deep = b'{"schema": "callvault.sealed/v1", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(InvalidMessage, match="malformed sealed envelope"):
        envelope(deep)
    assert quarantine_id(deep.replace(b"callvault.sealed/v1", b"callvault.quarantine/v1")) is None
