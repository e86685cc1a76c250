"""Ingest one telephony message: the whole path from bytes on Kafka to a stored recording.

    open the seal (``ingest.sealing``) → validate → tenant known → objection check
      → idempotency (duplicate / conflict) → fetch audio (inline, or a claim check of the
      message's tenant, size and SHA-256 checked, decrypted) → decode, silence spans,
      normalise (ffmpeg) → encrypt + put object → catalog rows (one transaction)
      → delete the landing object (only the very object the message names)

Pure of Kafka: the faust agent (``ingest.worker``) calls ``ingest`` in a thread and turns the
result into events, and ``IngestError`` into a dead-letter record. Anything else raised here
(object store down, database down) is transient: the worker retries and does not commit.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from typing import Callable

import sqlalchemy as sa

from core.phone import is_withheld, normalise_number
from core.vocabulary import Tier
from lifecycle.tiers import expires_at
from storage import restrictions
from storage.catalog import tables as t
from storage.copies import object_key_for, put_encrypted, upsert_copy
from storage.exceptions import KeyDestroyedError
from storage.keys import KeyRing
from storage.objectstore import ObjectStore
from storage.settings import StorageSettings
from storage.transit import IngestKeys, Quarantine

from . import audio, pushes, sealing
from .exceptions import IngestError, RecordingConflict, SealError, TenantMismatch, UnknownTenant
from .landing import drop_landing, fetch_audio
from .schema import RecordingMessage, parse_message
from .settings import IngestSettings, KafkaSettings

RECORDING_NAMESPACE = uuid.UUID("5b0f7a4e-2f1c-4a8e-9d35-6f1d0c2b9a11")


class Outcome(StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"
    SUPPRESSED = "suppressed"
    EXPIRED_ON_ARRIVAL = "expired-on-arrival"
    ERASED_ON_ARRIVAL = "erased-on-arrival"  # an erasure reached it first: its recording, or its number since it started


@dataclass(frozen=True)
class IngestResult:
    outcome: Outcome
    tenant: str
    external_id: str
    recording_id: uuid.UUID
    copy_id: uuid.UUID | None = None
    duration_ms: int | None = None
    expires_at: datetime | None = None

    def event(self) -> dict:
        """The ``callvault.events`` record: ids and facts only, never a number or audio."""
        return {"type": self.outcome.value, "tenant": self.tenant, "recording_id": str(self.recording_id),
                "external_id": self.external_id, "copy_id": str(self.copy_id) if self.copy_id else None,
                "tier": Tier.PRODUCTION.value if self.copy_id else None, "duration_ms": self.duration_ms,
                "expires_at": self.expires_at.isoformat() if self.expires_at else None}


@dataclass
class IngestDeps:
    engine: sa.Engine
    store: ObjectStore
    keys: KeyRing
    storage: StorageSettings
    settings: IngestSettings = field(default_factory=IngestSettings)
    clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    ingest_keys: IngestKeys | None = None
    quarantine: Quarantine | None = None

    def __post_init__(self) -> None:
        if self.ingest_keys is None:
            self.ingest_keys = ingest_keys_for(self.keys, self.settings, self.kafka)
        if self.quarantine is None:
            self.quarantine = Quarantine(self.keys, retention=timedelta(days=self.kafka.dlq_retention_days))


def ingest_keys_for(keys: KeyRing, settings: IngestSettings, kafka: KafkaSettings) -> IngestKeys:
    """Keys used for ``ingest_key_hours``, destroyed a day after the recordings topic's retention
    has passed for the last message sealed to them."""
    return IngestKeys(keys, lifetime=timedelta(hours=settings.ingest_key_hours),
                      keep_after_use=timedelta(hours=kafka.recordings_retention_hours) + timedelta(days=1))


@dataclass(frozen=True)
class Opened:
    plain: bytes
    sealed_for: str | None  # the tenant the envelope was sealed for; None: a plain message


def open_message(raw: bytes, deps: IngestDeps) -> Opened:
    """The v1 message inside a sealed envelope (or a plain one, unless seals are required)."""
    env = sealing.envelope(raw)
    if env is None:
        if deps.settings.require_sealed:
            raise SealError("the message is not sealed, and this worker takes sealed messages only",
                            hint="send through callvault's producer, or seal to the tenant's ingest key")
        return Opened(raw, None)
    with deps.engine.connect() as conn:
        try:
            private = deps.ingest_keys.private(conn, env.tenant, env.key_id)
        except KeyDestroyedError as exc:
            raise SealError(str(exc)) from None
    return Opened(sealing.open_envelope(env, private), env.tenant)


@dataclass(frozen=True)
class Subject:
    """Who a refused message is about, as far as it can be read: what its dead letter is filed under."""

    original: bytes                   # the opened message (the sealed one when it does not open)
    tenant: str | None = None
    number_hash: str | None = None
    recording_id: uuid.UUID | None = None


def identify(raw: bytes, deps: IngestDeps) -> Subject:
    """Best effort, never raises: a dead letter is filed under its caller's number when the
    message says one, so erasing that number purges it, even if the message is invalid."""
    try:
        return _identify(raw, deps)
    except (sa.exc.OperationalError, sa.exc.InterfaceError):
        raise  # the catalog is down: the worker waits for it, the message is not to blame
    except Exception:  # noqa: BLE001 - anything a hostile message can provoke (deep nesting...)
        return Subject(raw)


def _identify(raw: bytes, deps: IngestDeps) -> Subject:
    try:
        opened = open_message(raw, deps)
    except IngestError:
        env = None
        try:
            env = sealing.envelope(raw)
        except IngestError:
            pass
        return Subject(raw, tenant=env.tenant if env else None)
    try:
        doc = json.loads(opened.plain)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return Subject(opened.plain, tenant=opened.sealed_for)
    if not isinstance(doc, dict):
        return Subject(opened.plain, tenant=opened.sealed_for)
    tenant = doc.get("tenant") if isinstance(doc.get("tenant"), str) and len(doc["tenant"]) <= 64 else None
    tenant = opened.sealed_for or tenant
    external = doc.get("recording_id")
    rid = recording_uuid(tenant, external) if tenant and isinstance(external, str) else None
    number, number_hash = doc.get("caller_number"), None
    try:
        if tenant and is_withheld(number):
            number_hash = deps.keys.withheld_hash(tenant, rid) if rid else None
        elif tenant and isinstance(number, str):
            number_hash = deps.keys.number_hash(tenant, normalise_number(number, deps.settings.default_region))
    except Exception:  # noqa: BLE001 - not a number: nothing to file it under
        number_hash = None
    return Subject(opened.plain, tenant=tenant, number_hash=number_hash, recording_id=rid)


def recording_uuid(tenant: str, external_id: str) -> uuid.UUID:
    """Deterministic, so a retry after a crash writes the same object key (overwrite, no orphan)."""
    return uuid.uuid5(RECORDING_NAMESPACE, f"{tenant}/{external_id}")


def fingerprint(msg: RecordingMessage, source_sha256: str) -> str:
    """What makes two deliveries "the same call": the audio received and the spans to silence."""
    return hashlib.sha256(json.dumps([source_sha256, msg.spans]).encode()).hexdigest()


def _source_sha256(msg: RecordingMessage) -> str:
    """The audio's own hash: an encrypted claim check is encrypted anew at every upload."""
    if msg.audio.ref is not None:
        return msg.audio.ref.plain_sha256 or msg.audio.ref.sha256
    return hashlib.sha256(msg.audio.inline).hexdigest()


def _duplicate(deps: IngestDeps, tenant: str, external_id: str, rid: uuid.UUID) -> IngestResult:
    """A redelivery: the event repeats what was stored (copy, duration, expiry), so a consumer
    that missed the ``stored`` event (a crash between the commit and its send) still learns it."""
    with deps.engine.connect() as conn:
        row = conn.execute(sa.select(t.recordings.c.duration_ms, t.copies.c.id, t.copies.c.expires_at)
                           .join(t.copies, sa.and_(t.copies.c.recording_id == t.recordings.c.id,
                                                   t.copies.c.tier == Tier.PRODUCTION.value), isouter=True)
                           .where(t.recordings.c.id == rid)).first()
    if row is None:
        return IngestResult(Outcome.DUPLICATE, tenant, external_id, rid)
    return IngestResult(Outcome.DUPLICATE, tenant, external_id, rid, row.id, row.duration_ms, row.expires_at)


@dataclass(frozen=True)
class Arrival:
    """A message opened and checked, with what the rest of its path derives from it."""

    msg: RecordingMessage
    recording_id: uuid.UUID
    number_hash: str
    fingerprint: str
    now: datetime
    inline_sha256: str | None = None  # of the inline audio (hashed once for the fingerprint)

    def result(self, outcome: Outcome, **facts) -> IngestResult:
        return IngestResult(outcome, self.msg.tenant, self.msg.recording_id, self.recording_id, **facts)


def ingest(raw: bytes, deps: IngestDeps, *, topic_tenant: str | None = None) -> IngestResult:
    """``topic_tenant``: the tenant of the per-tenant topic the message came from (None: the
    shared topic). The broker let only that tenant's principal write there, so it wins."""
    call = receive(raw, deps, topic_tenant=topic_tenant)
    with deps.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        standing = _standing(conn, call)
    if not standing.known:
        raise UnknownTenant(f"tenant {call.msg.tenant!r} is not configured", hint="add it with `callvault tenants add`")
    # An objection refuses every call; an erasure those it reached, unless a copy it kept under a legal
    # hold is the call (delivered again: a duplicate, below).
    refused = (Outcome.SUPPRESSED if standing.suppressed
               else Outcome.ERASED_ON_ARRIVAL if standing.erased and standing.stored is None else None)
    if refused is not None:
        drop_landing(call.msg, deps)
        _settle(deps, call, refused)
        return call.result(refused)
    overrides, stored = standing.overrides, standing.stored
    if stored is not None:
        return _duplicate_of(call, stored, deps)
    expiry = expires_at(Tier.PRODUCTION, call_started_at=call.msg.started_at, copy_created_at=call.now,
                        overrides=overrides)
    if expiry <= call.now:  # nothing is kept longer than its tier allows, not even for a moment
        drop_landing(call.msg, deps)
        _settle(deps, call, Outcome.EXPIRED_ON_ARRIVAL)
        return call.result(Outcome.EXPIRED_ON_ARRIVAL, expires_at=expiry)
    return _store(call, expiry, deps)


def receive(raw: bytes, deps: IngestDeps, *, topic_tenant: str | None = None) -> Arrival:
    """Open, parse and check the message: its tenant is its topic's and its seal's, its clock sane."""
    opened = open_message(raw, deps)
    msg = parse_message(opened.plain, default_region=deps.settings.default_region)
    if topic_tenant is not None and msg.tenant != topic_tenant:
        # The body's tenant is not named: it is the sender's word, the topic's is the broker's.
        raise TenantMismatch(f"the message names another tenant than its topic's ({topic_tenant})",
                             hint="a telephony principal sends only its own tenant's calls, to its own topic")
    if opened.sealed_for is not None and msg.tenant != opened.sealed_for:
        raise SealError(f"message sealed for tenant {opened.sealed_for!r} names tenant {msg.tenant!r}")
    now = deps.clock()
    msg.check_clock(now, max_ahead=timedelta(seconds=deps.settings.max_clock_skew_seconds))
    rid = recording_uuid(msg.tenant, msg.recording_id)
    # A withheld number: an identity of its own per recording, never on the suppression list.
    number_hash = (deps.keys.withheld_hash(msg.tenant, rid) if msg.withheld
                   else deps.keys.number_hash(msg.tenant, msg.caller_number))
    source = _source_sha256(msg)
    return Arrival(msg, rid, number_hash, fingerprint(msg, source), now,
                   inline_sha256=source if msg.audio.inline is not None else None)


@dataclass(frozen=True)
class Standing:
    """What the catalog says of an arriving call (``_standing``)."""

    known: bool                # its tenant is configured
    overrides: dict[str, int]  # the tenant's production retention override
    suppressed: bool           # its caller objected (never a withheld number)
    erased: bool               # an erasure reached it: its recording id, or its number after it started
    stored: str | None         # the fingerprint of the call already stored under its recording id


def _standing(conn: sa.Connection, call: Arrival) -> Standing:
    """What the catalog says of an arriving call, in one statement, read as it is now (a retention
    change, a suppression or an erasure applies to the very next call)."""
    msg, tr, sup = call.msg, t.tenant_retention.c, t.suppressions.c
    row = conn.execute(sa.select(
        sa.exists().where(t.tenants.c.id == msg.tenant),
        sa.select(tr.months).where(tr.tenant_id == msg.tenant, tr.tier == Tier.PRODUCTION.value).scalar_subquery(),
        sa.exists().where(sup.tenant_id == msg.tenant, sup.number_hash == call.number_hash),
        _erasure_of(call),
        _stored_fingerprint_of(msg).scalar_subquery())).one()
    known, months, suppressed, erased, stored = row
    overrides = {Tier.PRODUCTION.value: months} if months is not None else {}
    return Standing(bool(known), overrides, bool(suppressed) and not msg.withheld, bool(erased), stored)


def _erasure_of(call: Arrival) -> sa.Exists:
    """An erasure reached this call: its recording id, or its number once the call had started."""
    er = t.erasures.c
    return sa.exists().where(er.tenant_id == call.msg.tenant, sa.or_(
        er.recording_id == call.recording_id,
        sa.and_(er.number_hash == call.number_hash, er.erased_at >= call.msg.started_at)))


class _ErasedMeanwhile(Exception):
    """An erasure that reached the call committed while its audio was being processed."""


def _settle(deps: IngestDeps, call: Arrival, outcome: Outcome) -> None:
    """A front door's push learns its outcome (``ingest.pushes``); nothing for any other call."""
    with deps.engine.begin() as conn:
        pushes.settle(conn, call.recording_id, outcome.value, now=call.now)


def _stored_fingerprint_of(msg: RecordingMessage) -> sa.Select:
    return sa.select(t.recordings.c.content_sha256).where(
        t.recordings.c.tenant_id == msg.tenant, t.recordings.c.external_id == msg.recording_id)


def _stored_fingerprint(conn: sa.Connection, msg: RecordingMessage) -> str | None:
    """The fingerprint of the call already stored under the message's recording id, if any."""
    return conn.execute(_stored_fingerprint_of(msg)).scalar()


def _duplicate_of(call: Arrival, stored: str, deps: IngestDeps, *, checked: bool = False) -> IngestResult:
    """The call is already stored: a redelivery of the same one, or a conflict."""
    if stored != call.fingerprint:
        raise RecordingConflict(f"recording {call.msg.recording_id!r} of tenant {call.msg.tenant!r} is already "
                                "stored with different audio or redaction spans",
                                hint="send it under a new recording id")
    drop_landing(call.msg, deps, checked=checked)
    return _duplicate(deps, call.msg.tenant, call.msg.recording_id, call.recording_id)


def _store(call: Arrival, expiry: datetime, deps: IngestDeps) -> IngestResult:
    """Process the audio, then store it: object first, rows second (``_write``)."""
    processed = audio.process(fetch_audio(call.msg, deps), call.msg.audio_format, call.msg.spans,
                              deps.settings.storage_format, max_bytes=deps.settings.max_audio_bytes,
                              max_duration_ms=deps.settings.max_duration_seconds * 1000,
                              source_sha256=call.inline_sha256)
    try:
        copy_id = _write(call, processed, expiry, deps)
    except _ErasedMeanwhile:
        drop_landing(call.msg, deps)
        _settle(deps, call, Outcome.ERASED_ON_ARRIVAL)
        return call.result(Outcome.ERASED_ON_ARRIVAL)
    except sa.exc.IntegrityError:
        with deps.engine.connect() as conn:
            stored = _stored_fingerprint(conn, call.msg)
        if stored is None:
            raise  # not a duplicate delivery: a real constraint problem, let the worker retry
    else:
        drop_landing(call.msg, deps, checked=True)
        return call.result(Outcome.STORED, copy_id=copy_id, duration_ms=processed.duration_ms, expires_at=expiry)
    return _duplicate_of(call, stored, deps, checked=True)  # a concurrent delivery of the call won


def _write(call: Arrival, processed: audio.ProcessedAudio, expiry: datetime, deps: IngestDeps) -> uuid.UUID:
    """The recording row, the encrypted object and its copy row, in one transaction.

    The recording row goes in first, inside the transaction: its unique key makes a concurrent
    delivery of the same call wait here, then fail, instead of overwriting this object under
    another data key. Nothing is visible until the commit, which happens only after the object
    is stored: object first, rows second."""
    msg, rid, tenant = call.msg, call.recording_id, call.msg.tenant
    bucket = deps.storage.recordings_bucket
    with deps.engine.begin() as conn:
        caller = deps.keys.caller_key(conn, tenant=tenant, number_hash=call.number_hash)
        # A restriction of the number made meanwhile: one of the two goes first (SQLite: the write lock,
        # so the erasure's re-check below reads the latest state too).
        restrictions.lock_numbers(conn, tenant, [call.number_hash])
        # Read after the caller key, which waited for an erasure destroying it to commit: an erasure
        # committed since ``_standing`` is seen here, and nothing is written. A call of a number whose
        # restriction stands is restricted as it is stored.
        erased, restricted = conn.execute(sa.select(
            _erasure_of(call), restrictions.standing(tenant, call.number_hash))).one()
        if erased:
            raise _ErasedMeanwhile()
        conn.execute(t.recordings.insert(), dict(  # parameters, not .values(): the statement is built once
            id=rid, tenant_id=tenant, external_id=msg.recording_id, started_at=msg.started_at,
            direction=msg.direction.value, number_hash=call.number_hash, caller_key_id=caller.id,
            caller_number_sealed=deps.keys.seal_number(caller, tenant=tenant, recording_id=rid,
                                                       e164=msg.caller_number or ""),  # "": withheld
            agent_id=msg.agent_id, team_id=msg.team_id, duration_ms=processed.duration_ms,
            audio_format=processed.format, channels=processed.channels,
            redactions=[list(s) for s in processed.silenced],  # as silenced: cut at the audio's end
            restricted=restricted, restricted_at=call.now if restricted else None,
            restricted_by=call.number_hash if restricted else None,
            created_at=call.now, content_sha256=call.fingerprint))
        stored = put_encrypted(conn, deps.store, deps.keys, caller=caller, bucket=bucket,
                               object_key=object_key_for(tenant, rid, Tier.PRODUCTION), audio=processed.data,
                               tags={"tier": Tier.PRODUCTION.value, "tenant": tenant})
        copy_id = upsert_copy(conn, recording_id=rid, tier=Tier.PRODUCTION.value, stored=stored,
                              bucket=bucket, expires_at=expiry, created_by="ingest", now=call.now,
                              new_recording=True)
        pushes.settle(conn, rid, Outcome.STORED.value, now=call.now)  # a front door's push: its status
        return copy_id
