"""The key hierarchy and crypto-shredding.

    master key (settings; optionally one per tenant)
      └── caller key: one per caller number per tenant, stored wrapped in ``caller_keys``
            └── data key: one per stored copy, stored wrapped in ``copies.wrapped_data_key``

Destroying a caller key (erasure) deletes its wrapped form from the catalog: every data key
under it, and so every copy, old object version and backup of that caller's calls, becomes
unreadable. Numbers are never stored in this table: lookups use a keyed hash (HMAC-SHA256
under a key derived from the master key), so the table alone does not reveal who called.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

import sqlalchemy as sa
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from callvault.errors import ConfigurationError

from .catalog import tables as t
from .crypto import DATA_KEY_BYTES, encode_context, new_data_key, unwrap_key, wrap_key
from .exceptions import KeyDestroyedError
from .settings import StorageSettings

CALLER = "caller"
HOLD = "hold"


def _decode_master(value: str, setting: str) -> bytes:
    try:
        key = base64.b64decode(value, validate=True)
    except ValueError as exc:
        raise ConfigurationError(setting, "is not valid base64") from exc
    if len(key) != DATA_KEY_BYTES:
        raise ConfigurationError(setting, f"must decode to {DATA_KEY_BYTES} bytes, got {len(key)}")
    return key


@dataclass(frozen=True)
class CallerKey:
    id: uuid.UUID
    key: bytes


class KeyRing:
    """Creates, unwraps and destroys caller keys; wraps and unwraps data keys."""

    def __init__(self, master_key: bytes, tenant_master_keys: dict[str, bytes] | None = None) -> None:
        self._master = master_key
        self._tenant_masters = tenant_master_keys or {}
        self._hash_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                              info=b"callvault/number-hash/v1").derive(master_key)

    @classmethod
    def from_settings(cls, settings: StorageSettings) -> "KeyRing":
        if settings.master_key is None:
            raise ConfigurationError("CALLVAULT_STORAGE_MASTER_KEY", "is not set",
                                     hint="a base64 32-byte key; `callvault stack up` generates one locally")
        tenants = {tenant: _decode_master(v.get_secret_value(), f"CALLVAULT_STORAGE_TENANT_MASTER_KEYS[{tenant}]")
                   for tenant, v in settings.tenant_master_keys.items()}
        return cls(_decode_master(settings.master_key.get_secret_value(), "CALLVAULT_STORAGE_MASTER_KEY"), tenants)

    def number_hash(self, tenant: str, e164: str) -> str:
        """Keyed hash of a normalised number within a tenant (suppression list, key lookup)."""
        return hmac.new(self._hash_key, encode_context(tenant, e164), hashlib.sha256).hexdigest()

    def _master_for(self, tenant: str) -> bytes:
        return self._tenant_masters.get(tenant, self._master)

    @staticmethod
    def _context(tenant: str, key_id: uuid.UUID, purpose: str) -> bytes:
        return encode_context("caller-key", tenant, str(key_id), purpose)

    def caller_key(self, conn: sa.Connection, *, tenant: str, number_hash: str, purpose: str = CALLER,
                   create: bool = True) -> CallerKey:
        """The live key of a caller (or of a hold), created on first use.

        After an erasure the old key stays destroyed; a later call from the same number
        (one that was erased but did not object) gets a fresh key.
        """
        row = conn.execute(sa.select(t.caller_keys).where(
            t.caller_keys.c.tenant_id == tenant, t.caller_keys.c.number_hash == number_hash,
            t.caller_keys.c.purpose == purpose, t.caller_keys.c.wrapped_key.is_not(None))).mappings().first()
        if row is not None:
            return CallerKey(row["id"], unwrap_key(row["wrapped_key"], wrapping_key=self._master_for(tenant),
                                                   context=self._context(tenant, row["id"], purpose)))
        if not create:
            raise KeyDestroyedError(f"no live {purpose} key for this number in tenant {tenant}")
        key_id, key = uuid.uuid4(), new_data_key()
        try:
            with conn.begin_nested():  # two first calls from one number at once: one key wins
                conn.execute(t.caller_keys.insert().values(
                    id=key_id, tenant_id=tenant, number_hash=number_hash, purpose=purpose,
                    wrapped_key=wrap_key(key, wrapping_key=self._master_for(tenant),
                                         context=self._context(tenant, key_id, purpose)),
                    created_at=datetime.now(timezone.utc)))
        except sa.exc.IntegrityError:
            return self.caller_key(conn, tenant=tenant, number_hash=number_hash, purpose=purpose, create=False)
        return CallerKey(key_id, key)

    def key_by_id(self, conn: sa.Connection, key_id: uuid.UUID) -> CallerKey:
        row = conn.execute(sa.select(t.caller_keys).where(t.caller_keys.c.id == key_id)).mappings().first()
        if row is None or row["wrapped_key"] is None:
            raise KeyDestroyedError(
                f"the key {key_id} protecting this copy was destroyed (erasure): the audio is unreadable")
        return CallerKey(key_id, unwrap_key(row["wrapped_key"], wrapping_key=self._master_for(row["tenant_id"]),
                                            context=self._context(row["tenant_id"], key_id, row["purpose"])))

    @staticmethod
    def wrap_data_key(caller: CallerKey, data_key: bytes, *, object_key: str) -> bytes:
        return wrap_key(data_key, wrapping_key=caller.key, context=encode_context("data-key", object_key))

    def unwrap_data_key(self, conn: sa.Connection, *, caller_key_id: uuid.UUID, wrapped: bytes,
                        object_key: str) -> bytes:
        caller = self.key_by_id(conn, caller_key_id)
        return unwrap_key(wrapped, wrapping_key=caller.key, context=encode_context("data-key", object_key))

    @staticmethod
    def destroy(conn: sa.Connection, *, tenant: str, number_hash: str, purpose: str = CALLER) -> int:
        """Crypto-shred: forget the wrapped caller key. Returns 1 if a live key was destroyed."""
        result = conn.execute(t.caller_keys.update().where(
            t.caller_keys.c.tenant_id == tenant, t.caller_keys.c.number_hash == number_hash,
            t.caller_keys.c.purpose == purpose, t.caller_keys.c.wrapped_key.is_not(None),
        ).values(wrapped_key=None, destroyed_at=datetime.now(timezone.utc)))
        return result.rowcount
