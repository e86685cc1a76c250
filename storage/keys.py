"""The key hierarchy and crypto-shredding.

    master key (settings, versioned; optionally one per tenant)
      └── caller key: one per caller number per tenant, stored wrapped in ``caller_keys``
            ├── data key: one per stored copy, stored wrapped in ``copies.wrapped_data_key``
            └── the caller's number, sealed in ``recordings.caller_number_sealed``

Destroying a caller key (erasure) deletes its wrapped form from the catalog: every data key
under it and the number sealed by it become unreadable, in every old object version too.
A catalog *backup* still holds the wrapped key; two things reach it: the erasure ledger
(``storage.ledger``), replayed after a restore, destroys the key again; and master-key
rotation (``rotate``) re-wraps every live caller key under a new master, so once the old
master is destroyed every key in an old backup is useless.

Numbers are never stored in clear: lookups use a keyed hash (HMAC-SHA256 under the number-hash
key, by default derived from the master key; pin it with ``number_hash_key`` before a rotation
so hashes survive it).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable, Mapping

import sqlalchemy as sa
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy.dialects import postgresql, sqlite

from core.errors import ConfigurationError

from .catalog import tables as t
from .crypto import DATA_KEY_BYTES, encode_context, new_data_key, seal, unseal, unwrap_key, wrap_key
from .exceptions import KeyDestroyedError
from .settings import StorageSettings

CALLER = "caller"
HOLD = "hold"
TENANT_MASTER = "tenant"  # master_version of keys wrapped by a tenant's own master key


def derive_hash_key(master_key: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"callvault/number-hash/v1").derive(master_key)


def _decode_master(value: str, setting: str) -> bytes:
    try:
        key = base64.b64decode(value, validate=True)
    except ValueError as exc:
        raise ConfigurationError(setting, "is not valid base64") from exc
    if len(key) != DATA_KEY_BYTES:
        raise ConfigurationError(setting, f"must decode to {DATA_KEY_BYTES} bytes, got {len(key)}")
    return key


_JOINED = "ck__"  # the label prefix of a caller key's columns selected with the row it protects


def caller_key_columns() -> list[sa.Label]:
    """The ``caller_keys`` columns, labelled, for a SELECT of a row that outer-joins its caller key
    (``caller_keys.id == <row>.caller_key_id``): the key comes with the row, no second query."""
    return [col.label(f"{_JOINED}{col.name}") for col in t.caller_keys.c]


def joined_caller_key(row: Mapping) -> dict | None:
    """The ``caller_keys`` row inside a row selected with ``caller_key_columns`` (None: no such key)."""
    if row[f"{_JOINED}id"] is None:
        return None
    return {col.name: row[f"{_JOINED}{col.name}"] for col in t.caller_keys.c}


@dataclass(frozen=True)
class CallerKey:
    id: uuid.UUID
    key: bytes


class KeyRing:
    """Creates, unwraps, moves and destroys caller keys; wraps and unwraps data keys; seals numbers."""

    def __init__(self, master_key: bytes, tenant_master_keys: dict[str, bytes] | None = None, *,
                 master_version: str = "1", retired_masters: dict[str, bytes] | None = None,
                 number_hash_key: bytes | None = None) -> None:
        if master_version == TENANT_MASTER or master_version in (retired_masters or {}):
            raise ConfigurationError("CALLVAULT_STORAGE_MASTER_KEY_VERSION",
                                     f"{master_version!r} is reserved or already names a retired master key")
        self._master = master_key
        self.master_version = master_version
        self._masters = {**(retired_masters or {}), master_version: master_key}
        self._tenant_masters = tenant_master_keys or {}
        self.hash_key_pinned = number_hash_key is not None
        self._hash_key = number_hash_key or derive_hash_key(master_key)

    @classmethod
    def from_settings(cls, settings: StorageSettings) -> "KeyRing":
        if settings.master_key is None:
            raise ConfigurationError("CALLVAULT_STORAGE_MASTER_KEY", "is not set",
                                     hint="a base64 32-byte key; `callvault stack up` generates one locally")
        tenants = {tenant: _decode_master(v.get_secret_value(), f"CALLVAULT_STORAGE_TENANT_MASTER_KEYS[{tenant}]")
                   for tenant, v in settings.tenant_master_keys.items()}
        retired = {version: _decode_master(v.get_secret_value(), f"CALLVAULT_STORAGE_RETIRED_MASTER_KEYS[{version}]")
                   for version, v in settings.retired_master_keys.items()}
        hash_key = (_decode_master(settings.number_hash_key.get_secret_value(), "CALLVAULT_STORAGE_NUMBER_HASH_KEY")
                    if settings.number_hash_key is not None else None)
        return cls(_decode_master(settings.master_key.get_secret_value(), "CALLVAULT_STORAGE_MASTER_KEY"), tenants,
                   master_version=settings.master_key_version, retired_masters=retired, number_hash_key=hash_key)

    @property
    def hash_key(self) -> bytes:
        """The number-hash key, for an operator pinning it before a rotation (never logged)."""
        return self._hash_key

    def number_hash(self, tenant: str, e164: str) -> str:
        """Keyed hash of a normalised number within a tenant (suppression list, key lookup)."""
        return hmac.new(self._hash_key, encode_context(tenant, e164), hashlib.sha256).hexdigest()

    def withheld_hash(self, tenant: str, recording_id: uuid.UUID) -> str:
        """The identity of a call whose number was withheld: one per recording, so it gets a key of
        its own (erasure by recording id destroys it) and no number's hash can ever equal it."""
        return hmac.new(self._hash_key, encode_context(tenant, "withheld", str(recording_id)),
                        hashlib.sha256).hexdigest()

    def user_hash(self, user_id: str) -> str:
        """Keyed hash of a user id, for the ledger, which keeps nothing in clear it cannot delete
        (the context's dot keeps it apart from any tenant's number hash)."""
        return hmac.new(self._hash_key, encode_context("callvault.user", user_id), hashlib.sha256).hexdigest()

    def _wrapping_version(self, tenant: str) -> str:
        return TENANT_MASTER if tenant in self._tenant_masters else self.master_version

    def _master_for(self, tenant: str, version: str) -> bytes:
        if version == TENANT_MASTER:
            if tenant not in self._tenant_masters:
                raise KeyDestroyedError(f"tenant {tenant}'s own master key is not configured: its caller keys "
                                        "cannot be unwrapped", hint="set CALLVAULT_STORAGE_TENANT_MASTER_KEYS")
            return self._tenant_masters[tenant]
        if version not in self._masters:
            raise KeyDestroyedError(
                f"this key is wrapped by master key version {version!r}, which is not configured (retired and "
                "destroyed): it is unreadable", hint="a catalog restored from an old backup needs no repair: "
                "what it protects is gone; otherwise add the version to CALLVAULT_STORAGE_RETIRED_MASTER_KEYS")
        return self._masters[version]

    def _unwrap_row(self, row) -> CallerKey:
        key = unwrap_key(row["wrapped_key"], wrapping_key=self._master_for(row["tenant_id"], row["master_version"]),
                         context=self._context(row["tenant_id"], row["id"], row["purpose"]))
        return CallerKey(row["id"], key)

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
            return self._unwrap_row(row)
        if not create:
            raise KeyDestroyedError(f"no live {purpose} key for this number in tenant {tenant}")
        key_id, key = uuid.uuid4(), new_data_key()
        c = t.caller_keys.c
        insert = (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(t.caller_keys).values(
            id=key_id, tenant_id=tenant, number_hash=number_hash, purpose=purpose,
            master_version=self._wrapping_version(tenant),
            wrapped_key=wrap_key(key, wrapping_key=self._master_for(tenant, self._wrapping_version(tenant)),
                                 context=self._context(tenant, key_id, purpose)),
            created_at=datetime.now(timezone.utc))
        # Two first calls from one number at once: one key wins, the other reads it (no savepoint).
        won = conn.execute(insert.on_conflict_do_nothing(
            index_elements=[c.tenant_id, c.number_hash, c.purpose], index_where=c.wrapped_key.is_not(None),
        ).returning(c.id)).first()
        if won is None:
            return self.caller_key(conn, tenant=tenant, number_hash=number_hash, purpose=purpose, create=False)
        return CallerKey(key_id, key)

    def key_by_id(self, conn: sa.Connection, key_id: uuid.UUID) -> CallerKey:
        row = conn.execute(sa.select(t.caller_keys).where(t.caller_keys.c.id == key_id)).mappings().first()
        return self.key_of_row(row, key_id)

    def key_of_row(self, row: Mapping | None, key_id: uuid.UUID) -> CallerKey:
        """The caller key ``key_id`` from its ``caller_keys`` row, already read (``key_by_id``, or
        joined to a copy's row: ``joined_caller_key``); ``KeyDestroyedError`` once erased."""
        if row is None or row["wrapped_key"] is None:
            raise KeyDestroyedError(
                f"the key {key_id} protecting this copy was destroyed (erasure): the audio is unreadable")
        return self._unwrap_row(row)

    def wrap_secret(self, *, tenant: str, purpose: str, key_id: uuid.UUID, secret: bytes) -> tuple[str, bytes]:
        """Wrap a 32-byte key of another kind (an ingest private key, a dead letter's key) under the
        tenant's master key, bound to its purpose and id; returns (master version, wrapped)."""
        version = self._wrapping_version(tenant)
        return version, wrap_key(secret, wrapping_key=self._master_for(tenant, version),
                                 context=encode_context(purpose, tenant, str(key_id)))

    def unwrap_secret(self, *, tenant: str, purpose: str, key_id: uuid.UUID, version: str, wrapped: bytes) -> bytes:
        return unwrap_key(wrapped, wrapping_key=self._master_for(tenant, version),
                          context=encode_context(purpose, tenant, str(key_id)))

    @staticmethod
    def wrap_data_key(caller: CallerKey, data_key: bytes, *, object_key: str) -> bytes:
        return wrap_key(data_key, wrapping_key=caller.key, context=encode_context("data-key", object_key))

    def unwrap_data_key(self, conn: sa.Connection, *, caller_key_id: uuid.UUID, wrapped: bytes,
                        object_key: str, caller: CallerKey | None = None) -> bytes:
        """A copy's data key, under its caller key (read with ``conn`` unless given: ``caller``)."""
        caller = caller or self.key_by_id(conn, caller_key_id)
        return unwrap_key(wrapped, wrapping_key=caller.key, context=encode_context("data-key", object_key))

    @staticmethod
    def destroy_ids(conn: sa.Connection, key_ids: list[uuid.UUID], *, now: datetime) -> int:
        """Crypto-shred keys by id (erasure, ledger replay); already destroyed ones are skipped."""
        destroyed = 0
        for i in range(0, len(key_ids), 1000):
            destroyed += conn.execute(t.caller_keys.update().where(
                t.caller_keys.c.id.in_(key_ids[i:i + 1000]), t.caller_keys.c.wrapped_key.is_not(None),
            ).values(wrapped_key=None, destroyed_at=now)).rowcount
        return destroyed

    # -- moving what a key protects to another key (erasure's hold key, rectification) ----------

    def move_copy(self, conn: sa.Connection, copy: Mapping, to: CallerKey) -> None:
        """Re-wrap a copy's data key under ``to`` (the object itself is not touched)."""
        data_key = self.unwrap_data_key(conn, caller_key_id=copy["caller_key_id"], wrapped=copy["wrapped_data_key"],
                                        object_key=copy["object_key"])
        conn.execute(t.copies.update().where(t.copies.c.id == copy["id"]).values(
            caller_key_id=to.id, wrapped_data_key=self.wrap_data_key(to, data_key, object_key=copy["object_key"])))

    def move_recording(self, conn: sa.Connection, recording: Mapping, to: CallerKey, *, e164: str) -> None:
        """Seal a recording's number (``e164``; "" for withheld) under ``to`` and point it there."""
        conn.execute(t.recordings.update().where(t.recordings.c.id == recording["id"]).values(
            caller_key_id=to.id, caller_number_sealed=self.seal_number(
                to, tenant=recording["tenant_id"], recording_id=recording["id"], e164=e164)))

    # -- the caller's number, sealed under the key of its recording ----------------------------

    @staticmethod
    def _number_context(tenant: str, recording_id: uuid.UUID) -> bytes:
        return encode_context("caller-number", tenant, str(recording_id))

    def seal_number(self, caller: CallerKey, *, tenant: str, recording_id: uuid.UUID, e164: str) -> bytes:
        return seal(e164.encode(), key=caller.key, context=self._number_context(tenant, recording_id))

    def open_number(self, conn: sa.Connection, recording: Mapping) -> str | None:
        """The caller's number of a recording row; None once its key is destroyed."""
        try:
            caller = self.key_by_id(conn, recording["caller_key_id"])
        except KeyDestroyedError:
            return None
        return self._unseal_number(caller, recording)

    def _unseal_number(self, caller: CallerKey, recording: Mapping) -> str:
        return unseal(recording["caller_number_sealed"], key=caller.key,
                      context=self._number_context(recording["tenant_id"], recording["id"])).decode()

    def open_numbers(self, conn: sa.Connection, recordings: list[Mapping]) -> dict[uuid.UUID, str | None]:
        """``open_number`` for a page of recording rows, their keys read in one query: by recording id."""
        ids = sorted({rec["caller_key_id"] for rec in recordings})
        rows = conn.execute(sa.select(t.caller_keys).where(t.caller_keys.c.id.in_(ids))).mappings() if ids else []
        return self.open_numbers_with(rows, recordings)

    def open_numbers_with(self, key_rows: Iterable[Mapping], recordings: list[Mapping]) -> dict[uuid.UUID, str | None]:
        """``open_numbers`` with the keys' rows already read (``caller_keys`` columns; e.g. joined to the
        page in the same statement): each distinct key is unwrapped once, a missing one counts as erased."""
        live: dict[uuid.UUID, CallerKey | None] = {}
        for row in key_rows:
            if row["id"] in live:
                continue
            try:
                live[row["id"]] = self._unwrap_row(row) if row["wrapped_key"] is not None else None
            except KeyDestroyedError:  # its master retired and destroyed: as good as erased
                live[row["id"]] = None
        return {rec["id"]: None if (caller := live.get(rec["caller_key_id"])) is None
                else self._unseal_number(caller, rec) for rec in recordings}

    # -- master-key rotation ---------------------------------------------------------------

    def rotate(self, conn: sa.Connection, *, batch_size: int = 1000) -> int:
        """Re-wrap up to ``batch_size`` live caller keys wrapped by a retired master under the
        current one; returns how many (0: done). Call in a loop, one transaction per batch."""
        rows = conn.execute(sa.select(t.caller_keys).where(
            t.caller_keys.c.wrapped_key.is_not(None), t.caller_keys.c.master_version != TENANT_MASTER,
            t.caller_keys.c.master_version != self.master_version).limit(batch_size)).mappings().all()
        for row in rows:
            key = self._unwrap_row(row).key
            conn.execute(t.caller_keys.update().where(t.caller_keys.c.id == row["id"]).values(
                master_version=self.master_version,
                wrapped_key=wrap_key(key, wrapping_key=self._master, context=self._context(
                    row["tenant_id"], row["id"], row["purpose"]))))
        return len(rows)

    @staticmethod
    def versions_in_use(conn: sa.Connection) -> dict[str, int]:
        """Live caller keys per master version (what still needs each master)."""
        return dict(conn.execute(sa.select(t.caller_keys.c.master_version, sa.func.count()).where(
            t.caller_keys.c.wrapped_key.is_not(None)).group_by(t.caller_keys.c.master_version)).all())
