"""Sealed messages: nothing a producer puts on Kafka or in the landing bucket is readable there.

A producer seals the whole v1 message (number, agent, spans, inline audio, and for a claim
check the landing object's content key) to the tenant's current ingest public key with HPKE
(RFC 9180, base mode: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM). On the topic::

    {"schema": "callvault.sealed/v1", "tenant": "acme", "key_id": "<uuid>", "sealed": "<base64>"}

The tenant and key id travel in clear (the worker needs them to find the private key) and are
bound into the HPKE ``info``: moving a sealed message to another tenant or key fails to open.
A claim-check object is encrypted with a fresh content key in callvault's framed AES-GCM format
(``storage.crypto``), bound to its tenant and landing key; only the sealed message carries
that key. The dead-letter topic holds an original only as a quarantine record, encrypted under
a key of its own kept in the catalog (``storage.transit.Quarantine``)::

    {"schema": "callvault.quarantine/v1", "id": "<uuid>", "data": "<base64>"}
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from typing import Iterable, Iterator

from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from storage.crypto import DecryptionError, decrypt_bytes, encode_context, encrypt_bytes, encrypt_stream, new_data_key
from storage.transit import PublicIngestKey

from .exceptions import FieldError, InvalidMessage, SealError

SEALED_V1 = "callvault.sealed/v1"
QUARANTINE_V1 = "callvault.quarantine/v1"
SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
_PEEK = 256  # the schema key comes first in every envelope we write


@dataclass(frozen=True)
class Envelope:
    tenant: str
    key_id: uuid.UUID
    sealed: bytes


def _info(tenant: str, key_id: uuid.UUID) -> bytes:
    return encode_context(SEALED_V1, tenant, str(key_id))


def seal(message: bytes, key: PublicIngestKey) -> bytes:
    """A v1 message's bytes sealed to a tenant's ingest key, as the envelope to put on Kafka."""
    sealed = SUITE.encrypt(message, X25519PublicKey.from_public_bytes(key.public_key), info=_info(key.tenant, key.id))
    return json.dumps({"schema": SEALED_V1, "tenant": key.tenant, "key_id": str(key.id),
                       "sealed": base64.b64encode(sealed).decode("ascii")}, separators=(",", ":")).encode()


def _is(raw: bytes, schema: str) -> bool:
    return f'"{schema}"'.encode() in raw[:_PEEK]


def is_sealed(raw: bytes) -> bool:
    return _is(raw, SEALED_V1)


def envelope(raw: bytes) -> Envelope | None:
    """The sealed envelope in ``raw``, or None for a plain v1 message."""
    if not _is(raw, SEALED_V1):
        return None
    try:
        doc = json.loads(raw)
        if set(doc) != {"schema", "tenant", "key_id", "sealed"} or doc["schema"] != SEALED_V1:
            raise ValueError("unexpected keys")
        return Envelope(str(doc["tenant"])[:64], uuid.UUID(doc["key_id"]), base64.b64decode(doc["sealed"],
                                                                                          validate=True))
    except (ValueError, TypeError, KeyError, binascii.Error, AttributeError, RecursionError):
        raise InvalidMessage("malformed sealed envelope", errors=[FieldError(("sealed",), "envelope")]) from None


def open_envelope(env: Envelope, private: X25519PrivateKey) -> bytes:
    try:
        return SUITE.decrypt(env.sealed, private, info=_info(env.tenant, env.key_id))
    except Exception:  # noqa: BLE001 - one answer for a wrong key and tampering (cryptography's InvalidTag)
        raise SealError(f"sealed message does not open with ingest key {env.key_id} of tenant {env.tenant}: "
                        "sealed to another key or tampered with") from None


# --- claim-check objects ---------------------------------------------------------------------

def _landing_aad(tenant: str, key: str) -> bytes:
    return encode_context("callvault/landing/v1", tenant, key)


def encrypt_landing(chunks: Iterable[bytes], *, tenant: str, key: str, length: int) -> tuple[bytes, Iterator[bytes]]:
    """(content key, ciphertext chunks) for a landing object; the key goes only into the sealed message."""
    content_key = new_data_key()
    return content_key, encrypt_stream(chunks, data_key=content_key, aad=_landing_aad(tenant, key),
                                       plaintext_length=length)


def decrypt_landing(blob: bytes, *, content_key: bytes, tenant: str, key: str) -> bytes:
    try:
        return decrypt_bytes(blob, data_key=content_key, aad=_landing_aad(tenant, key))
    except DecryptionError:
        raise SealError("the landing object does not open with the content key in its message") from None


# --- quarantine (dead letters) ---------------------------------------------------------------

def _quarantine_aad(dead_letter_id: uuid.UUID) -> bytes:
    return encode_context(QUARANTINE_V1, str(dead_letter_id))


def quarantine(original: bytes, *, dead_letter_id: uuid.UUID, key: bytes) -> bytes:
    data = encrypt_bytes(original, data_key=key, aad=_quarantine_aad(dead_letter_id))
    return json.dumps({"schema": QUARANTINE_V1, "id": str(dead_letter_id),
                       "data": base64.b64encode(data).decode("ascii")}, separators=(",", ":")).encode()


def quarantine_id(raw: bytes) -> uuid.UUID | None:
    """The dead letter id of a quarantine record, None for anything else (an old plain record)."""
    if not _is(raw, QUARANTINE_V1):
        return None
    try:
        return uuid.UUID(json.loads(raw)["id"])
    except (ValueError, TypeError, KeyError, RecursionError):
        return None


def release(raw: bytes, *, key: bytes) -> bytes:
    """The original bytes of a quarantine record."""
    doc = json.loads(raw)
    dead_letter_id = uuid.UUID(doc["id"])
    return decrypt_bytes(base64.b64decode(doc["data"]), data_key=key, aad=_quarantine_aad(dead_letter_id))
