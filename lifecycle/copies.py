"""Linked copies of a recording: monitoring, training (with the coach's report), and
complaint / GDPR extracts (with their reference).

A copy is its own object, re-encrypted under a fresh data key wrapped by the *same* caller
key as the recording, so erasure and restriction of the caller reach it. It has its own tier
tag, its own clock (from its creation) and its own catalog row, linked to the recording.
Objects are client-side encrypted with their key bound to the object key, so a byte-for-byte
server-side CopyObject could not be decrypted under its new name: the copy is decrypted and
re-encrypted here, then uploaded.

Expired means unplayable, and copying is playing: a copy past its expiry and not held is never
a source, even before the sweeper deletes it, or a copy would outlive the audio it came from.
``source_copy`` is the one choice of source; the API and the CLI ask it through
``lifecycle.service.source_copy``, so the copy their policy rules on is the copy read here.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from core.vocabulary import EXPIRED, AuditAction, Tier
from storage import audit
from storage.catalog import tables as t
from storage.copies import (
    lock_copy_slot,
    object_key_for,
    plaintext_length,
    put_encrypted,
    stream_copy,
    upsert_copy,
)
from storage.keys import KeyRing
from storage.objectstore import ObjectStore

from .exceptions import CopyNotAllowed, NotFound
from .retention import parse_tier, tenant_overrides
from .tiers import expires_at


@dataclass(frozen=True)
class CopyInfo:
    copy_id: uuid.UUID
    recording_id: uuid.UUID
    tier: Tier
    expires_at: datetime
    created: bool


def _check_request(tier: Tier, reason: str, training_report: str | None) -> None:
    if tier is Tier.PRODUCTION:
        raise CopyNotAllowed("a production copy is made by ingest only")
    if tier is Tier.TRAINING and not (training_report or "").strip():
        raise CopyNotAllowed("a training copy needs the coach's training report")
    if tier is Tier.COMPLAINT_EXTRACT and not reason.strip():
        raise CopyNotAllowed("an extract needs its reason: a complaint reference or a GDPR request reference")
    if tier is not Tier.COMPLAINT_EXTRACT and reason:
        raise CopyNotAllowed(f"a {tier.value} copy takes no reason (only extracts do)")


def source_query(recording_id: uuid.UUID, now: datetime) -> sa.Select:
    """The copy a new copy is made from: the production original if it is still live and
    usable, else the longest-lived usable copy. Usable is the sweeper's test negated
    (``expires_at > now`` or held); when no copy is usable the best unusable one comes back,
    labelled ``usable = false``, so the caller can say why instead of "not found"."""
    c = t.copies.c
    usable = sa.or_(c.expires_at > now, c.hold == sa.true())
    return (sa.select(t.copies, usable.label("usable"))
            .where(c.recording_id == recording_id, c.deleting_at.is_(None))
            .order_by(usable.desc(), (c.tier == Tier.PRODUCTION.value).desc(), c.expires_at.desc(), c.id)
            .limit(1))


def source_copy(conn: sa.Connection, recording_id: uuid.UUID, now: datetime) -> sa.RowMapping | None:
    """The source row (with its ``usable`` label) by ``source_query``, or None: no live copy."""
    return conn.execute(source_query(recording_id, now)).mappings().first()


def create_copy(conn: sa.Connection, store: ObjectStore, keys: KeyRing, *, recording_id: uuid.UUID, tier: str,
                actor: str, now: datetime, reason: str = "", training_report: str | None = None,
                role: str = "system") -> CopyInfo:
    tier_ = parse_tier(tier)
    _check_request(tier_, reason, training_report)
    recording = conn.execute(sa.select(t.recordings).where(t.recordings.c.id == recording_id)).mappings().first()
    if recording is None:
        raise NotFound(f"recording {recording_id} does not exist (expired or erased?)")
    lock_copy_slot(conn, recording_id, tier_.value)  # a concurrent writer of this copy: wait, then find its row
    existing = conn.execute(sa.select(t.copies.c.id, t.copies.c.expires_at).where(
        t.copies.c.recording_id == recording_id, t.copies.c.tier == tier_.value,
        t.copies.c.reason == reason)).first()
    if existing is not None:
        return CopyInfo(existing.id, recording_id, tier_, existing.expires_at, created=False)
    chosen = source_copy(conn, recording_id, now)
    if chosen is None:
        raise NotFound(f"recording {recording_id} has no copy left to copy from")
    if not chosen["usable"]:
        raise CopyNotAllowed(f"recording {recording_id} has no copy to copy from: {EXPIRED}")
    source, bucket = chosen["id"], chosen["bucket"]
    # Streamed from the source (frames authenticated, checksum checked at its end, which aborts the
    # upload): memory of a part whatever the call's length.
    audio = stream_copy(conn, store, keys, source)
    key = object_key_for(recording["tenant_id"], recording_id, tier_.value, reason)
    # Under the recording's own key (not today's number): erasure and rectification move them together.
    stored = put_encrypted(conn, store, keys, caller=keys.key_by_id(conn, recording["caller_key_id"]), bucket=bucket,
                           object_key=key, audio=audio, length=plaintext_length(chosen["size_bytes"],
                                                                                 chosen["frame_size"]),
                           tags={"tier": tier_.value, "tenant": recording["tenant_id"]})
    expiry = expires_at(tier_, call_started_at=recording["started_at"], copy_created_at=now,
                        overrides=tenant_overrides(conn, recording["tenant_id"]))
    copy_id = upsert_copy(conn, recording_id=recording_id, tier=tier_.value, stored=stored, bucket=bucket,
                          expires_at=expiry, created_by=actor, reason=reason, training_report=training_report,
                          now=now)
    audit.append(conn, tenant=recording["tenant_id"], actor=actor, role=role, action=AuditAction.COPY_CREATE,
                 target_type="copy", target_id=str(copy_id), outcome="done", reason=reason or None, at=now,
                 detail={"recording_id": str(recording_id), "tier": tier_.value, "source_copy": str(source),
                         "expires_at": expiry.isoformat()})
    return CopyInfo(copy_id, recording_id, tier_, expiry, created=True)
