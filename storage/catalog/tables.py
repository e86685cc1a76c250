"""The catalog schema as SQLAlchemy Core tables on one ``MetaData``.

Core tables, not declarative classes, so the domain (``lifecycle``, ``access``) stays plain
Python: services read and write rows through these tables and map them to dataclasses.

    tenants ──┬── tenant_retention          per-tier retention overrides (months)
              ├── caller_keys               one live key per (number hash, purpose)
              ├── suppressions              objections: numbers never to store (hashed)
              ├── restrictions              numbers whose restriction stands (hashed): their
              │                             recordings, later ones too, are restricted
              ├── erasures                  what erasures reached (numbers hashed, recording ids):
              │                             a call they cover, arriving late, is never stored
              └── recordings ── copies      a copy dies with its recording (ON DELETE CASCADE)
    users ──┬── team_memberships
            └── break_glass                 time-limited, ticketed playback grants
    ledger_cursors                          where the next ledger replay starts, per journal
    audit_events                            append-only, hash-chained trail (tenant_id: no FK,
                                            entries outlive their tenant)
    pushes                                  calls handed over by the HTTP push endpoint or the S3
                                            drop: what their ingest status answers

Conventions: ids are ``Uuid`` (native on PostgreSQL, CHAR(32) on SQLite) except tenants and
users, which are slugs; timestamps are aware UTC (``UTCDateTime``); enums are VARCHAR + CHECK;
phone numbers never appear in clear: ``recordings.caller_number_sealed`` is the number
encrypted under the recording's caller key (gone with it on erasure, also in a restored
backup once the erasure ledger is replayed), and every lookup by number goes through the
keyed ``number_hash``. A change here needs a migration in
``storage/migrations/versions`` (the migration test compares the two).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Iterable

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from core.vocabulary import Direction, Door, Outcome, PushOutcome, Relation, Role, Tier

KEY_PURPOSES = ("caller", "hold")

ENUM_LENGTH = 32
HASH = sa.String(64)  # hex SHA-256 / HMAC-SHA256

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """``TIMESTAMP WITH TIME ZONE`` that refuses naive datetimes and returns aware UTC ones,
    also on SQLite (which stores them without a zone)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the catalog stores aware UTC timestamps only")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def string_enum(name: str, values: Iterable[str]) -> sa.Enum:
    """VARCHAR + CHECK named ``ck_<table>_<name>``: portable, and a new value is a migration
    of one constraint rather than an ``ALTER TYPE``."""
    return sa.Enum(*(str(v) for v in values), name=name, native_enum=False, create_constraint=True,
                   validate_strings=True, length=ENUM_LENGTH)


def json_type() -> sa.types.TypeEngine[Any]:
    """JSON everywhere, ``jsonb`` on PostgreSQL (comparable, indexable)."""
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _tenant_fk(**kw: Any) -> sa.Column[Any]:
    return sa.Column("tenant_id", sa.String(64), sa.ForeignKey("tenants.id"), nullable=False, **kw)


tenants = sa.Table(
    "tenants", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)

tenant_retention = sa.Table(
    "tenant_retention", metadata,
    sa.Column("tenant_id", sa.String(64), sa.ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("tier", string_enum("tier", Tier), primary_key=True),
    sa.Column("months", sa.Integer, nullable=False),
    sa.CheckConstraint("months > 0", name="months_positive"),
)

caller_keys = sa.Table(
    "caller_keys", metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    _tenant_fk(),
    sa.Column("number_hash", HASH, nullable=False),
    sa.Column("purpose", string_enum("purpose", KEY_PURPOSES), nullable=False,
              default="caller", server_default="caller"),
    # The caller key wrapped by the (tenant's) master key; NULL once destroyed (crypto-shred).
    sa.Column("wrapped_key", sa.LargeBinary, nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("destroyed_at", UTCDateTime(), nullable=True),
    # Which master key wraps it ("tenant": the tenant's own); rotation re-wraps and updates it.
    sa.Column("master_version", sa.String(64), nullable=False, default="1", server_default="1"),
    sa.CheckConstraint("(wrapped_key IS NULL) = (destroyed_at IS NOT NULL)", name="destroyed_means_no_key"),
)
# One *live* key per number and purpose: after an erasure the destroyed row stays (copies and
# backups still point at it) and a later call from the same number gets a fresh key.
sa.Index("uq_caller_keys_live", caller_keys.c.tenant_id, caller_keys.c.number_hash, caller_keys.c.purpose,
         unique=True, postgresql_where=caller_keys.c.wrapped_key.is_not(None),
         sqlite_where=caller_keys.c.wrapped_key.is_not(None))

recordings = sa.Table(
    "recordings", metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    _tenant_fk(),
    sa.Column("external_id", sa.String(200), nullable=False),  # the telephony recording id
    sa.Column("started_at", UTCDateTime(), nullable=False),
    sa.Column("direction", string_enum("direction", Direction), nullable=False),
    sa.Column("number_hash", HASH, nullable=False),
    sa.Column("agent_id", sa.String(100), nullable=False),
    sa.Column("team_id", sa.String(100), nullable=True),
    sa.Column("duration_ms", sa.Integer, nullable=False),
    sa.Column("audio_format", sa.String(32), nullable=False),
    sa.Column("channels", sa.Integer, nullable=False),
    # Spans silenced at ingest (payment data): [[start_ms, end_ms], ...].
    sa.Column("redactions", json_type(), nullable=False, default=list, server_default=sa.text("'[]'")),
    sa.Column("restricted", sa.Boolean, nullable=False, default=False, server_default=sa.false()),
    sa.Column("restricted_at", UTCDateTime(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("content_sha256", HASH, nullable=False),  # normalised audio: replay vs conflict
    # The E.164 number sealed (AES-GCM) under the caller key ``caller_key_id``; never in clear.
    sa.Column("caller_number_sealed", sa.LargeBinary, nullable=False),
    sa.Column("caller_key_id", sa.Uuid, sa.ForeignKey("caller_keys.id"), nullable=False),
    # Whose restriction restricts it (0011): the number's keyed hash; a lift of that number ends it,
    # also once the recording was rectified onto another number (only a lift ends a restriction).
    sa.Column("restricted_by", HASH, nullable=True),
    sa.UniqueConstraint("tenant_id", "external_id"),
)
sa.Index("ix_recordings_caller_key_id", recordings.c.caller_key_id)
# Search (access/api/search.py) pages newest first by (started_at, id) with a row-value keyset
# predicate: each filter has an index ending in (started_at, id), read backwards, so a page is
# ORDER BY + LIMIT over one index range whatever its depth (0009). Across tenants (a group-level
# user): the last one.
sa.Index("ix_recordings_tenant_started_id", recordings.c.tenant_id, recordings.c.started_at, recordings.c.id)
sa.Index("ix_recordings_tenant_number_started_id", recordings.c.tenant_id, recordings.c.number_hash,
         recordings.c.started_at, recordings.c.id)
sa.Index("ix_recordings_tenant_agent_started_id", recordings.c.tenant_id, recordings.c.agent_id,
         recordings.c.started_at, recordings.c.id)
sa.Index("ix_recordings_tenant_team_started_id", recordings.c.tenant_id, recordings.c.team_id,
         recordings.c.started_at, recordings.c.id)
sa.Index("ix_recordings_started_id", recordings.c.started_at, recordings.c.id)

copies = sa.Table(
    "copies", metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("recording_id", sa.Uuid, sa.ForeignKey("recordings.id", ondelete="CASCADE"), nullable=False),
    sa.Column("tier", string_enum("tier", Tier), nullable=False),
    sa.Column("object_key", sa.String(300), nullable=False, unique=True),
    sa.Column("bucket", sa.String(63), nullable=False),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("stored_sha256", HASH, nullable=False),  # of the stored (encrypted) bytes
    sa.Column("wrapped_data_key", sa.LargeBinary, nullable=False),
    sa.Column("caller_key_id", sa.Uuid, sa.ForeignKey("caller_keys.id"), nullable=False),
    sa.Column("frame_size", sa.Integer, nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("created_by", sa.String(100), nullable=False),
    # The complaint / request reference of a complaint-extract; '' for every other tier, so
    # UNIQUE(recording_id, tier, reason) means "one copy per tier, one extract per reference".
    sa.Column("reason", sa.Text, nullable=False, default="", server_default=""),
    sa.Column("training_report", sa.Text, nullable=True),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Column("hold", sa.Boolean, nullable=False, default=False, server_default=sa.false()),
    sa.Column("hold_reason", sa.Text, nullable=True),
    sa.Column("hold_actor", sa.String(100), nullable=True),
    sa.Column("hold_at", UTCDateTime(), nullable=True),
    # Set by the sweeper before it deletes the object, so a crashed sweep resumes.
    sa.Column("deleting_at", UTCDateTime(), nullable=True),
    # The object store's version id of the object, given when it was written: deletion names it
    # (no version listing). NULL: written before 0008, or by a store without versioning.
    sa.Column("object_version", sa.String(255), nullable=True),
    # The encryption header (bytes before the first frame): a ranged read needs one GET, not two.
    sa.Column("header", sa.LargeBinary, nullable=True),
    sa.UniqueConstraint("recording_id", "tier", "reason"),
    sa.CheckConstraint("tier = 'complaint-extract' OR reason = ''", name="reason_only_for_extracts"),
    sa.CheckConstraint("tier <> 'training' OR training_report IS NOT NULL", name="training_has_report"),
    sa.CheckConstraint("NOT hold OR (hold_reason IS NOT NULL AND hold_actor IS NOT NULL AND hold_at IS NOT NULL)",
                       name="hold_has_reason_actor_time"),
)
# The sweeper's query: expired and not held. Held copies (few, long-lived) stay out of it.
sa.Index("ix_copies_expires_not_held", copies.c.expires_at,
         postgresql_where=copies.c.hold == sa.false(), sqlite_where=copies.c.hold == sa.false())
# Sweeps interrupted between marking and deleting: tiny, so a partial index.
sa.Index("ix_copies_deleting", copies.c.deleting_at,
         postgresql_where=copies.c.deleting_at.is_not(None), sqlite_where=copies.c.deleting_at.is_not(None))
# The sweep's opening count of held-and-expired copies (few): a partial index.
sa.Index("ix_copies_held_expires", copies.c.expires_at,
         postgresql_where=copies.c.hold == sa.true(), sqlite_where=copies.c.hold == sa.true())
# Search's "has a live copy of a tier the user may see" (EXISTS per recording): an index-only probe.
sa.Index("ix_copies_live_recording_tier", copies.c.recording_id, copies.c.tier,
         postgresql_where=copies.c.deleting_at.is_(None), sqlite_where=copies.c.deleting_at.is_(None))
# Erasure and rectification find every copy wrapped under a caller key.
sa.Index("ix_copies_caller_key_id", copies.c.caller_key_id)

suppressions = sa.Table(
    "suppressions", metadata,
    _tenant_fk(primary_key=True),
    sa.Column("number_hash", HASH, primary_key=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("created_by", sa.String(100), nullable=False),
)

# Numbers (keyed hashes) whose restriction stands (0011): every recording of one is restricted,
# also a call stored after the restriction and a recording rectified onto the number, until it
# is lifted (the row goes). Rebuilt from the erasure ledger's subject journal by its replay.
restrictions = sa.Table(
    "restrictions", metadata,
    _tenant_fk(primary_key=True),
    sa.Column("number_hash", HASH, primary_key=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("created_by", sa.String(100), nullable=False),
)

# What each erasure reached (0010), one row per erased number (its keyed hash) or recording id,
# so that a call the erasure covers but which arrives after it is refused at ingest: a message
# delivered again (Kafka's at least once, ``dlq replay``, a producer's retry) of a recording since
# erased, or a call of an erased number that started before the erasure. Written with the erasure,
# and again from the erasure ledger by its replay (a restored catalog). No number, no audio.
erasures = sa.Table(
    "erasures", metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    _tenant_fk(),
    sa.Column("number_hash", HASH, nullable=True),
    sa.Column("recording_id", sa.Uuid, nullable=True),
    sa.Column("erased_at", UTCDateTime(), nullable=False),
    sa.Column("ledger_entry", sa.String(64), nullable=False),  # the erasure ledger entry's id
    sa.CheckConstraint("(number_hash IS NULL) <> (recording_id IS NULL)", name="number_or_recording"),
)
sa.Index("ix_erasures_tenant_number", erasures.c.tenant_id, erasures.c.number_hash)
sa.Index("ix_erasures_recording", erasures.c.recording_id)
sa.Index("ix_erasures_ledger_entry", erasures.c.ledger_entry)

# Where the next replay of each erasure-ledger journal may start (0012): the newest entry the
# last replay read and applied. A restored backup brings its own, older, value back, so the
# replay after a restore reads exactly the entries made since that backup's last replay.
ledger_cursors = sa.Table(
    "ledger_cursors", metadata,
    sa.Column("journal", sa.String(16), primary_key=True),  # erase, hold, subject, policy
    sa.Column("last_key", sa.String(300), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

users = sa.Table(
    "users", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("display_name", sa.String(200), nullable=False),
    sa.Column("role", string_enum("role", Role), nullable=False),
    sa.Column("tenants", json_type(), nullable=False, default=list, server_default=sa.text("'[]'")),  # ["*"]: all
    sa.Column("agent_id", sa.String(100), nullable=True),
    sa.Column("contract_end", sa.Date, nullable=True),
    sa.Column("revoked", sa.Boolean, nullable=False, default=False, server_default=sa.false()),
    sa.Column("revoked_at", UTCDateTime(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)

team_memberships = sa.Table(
    "team_memberships", metadata,
    sa.Column("user_id", sa.String(64), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("tenant_id", sa.String(64), sa.ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("team_id", sa.String(100), primary_key=True),
    sa.Column("relation", string_enum("relation", Relation), primary_key=True),
)

audit_events = sa.Table(
    "audit_events", metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime(), nullable=False),  # the server clock, never a simulated time
    sa.Column("actor", sa.String(100), nullable=False),
    sa.Column("role", sa.String(ENUM_LENGTH), nullable=False),  # a role, or "system" for jobs
    sa.Column("action", sa.String(100), nullable=False),
    sa.Column("target_type", sa.String(32), nullable=False),
    sa.Column("target_id", sa.String(200), nullable=False),
    sa.Column("outcome", string_enum("outcome", Outcome), nullable=False),
    sa.Column("reason", sa.Text, nullable=True),  # reason or ticket reference
    sa.Column("detail", json_type(), nullable=True),  # never audio, never a phone number
    sa.Column("prev_hash", HASH, nullable=True),  # NULL only for the first entry
    sa.Column("hash", HASH, nullable=False, unique=True),
    # The tenant the entry is about; NULL for group-level and system entries (GET /audit scope).
    sa.Column("tenant_id", sa.String(64), nullable=True),
    # What the hash covers: 1 = without tenant_id (entries before migration 0005), 2 = with it.
    sa.Column("chain", sa.SmallInteger, nullable=False, server_default="1"),
)
sa.Index("ix_audit_events_target", audit_events.c.target_type, audit_events.c.target_id)
sa.Index("ix_audit_events_tenant_id_seq", audit_events.c.tenant_id, audit_events.c.seq)

break_glass = sa.Table(
    "break_glass", metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("user_id", sa.String(64), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("ticket", sa.String(100), nullable=False),
    sa.Column("granted_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    # CASCADE, not SET NULL: a grant for one recording must never widen to "any recording".
    sa.Column("recording_id", sa.Uuid, sa.ForeignKey("recordings.id", ondelete="CASCADE"), nullable=True),
    # The tiers the grant opens (a subset of the tiers); a tier not named stays shut (0006).
    sa.Column("tiers", json_type(), nullable=False, server_default=sa.text("'[\"production\"]'")),
    sa.CheckConstraint("expires_at > granted_at", name="expires_after_grant"),
)
sa.Index("ix_break_glass_user_id_expires_at", break_glass.c.user_id, break_glass.c.expires_at)

# Deliveries of a Kafka message that have started and not finished. A message that kills the
# worker leaves its row behind; each redelivery adds one, so a poison message is recognised
# across restarts (and across workers after a rebalance) and dead-lettered.
ingest_attempts = sa.Table(
    "ingest_attempts", metadata,
    sa.Column("topic", sa.String(255), primary_key=True),
    sa.Column("partition", sa.Integer, primary_key=True),
    sa.Column("offset", sa.BigInteger, primary_key=True),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("first_at", UTCDateTime(), nullable=False),
    sa.Column("last_at", UTCDateTime(), nullable=False),
)

# --- data in transit (ingest) ------------------------------------------------------------

# Per-tenant ingest key pairs (X25519, for HPKE): producers seal each message (number, inline
# audio, the landing object's content key) to the tenant's current public key; the private key
# is kept wrapped by the master key and destroyed once every topic that could still hold a
# message sealed to it has passed its retention, so no log segment outlives its key.
ingest_keys = sa.Table(
    "ingest_keys", metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    _tenant_fk(),
    sa.Column("public_key", sa.LargeBinary, nullable=False),
    sa.Column("wrapped_key", sa.LargeBinary, nullable=True),  # NULL once destroyed
    sa.Column("master_version", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("use_until", UTCDateTime(), nullable=False),
    sa.Column("destroy_after", UTCDateTime(), nullable=False),
    sa.Column("destroyed_at", UTCDateTime(), nullable=True),
    sa.CheckConstraint("(wrapped_key IS NULL) = (destroyed_at IS NOT NULL)", name="destroyed_means_no_key"),
    sa.Index(None, "tenant_id", "use_until"),
)

# Dead letters in quarantine: the dead-letter topic holds each original only encrypted under a
# key of its own, kept here. Erasing a number deletes the keys of its dead letters (found by the
# number's keyed hash), and every key goes once the quarantine's retention has passed.
dead_letters = sa.Table(
    "dead_letters", metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("tenant_id", sa.String(64), nullable=True),  # as the message said: maybe no such tenant
    sa.Column("number_hash", HASH, nullable=True),         # NULL: unreadable message, or withheld
    sa.Column("recording_id", sa.Uuid, nullable=True),
    sa.Column("reason", sa.String(64), nullable=False),
    sa.Column("wrapped_key", sa.LargeBinary, nullable=False),
    sa.Column("master_version", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Index(None, "tenant_id", "number_hash"),
    sa.Index(None, "expires_at"),
)

# Calls handed over through a front door (the HTTP push endpoint, the S3 drop), by recording id:
# the audio's fingerprint (a re-push of other audio under the same id is a conflict), and what
# became of the call once the worker settled it. What ``GET /v1/recordings/{id}/status`` reads;
# no number, no audio (0007).
pushes = sa.Table(
    "pushes", metadata,
    sa.Column("recording_id", sa.Uuid, primary_key=True),  # ingest.service.recording_uuid(tenant, external id)
    _tenant_fk(),
    sa.Column("external_id", sa.String(200), nullable=False),
    sa.Column("door", string_enum("door", Door), nullable=False),
    sa.Column("principal", sa.String(100), nullable=False),
    sa.Column("fingerprint", HASH, nullable=False),  # ingest.service.fingerprint: audio SHA-256 and spans
    sa.Column("accepted_at", UTCDateTime(), nullable=False),
    sa.Column("outcome", string_enum("outcome", PushOutcome), nullable=True),  # NULL: queued
    sa.Column("reason", sa.String(64), nullable=True),  # a dead letter's reason code
    sa.Column("settled_at", UTCDateTime(), nullable=True),
    sa.UniqueConstraint("tenant_id", "external_id"),
)
sa.Index("ix_pushes_settled_at", pushes.c.settled_at)  # the sweep forgets settled ones (0012)
