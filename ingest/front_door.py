"""The front doors' common path: a call whose audio has landed becomes a message on its tenant's topic.

Both doors for telephony without a Kafka client end here: the HTTP push endpoint
(``access.api.views.push``) once it has streamed the request body into the landing bucket,
and the S3 drop (``ingest.drop``) once it has copied a dropped object there. Either way the
audio is already a sealed landing object (``Producer.land``: encrypted under a fresh content
key, its plain SHA-256 computed on the way), and what follows is the same:

    claim the telephony id (``ingest.pushes``): stored or queued with the same audio → the same
      call again, nothing sent; with other audio → RecordingConflict; dead-lettered → retried
    → send the sealed claim-check message to ``callvault.tenant.<tenant>.recordings`` (acks=all)
    → the worker ingests it as any other message, and settles the push's status.

A landing object that is not sent (a replay, a conflict, a failed send) is deleted at once.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import anyio
import sqlalchemy as sa

from storage.catalog import tables as t
from storage.exceptions import ObjectNotFound

from . import pushes
from .exceptions import RecordingConflict
from .producer import Producer
from .pushes import State
from .schema import SCHEMA_V1, AudioRef, RecordingMessage, parse_message
from .service import fingerprint, recording_uuid

# Validates metadata before any audio exists: the schema wants an audio source, this stands in.
_NO_AUDIO_YET = AudioRef(bucket="callvault-landing", key="pending", size=1, sha256="0" * 64)


def check_metadata(fields: dict[str, Any], *, default_region: str = "FR") -> RecordingMessage:
    """The schema v1 rules on a call's metadata (the message's fields but the audio, as JSON
    values), exactly as the worker reads a Kafka message: InvalidMessage or a subclass, naming
    fields and error types, never a value."""
    doc = {"schema": SCHEMA_V1, **fields, "audio": {"ref": _NO_AUDIO_YET.model_dump(mode="json")}}
    return parse_message(json.dumps(doc).encode(), default_region=default_region)


def with_audio(meta: RecordingMessage, ref: AudioRef) -> RecordingMessage:
    """The message of a checked call, now that its audio has landed."""
    doc = meta.model_dump(by_alias=True, exclude_none=True, mode="json")
    doc["audio"] = {"ref": ref.model_dump(exclude_none=True, mode="json")}
    return parse_message(json.dumps(doc).encode())


@dataclass(frozen=True)
class Receipt:
    """What a pusher is told: its call's ids and state; ``replay``: it was already on record."""

    tenant: str
    external_id: str
    recording_id: uuid.UUID
    state: State
    replay: bool = False


async def enqueue(producer: Producer, engine: sa.Engine, meta: RecordingMessage, ref: AudioRef, *, door: str,
                  principal: str, now: datetime) -> Receipt:
    """Claim the call's id and send its message; the landing object goes unless it was sent."""
    msg = with_audio(meta, ref)
    rid = recording_uuid(msg.tenant, msg.recording_id)
    try:
        earlier = await anyio.to_thread.run_sync(lambda: _claim(engine, msg, rid, ref, door, principal, now))
    except BaseException:
        await anyio.to_thread.run_sync(lambda: _drop(producer, ref))
        raise
    if earlier is not None:
        await anyio.to_thread.run_sync(lambda: _drop(producer, ref))
        return earlier
    try:
        await producer.send(msg, topic=producer.kafka.tenant_topic(msg.tenant))
    except BaseException:
        await anyio.to_thread.run_sync(lambda: _unclaim(engine, rid, producer, ref))
        raise
    return Receipt(msg.tenant, msg.recording_id, rid, State.QUEUED)


def _claim(engine: sa.Engine, msg: RecordingMessage, rid: uuid.UUID, ref: AudioRef, door: str, principal: str,
           now: datetime) -> Receipt | None:
    """None: claimed, send it. A receipt: the same call is already on record, send nothing."""
    print_ = fingerprint(msg, ref.plain_sha256 or ref.sha256)
    for attempt in (1, 2):  # a concurrent push of the same id wins the insert: look again, once
        try:
            with engine.begin() as conn:
                return _claim_in(conn, msg, rid, print_, door, principal, now)
        except sa.exc.IntegrityError:
            if attempt == 2:
                raise
    return None


def _claim_in(conn: sa.Connection, msg: RecordingMessage, rid: uuid.UUID, print_: str, door: str,
              principal: str, now: datetime) -> Receipt | None:
    conflict = RecordingConflict(f"recording {msg.recording_id!r} of tenant {msg.tenant!r} was already pushed "
                                 "with other audio or redaction spans", hint="push it under a new recording id")
    stored = conn.execute(sa.select(t.recordings.c.content_sha256).where(
        t.recordings.c.tenant_id == msg.tenant, t.recordings.c.external_id == msg.recording_id)).first()
    if stored is not None:
        if stored.content_sha256 != print_:
            raise conflict
        return Receipt(msg.tenant, msg.recording_id, rid, State.STORED, replay=True)
    earlier = pushes.find(conn, rid)
    if earlier is not None and not earlier.retryable:
        if earlier.fingerprint != print_:
            raise conflict
        found = pushes.status(conn, tenant=msg.tenant, external_id=msg.recording_id, recording_id=rid)
        return Receipt(msg.tenant, msg.recording_id, rid, found.state if found else State.QUEUED, replay=True)
    pushes.accept(conn, recording_id=rid, tenant=msg.tenant, external_id=msg.recording_id, door=door,
                  principal=principal, fingerprint=print_, now=now, replace=earlier is not None)
    return None


def _unclaim(engine: sa.Engine, rid: uuid.UUID, producer: Producer, ref: AudioRef) -> None:
    with engine.begin() as conn:
        conn.execute(t.pushes.delete().where(t.pushes.c.recording_id == rid, t.pushes.c.outcome.is_(None)))
    _drop(producer, ref)


def _drop(producer: Producer, ref: AudioRef) -> None:
    try:
        producer.store.delete(ref.bucket, ref.key)
    except ObjectNotFound:
        pass
