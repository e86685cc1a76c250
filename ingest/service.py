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

import base64
import hashlib
import json
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from typing import Callable

import sqlalchemy as sa

from core.phone import is_withheld, normalise_number
from core.vocabulary import Tier
from lifecycle.tiers import expires_at
from storage.catalog import tables as t
from storage.copies import object_key_for, put_encrypted, upsert_copy
from storage.exceptions import KeyDestroyedError, ObjectNotFound
from storage.keys import KeyRing
from storage.objectstore import ObjectStore
from storage.settings import StorageSettings
from storage.suppressions import is_suppressed
from storage.transit import IngestKeys, Quarantine

from . import audio, pushes, sealing
from .exceptions import ClaimCheckError, IngestError, RecordingConflict, SealError, TenantMismatch, UnknownTenant
from .schema import RecordingMessage, parse_message
from .settings import IngestSettings, KafkaSettings

log = logging.getLogger("callvault.ingest")

RECORDING_NAMESPACE = uuid.UUID("5b0f7a4e-2f1c-4a8e-9d35-6f1d0c2b9a11")


class Outcome(StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"
    SUPPRESSED = "suppressed"
    EXPIRED_ON_ARRIVAL = "expired-on-arrival"


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


def _check_ref(msg: RecordingMessage, deps: IngestDeps) -> None:
    """A claim check names an object of its own tenant in the landing bucket, nothing else."""
    ref = msg.audio.ref
    if ref.bucket != deps.storage.landing_bucket:
        raise ClaimCheckError(f"claim check points at bucket {ref.bucket!r}, not the landing bucket",
                              hint="upload through `callvault push` or to CALLVAULT_STORAGE_LANDING_BUCKET")
    if not ref.key.startswith(f"{msg.tenant}/") or "/../" in f"/{ref.key}/":
        raise ClaimCheckError(f"claim check names a landing object outside tenant {msg.tenant!r}'s prefix",
                              hint=f"upload under {msg.tenant}/ in the landing bucket")


def _landing_object(msg: RecordingMessage, deps: IngestDeps) -> bytes | None:
    """The landing object, when it is exactly the one the message names (size and SHA-256);
    None when it is another; ObjectNotFound when there is none."""
    ref = msg.audio.ref
    info = deps.store.head(ref.bucket, ref.key)
    if info is None:
        raise ObjectNotFound(f"s3://{ref.bucket}/{ref.key} does not exist")
    if info.size != ref.size:
        return None
    data = deps.store.get(ref.bucket, ref.key)
    return data if len(data) == ref.size and hashlib.sha256(data).hexdigest() == ref.sha256 else None


def _fetch_audio(msg: RecordingMessage, deps: IngestDeps) -> bytes:
    if msg.audio.inline is not None:
        return msg.audio.inline
    _check_ref(msg, deps)
    ref = msg.audio.ref
    try:
        data = _landing_object(msg, deps)
    except ObjectNotFound as exc:
        raise ClaimCheckError("claim-check object is missing from the landing bucket") from exc
    if data is None:
        raise ClaimCheckError("claim-check object does not match the size/SHA-256 in the message")
    if ref.content_key is not None:
        data = sealing.decrypt_landing(data, content_key=ref.content_key, tenant=msg.tenant, key=ref.key)
        if ref.plain_sha256 is not None and hashlib.sha256(data).hexdigest() != ref.plain_sha256:
            raise ClaimCheckError("the decrypted claim-check object does not match the plain_sha256 in the message")
    return data


def _drop_landing(msg: RecordingMessage, deps: IngestDeps, *, checked: bool = False) -> None:
    """Delete the landing object once its call is stored or refused, and only when it is the
    object the message names: a message cannot get another tenant's or another call's object
    deleted by naming its key. ``checked``: its size and SHA-256 were just verified."""
    if msg.audio.ref is None:
        return
    try:
        _check_ref(msg, deps)
    except ClaimCheckError:
        return
    ref = msg.audio.ref
    try:
        if checked or _landing_object(msg, deps) is not None:
            deps.store.delete(ref.bucket, ref.key)
        else:
            log.warning("landing object of recording %s left in place: not the object its message names",
                        msg.recording_id)
    except ObjectNotFound:
        pass


# Refusals a replay can cure once the cause is fixed: their landing objects wait for it (the
# landing bucket's lifecycle rule expires them within a day). Every other refusal drops its own.
REPLAYABLE = frozenset({"unknown_tenant", "internal_error", "worker_crash"})


def drop_refused_landing(subject: Subject, reason: str, deps: IngestDeps) -> None:
    if reason in REPLAYABLE or (reason == "unreadable_seal" and not sealing.is_sealed(subject.original)):
        return  # (a plain message refused for want of a seal: `dlq replay` seals it and sends it again)
    try:
        msg = parse_message(subject.original, default_region=deps.settings.default_region)
    except IngestError:
        return  # unreadable: it names nothing we can check
    _drop_landing(msg, deps)


def _settle(deps: IngestDeps, rid: uuid.UUID, outcome: Outcome, now: datetime) -> None:
    with deps.engine.begin() as conn:
        pushes.settle(conn, rid, outcome.value, now=now)


def _tenant_overrides(conn: sa.Connection, tenant: str) -> dict[str, int]:
    if conn.execute(sa.select(t.tenants.c.id).where(t.tenants.c.id == tenant)).first() is None:
        raise UnknownTenant(f"tenant {tenant!r} is not configured", hint="add it with `callvault tenants add`")
    rows = conn.execute(sa.select(t.tenant_retention.c.tier, t.tenant_retention.c.months)
                        .where(t.tenant_retention.c.tenant_id == tenant))
    return {tier: months for tier, months in rows}


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


def ingest(raw: bytes, deps: IngestDeps, *, topic_tenant: str | None = None) -> IngestResult:
    """``topic_tenant``: the tenant of the per-tenant topic the message came from (None: the
    shared topic). The broker let only that tenant's principal write there, so it wins."""
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
    tenant, external_id = msg.tenant, msg.recording_id
    rid = recording_uuid(tenant, external_id)
    # A withheld number: an identity of its own per recording, never on the suppression list.
    number_hash = (deps.keys.withheld_hash(tenant, rid) if msg.withheld
                   else deps.keys.number_hash(tenant, msg.caller_number))
    print_ = fingerprint(msg, _source_sha256(msg))

    with deps.engine.connect() as conn:
        overrides = _tenant_overrides(conn, tenant)
        suppressed = not msg.withheld and is_suppressed(conn, tenant=tenant, number_hash=number_hash)
        existing = conn.execute(sa.select(t.recordings.c.content_sha256).where(
            t.recordings.c.tenant_id == tenant, t.recordings.c.external_id == external_id)).first()
    if suppressed:
        _drop_landing(msg, deps)
        _settle(deps, rid, Outcome.SUPPRESSED, now)
        return IngestResult(Outcome.SUPPRESSED, tenant, external_id, rid)
    if existing is not None:
        if existing.content_sha256 != print_:
            raise RecordingConflict(f"recording {external_id!r} of tenant {tenant!r} is already stored with "
                                    "different audio or redaction spans", hint="send it under a new recording id")
        _drop_landing(msg, deps)
        return _duplicate(deps, tenant, external_id, rid)
    expiry = expires_at(Tier.PRODUCTION, call_started_at=msg.started_at, copy_created_at=now, overrides=overrides)
    if expiry <= now:  # nothing is kept longer than its tier allows, not even for a moment
        _drop_landing(msg, deps)
        _settle(deps, rid, Outcome.EXPIRED_ON_ARRIVAL, now)
        return IngestResult(Outcome.EXPIRED_ON_ARRIVAL, tenant, external_id, rid, expires_at=expiry)

    processed = audio.process(_fetch_audio(msg, deps), msg.audio_format, msg.spans, deps.settings.storage_format,
                              max_bytes=deps.settings.max_audio_bytes,
                              max_duration_ms=deps.settings.max_duration_seconds * 1000)
    bucket = deps.storage.recordings_bucket
    key = object_key_for(tenant, rid, Tier.PRODUCTION)
    try:
        with deps.engine.begin() as conn:
            # The recording row goes in first, inside the transaction: its unique key makes a
            # concurrent delivery of the same call wait here, then fail, instead of overwriting
            # this object under another data key. Nothing is visible until the commit, which
            # happens only after the object is stored: object first, rows second.
            caller = deps.keys.caller_key(conn, tenant=tenant, number_hash=number_hash)
            conn.execute(t.recordings.insert().values(
                id=rid, tenant_id=tenant, external_id=external_id, started_at=msg.started_at,
                direction=msg.direction.value, number_hash=number_hash, caller_key_id=caller.id,
                caller_number_sealed=deps.keys.seal_number(caller, tenant=tenant, recording_id=rid,
                                                           e164=msg.caller_number or ""),  # "": withheld
                agent_id=msg.agent_id, team_id=msg.team_id, duration_ms=processed.duration_ms,
                audio_format=processed.format, channels=processed.channels,
                redactions=[list(s) for s in msg.spans], created_at=now, content_sha256=print_))
            stored = put_encrypted(conn, deps.store, deps.keys, caller=caller, bucket=bucket, object_key=key,
                                   audio=processed.data,
                                   tags={"tier": Tier.PRODUCTION.value, "tenant": tenant})
            copy_id = upsert_copy(conn, recording_id=rid, tier=Tier.PRODUCTION.value, stored=stored,
                                  bucket=bucket, expires_at=expiry, created_by="ingest", now=now)
            pushes.settle(conn, rid, Outcome.STORED.value, now=now)  # a front door's push: its status
    except sa.exc.IntegrityError:
        with deps.engine.connect() as conn:
            winner = conn.execute(sa.select(t.recordings.c.content_sha256).where(
                t.recordings.c.tenant_id == tenant, t.recordings.c.external_id == external_id)).first()
        if winner is None:
            raise  # not a duplicate delivery: a real constraint problem, let the worker retry
        if winner.content_sha256 != print_:
            raise RecordingConflict(f"recording {external_id!r} of tenant {tenant!r} is already stored with "
                                    "different audio or redaction spans") from None
        _drop_landing(msg, deps, checked=True)
        return _duplicate(deps, tenant, external_id, rid)
    _drop_landing(msg, deps, checked=True)
    return IngestResult(Outcome.STORED, tenant, external_id, rid, copy_id, processed.duration_ms, expiry)

