"""The HTTP front door for telephony: ``POST /v1/recordings`` and ``GET /v1/recordings/{id}/status``.

One ``curl`` line from a PBX's post-recording hook: the audio is the request body, its
metadata the ``Callvault-*`` headers (the fields of schema v1, checked by the same rules as
a Kafka message; an unknown ``Callvault-*`` header is refused, as an unknown key is)::

    curl -sS --fail-with-body -H "Authorization: Bearer $TOKEN" -H "Content-Type: audio/wav" \\
         -H "Callvault-Recording-Id: 1700000000.42" -H "Callvault-Started-At: 2026-11-23T10:15:00+01:00" \\
         -H "Callvault-Agent-Id: agent-7" -H "Callvault-Caller-Number: 0612345678" \\
         --data-binary @call.wav https://callvault.example/v1/recordings

Only a ``telephony`` user pushes, for its own tenants (``recording:ingest:push``); a tenant
outside them answers 404 as one that does not exist. The body streams into the landing bucket
encrypted (``Producer.land``, one chunk in memory at a time), so ``Content-Length`` is required
(411) and bounded by the ingest limit (413). Then ``ingest.front_door`` sends the sealed
claim-check message to the tenant's topic: 202 with the status URL. The same id with the same
audio is 202 again (nothing sent twice), with other audio 409. Every push is audited with its
principal: refusals by the gate, the rest once answered (allowed, or failed with the error code).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Iterator
from urllib.parse import quote

import anyio
from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field

from core.errors import CallvaultError
from ingest import front_door, pushes
from ingest.pushes import State
from ingest.service import recording_uuid
from ingest.settings import get_ingest_settings

from ...exceptions import AccessError, BadRequest, LengthRequired, PayloadTooLarge
from ...policy import Action, User, push_target
from .. import catalog
from ..deps import ApiContext, context, current_user, now
from ..gate import Gate
from ..models import Text, errors
from ..push_headers import metadata_fields, tenant_of

router = APIRouter(tags=["telephony"])
RecordingIdPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9._:-]{1,200}$", description="telephony's recording id")]


class PushAccepted(BaseModel):
    recording_id: str = Field(description="telephony's recording id, as pushed")
    tenant: str
    status: State = Field(description="queued, or where an identical earlier push already is")
    status_url: str
    replay: bool = Field(description="the same call was already pushed: nothing was sent again")


class IngestStatus(BaseModel):
    recording_id: str
    tenant: str
    status: State
    reason: str | None = Field(None, description="a dead letter's reason code, e.g. undecodable_audio")
    at: datetime | None = None


def status_url(tenant: str, external_id: str) -> str:
    return f"/v1/recordings/{quote(external_id, safe='')}/status?tenant={quote(tenant, safe='')}"


def _audit(ctx: ApiContext, user: User, at: datetime, action: Action, tenant: str, external_id: str, *,
           outcome: str, reason: str, detail: dict | None = None) -> None:
    with ctx.unit_of_work() as uow:
        Gate(uow, user, at, ctx.metrics).record(action.value, target_type="push", target_id=external_id[:200],
                                                outcome=outcome, reason=reason, detail=detail, tenant=tenant)
        uow.commit()


def _authorise(ctx: ApiContext, user: User, at: datetime, action: Action, tenant: str, external_id: str) -> str:
    """The gate's decision on the tenant (a refusal is audited, committed and raised)."""
    with ctx.unit_of_work() as uow:
        decision = Gate(uow, user, at, ctx.metrics).check(
            action, push_target(tenant), target_type="tenant", target_id=tenant,
            detail={"recording_id": external_id[:200]}, audit_allowed=False)
        uow.commit()
    return decision.reason


def _length(request: Request) -> int:
    declared = request.headers.get("content-length")
    if declared is None or not declared.isdigit():
        raise LengthRequired("a push needs Content-Length (the audio's length goes into its encryption)",
                             hint="send the file with curl --data-binary @call.wav, not from a pipe")
    length, limit = int(declared), get_ingest_settings().max_audio_bytes
    if length > limit:
        raise PayloadTooLarge(f"the audio is {length} bytes, over the limit of {limit}",
                              hint="CALLVAULT_INGEST_MAX_AUDIO_BYTES")
    if length == 0:
        raise BadRequest("the request body is empty: it must be the audio file")
    return length


def _body(request: Request) -> Iterator[bytes]:
    """The request body, chunk by chunk, read from a worker thread (the landing upload is boto3's)."""
    stream = request.stream()
    while True:
        try:
            chunk = anyio.from_thread.run(stream.__anext__)
        except StopAsyncIteration:
            return
        if chunk:
            yield chunk


async def _land(ctx: ApiContext, request: Request, tenant: str, length: int):
    producer = await ctx.producer()
    try:
        return await anyio.to_thread.run_sync(lambda: producer.land(tenant, _body(request), length))
    except ValueError:  # the body ended before Content-Length (or ran past it): nothing landed
        raise BadRequest("the body does not match its Content-Length (interrupted upload?)") from None


@router.post("/v1/recordings", status_code=202, response_model=PushAccepted,
             responses=errors(400, 404, 409, 411, 413, 503))
async def push_recording(request: Request, user: User = Depends(current_user), at: datetime = Depends(now),
                         ctx: ApiContext = Depends(context)) -> PushAccepted:
    """Push one finished call: the audio as the body, its metadata as ``Callvault-*`` headers."""
    tenant = tenant_of(request.headers, user)
    external_id = request.headers.get("callvault-recording-id", "")
    reason = await anyio.to_thread.run_sync(lambda: _authorise(ctx, user, at, Action.PUSH, tenant, external_id))
    try:
        meta = front_door.check_metadata(metadata_fields(request.headers, tenant),
                                         default_region=get_ingest_settings().default_region)
        length = _length(request)
        ref = await _land(ctx, request, tenant, length)
        receipt = await front_door.enqueue(await ctx.producer(), ctx.services.engine, meta, ref, door="http",
                                           principal=user.id, now=at)
    except CallvaultError as exc:
        if not isinstance(exc, AccessError) or exc.status not in (403, 404):
            code = str(exc.code)  # a plain value for the lambda: ``exc`` is unbound once the block ends
            await anyio.to_thread.run_sync(lambda: _audit(ctx, user, at, Action.PUSH, tenant, external_id,
                                                          outcome="failed", reason=code))
        raise
    await anyio.to_thread.run_sync(lambda: _audit(
        ctx, user, at, Action.PUSH, tenant, external_id, outcome="allowed", reason=reason,
        detail={"door": "http", "bytes": length, "status": receipt.state.value, "replay": receipt.replay}))
    return PushAccepted(recording_id=receipt.external_id, tenant=tenant, status=receipt.state,
                        status_url=status_url(tenant, receipt.external_id), replay=receipt.replay)


@router.get("/v1/recordings/{recording_id}/status", response_model=IngestStatus, responses=errors(404))
def push_status(recording_id: RecordingIdPath, user: User = Depends(current_user), at: datetime = Depends(now),
                ctx: ApiContext = Depends(context),
                tenant: Annotated[Text | None, Query(max_length=64, description="needed with several tenants")] = None,
                ) -> IngestStatus:
    """Where a pushed call is: queued, stored, suppressed, expired on arrival, erased on arrival (an erasure
    reached it before it arrived), dead-lettered (with its reason code) or deleted since. Never a
    number."""
    tenant = tenant or tenant_of({}, user)
    with ctx.unit_of_work() as uow:
        gate = Gate(uow, user, at, ctx.metrics)
        decision = gate.check(Action.INGEST_STATUS, push_target(tenant), target_type="tenant", target_id=tenant,
                              detail={"recording_id": recording_id}, audit_allowed=False)
        found = pushes.status(uow.conn, tenant=tenant, external_id=recording_id,
                              recording_id=recording_uuid(tenant, recording_id))
        gate.record(Action.INGEST_STATUS.value, target_type="push", target_id=recording_id, tenant=tenant,
                    outcome="allowed", reason=decision.reason,
                    detail={"status": found.state.value if found else "unknown"})
        uow.commit()
    if found is None:
        raise catalog.recording_not_found(recording_id)
    return IngestStatus(recording_id=recording_id, tenant=tenant, status=found.state, reason=found.reason,
                        at=found.at)
