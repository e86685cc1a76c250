"""Keys for data in transit: per-tenant ingest key pairs, and the quarantine of dead letters.

What telephony hands over crosses Kafka and the landing bucket, where callvault cannot erase
a single record: a topic keeps whole log segments until its retention passes. So nothing
crosses them readable. Two kinds of keys make that hold, both kept here, wrapped by the
(tenant's) master key like caller keys:

- **ingest keys**: an X25519 key pair per tenant, used for ``use_until`` (a day by default),
  then replaced. Producers seal each message to the current public key (HPKE, ``ingest.sealing``).
  The private key is destroyed at ``destroy_after``: once the recordings topic's retention has
  passed for the last message sealed to it, so no log segment or landing object outlives it.
- **dead-letter keys**: a random key per dead letter. The dead-letter topic holds the original
  only encrypted under it; the row carries the keyed hash of the caller's number, so erasing a
  number deletes its dead letters' keys (they are unreadable from then on, wherever the topic's
  segments went), and every key goes when the quarantine's retention has passed.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from core.errors import CallvaultError

from .catalog import tables as t
from .crypto import new_data_key
from .exceptions import KeyDestroyedError
from .keys import KeyRing

INGEST = "ingest-key"
DEAD_LETTER = "dead-letter-key"
_RAW = (Encoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True)
class PublicIngestKey:
    tenant: str
    id: uuid.UUID
    public_key: bytes  # raw X25519, 32 bytes
    use_until: datetime

    def to_json(self) -> dict:
        return {"tenant": self.tenant, "key_id": str(self.id), "kem": "X25519",
                "public_key": base64.b64encode(self.public_key).decode(), "use_until": self.use_until.isoformat()}


class IngestKeys:
    """Creates, finds, opens and destroys ingest key pairs."""

    def __init__(self, keys: KeyRing, *, lifetime: timedelta = timedelta(days=1),
                 keep_after_use: timedelta = timedelta(days=4)) -> None:
        self.keys = keys
        self.lifetime = lifetime              # how long producers seal to one key
        self.keep_after_use = keep_after_use  # the recordings topic's retention, plus a margin

    def current(self, conn: sa.Connection, tenant: str, *, now: datetime) -> PublicIngestKey:
        """The key producers should seal to now: the newest one with at least a quarter of its
        life left, or a new one (so producers never pick a key about to stop being used)."""
        if conn.execute(sa.select(t.tenants.c.id).where(t.tenants.c.id == tenant)).first() is None:
            raise CallvaultError(f"tenant {tenant!r} is not configured: there is no ingest key to seal its calls to",
                                 hint="add it with `callvault tenants add`, or check the tenant slug")
        fresh_until = now + self.lifetime / 4
        row = conn.execute(sa.select(t.ingest_keys).where(
            t.ingest_keys.c.tenant_id == tenant, t.ingest_keys.c.use_until > fresh_until,
            t.ingest_keys.c.wrapped_key.is_not(None)).order_by(t.ingest_keys.c.use_until.desc())).mappings().first()
        if row is not None:
            return PublicIngestKey(tenant, row["id"], row["public_key"], row["use_until"])
        private = X25519PrivateKey.generate()
        key_id = uuid.uuid4()
        version, wrapped = self.keys.wrap_secret(tenant=tenant, purpose=INGEST, key_id=key_id,
                                                 secret=private.private_bytes(Encoding.Raw, PrivateFormat.Raw,
                                                                              NoEncryption()))
        public = private.public_key().public_bytes(*_RAW)
        use_until = now + self.lifetime
        conn.execute(t.ingest_keys.insert().values(
            id=key_id, tenant_id=tenant, public_key=public, wrapped_key=wrapped, master_version=version,
            created_at=now, use_until=use_until, destroy_after=use_until + self.keep_after_use))
        return PublicIngestKey(tenant, key_id, public, use_until)

    def private(self, conn: sa.Connection, tenant: str, key_id: uuid.UUID) -> X25519PrivateKey:
        """The private key a message names; KeyDestroyedError when it is unknown, of another
        tenant, or destroyed (its messages are past retention: unreadable by design)."""
        row = conn.execute(sa.select(t.ingest_keys).where(t.ingest_keys.c.id == key_id)).mappings().first()
        if row is None or row["tenant_id"] != tenant:
            raise KeyDestroyedError(f"ingest key {key_id} is not a key of tenant {tenant}")
        if row["wrapped_key"] is None:
            raise KeyDestroyedError(f"ingest key {key_id} was destroyed: its messages are past retention")
        raw = self.keys.unwrap_secret(tenant=tenant, purpose=INGEST, key_id=key_id, version=row["master_version"],
                                      wrapped=row["wrapped_key"])
        return X25519PrivateKey.from_private_bytes(raw)

    @staticmethod
    def destroy_expired(conn: sa.Connection, *, now: datetime) -> int:
        return conn.execute(t.ingest_keys.update().where(
            t.ingest_keys.c.destroy_after <= now, t.ingest_keys.c.wrapped_key.is_not(None),
        ).values(wrapped_key=None, destroyed_at=now)).rowcount

    @staticmethod
    def public_key(raw: bytes) -> X25519PublicKey:
        return X25519PublicKey.from_public_bytes(raw)


@dataclass(frozen=True)
class DeadLetterKey:
    id: uuid.UUID
    key: bytes


class Quarantine:
    """Keys of dead letters: one per dead letter, found by id, purged by number or by age."""

    def __init__(self, keys: KeyRing, *, retention: timedelta = timedelta(days=7)) -> None:
        self.keys = keys
        self.retention = retention

    def new(self, conn: sa.Connection, *, reason: str, now: datetime, tenant: str | None = None,
            number_hash: str | None = None, recording_id: uuid.UUID | None = None) -> DeadLetterKey:
        key_id, key = uuid.uuid4(), new_data_key()
        version, wrapped = self.keys.wrap_secret(tenant=tenant or "", purpose=DEAD_LETTER, key_id=key_id, secret=key)
        conn.execute(t.dead_letters.insert().values(
            id=key_id, tenant_id=tenant, number_hash=number_hash, recording_id=recording_id, reason=reason,
            wrapped_key=wrapped, master_version=version, created_at=now, expires_at=now + self.retention))
        return DeadLetterKey(key_id, key)

    def key(self, conn: sa.Connection, key_id: uuid.UUID) -> DeadLetterKey:
        row = conn.execute(sa.select(t.dead_letters).where(t.dead_letters.c.id == key_id)).mappings().first()
        if row is None:
            raise KeyDestroyedError(f"dead letter {key_id} was purged (erasure of its caller, or past the "
                                    "quarantine's retention): it is unreadable")
        return DeadLetterKey(key_id, self.keys.unwrap_secret(
            tenant=row["tenant_id"] or "", purpose=DEAD_LETTER, key_id=key_id, version=row["master_version"],
            wrapped=row["wrapped_key"]))

    def key_or_none(self, conn: sa.Connection, key_id: uuid.UUID) -> bytes | None:
        """The key that releases a dead letter; None once purged (what ``ingest.dlq.read`` asks)."""
        try:
            return self.key(conn, key_id).key
        except KeyDestroyedError:
            return None

    @staticmethod
    def purge(conn: sa.Connection, *, tenant: str, number_hashes: list[str] = (),
              recording_ids: list[uuid.UUID] = ()) -> int:
        """Erasure: the dead letters of these numbers (or recordings) become unreadable."""
        match = []
        if number_hashes:
            match.append(t.dead_letters.c.number_hash.in_(list(number_hashes)))
        if recording_ids:
            match.append(t.dead_letters.c.recording_id.in_(list(recording_ids)))
        if not match:
            return 0
        return conn.execute(t.dead_letters.delete().where(t.dead_letters.c.tenant_id == tenant,
                                                          sa.or_(*match))).rowcount

    @staticmethod
    def expire(conn: sa.Connection, *, now: datetime) -> int:
        return conn.execute(t.dead_letters.delete().where(t.dead_letters.c.expires_at <= now)).rowcount
