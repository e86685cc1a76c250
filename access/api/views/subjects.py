"""Data-subject requests through the API (internal control), and the export download link.

    POST /subjects/object | erase | restrict | lift | rectify | export    {tenant, numbers[, ...]}
    GET  /exports/{tenant}/{request_id}.zip?user=&expires=&sig=           short-lived signed link

The export link is signed (HMAC-SHA256 with the export link key, ``tokens.link_key``) over tenant, request, user and
expiry, so it can be opened by a browser without the bearer token, for a few minutes, and
only as the user it was made for; every download is audited under that user. The ZIP is
streamed as it is built (``access.subjects.stream_export_zip``), never held whole in memory.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from datetime import datetime, timedelta, timezone
from itertools import chain
from typing import Annotated, Iterator

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from core.errors import CallvaultError
from core.phone import MAX_INPUT_LENGTH, MIN_DIGITS
from core.vocabulary import Action, AuditAction, Outcome

from ... import service
from ...exceptions import Forbidden, NotFound, Unauthenticated
from ...identities import load_user
from ...policy import User, account_state
from ...subjects import Actor, plan_export_zip, stream_export_zip
from ...tokens import LinkPurpose
from ..deps import ApiContext, context, current_user, link_key, now
from ..gate import Gate
from ..models import Text, errors

router = APIRouter(tags=["data-subject requests"])

Number = Annotated[Text, Field(min_length=MIN_DIGITS, max_length=MAX_INPUT_LENGTH, description=(
    "a phone number, any usual format, or an extension or short code exactly as telephony sent it"))]


class SubjectRequest(BaseModel):
    tenant: Annotated[Text, Field(min_length=1, max_length=64)]
    numbers: list[Number] = Field(min_length=1, max_length=100)


class RecordingsRequest(BaseModel):
    tenant: Annotated[Text, Field(min_length=1, max_length=64)]
    recording_ids: list[uuid.UUID] = Field(min_length=1, max_length=100)


class RectifyRequest(SubjectRequest):
    new_number: Number | None = None
    agent_id: Annotated[Text, Field(min_length=1, max_length=100)] | None = None
    team_id: Annotated[Text, Field(min_length=1, max_length=100)] | None = None


class KeptCopy(BaseModel):
    copy_id: str
    recording_id: str
    tier: str
    hold_reason: str | None


class ErasedCopy(BaseModel):
    copy_id: str
    recording_id: str
    tier: str


class ErasureOutcome(BaseModel):
    erased_recordings: list[str]
    erased_copies: list[ErasedCopy]
    kept_copies: list[KeptCopy] = Field(description="copies kept because of a legal hold, with its reason")
    keys_destroyed: int


class CountOutcome(BaseModel):
    recordings: int


class ExportOutcome(BaseModel):
    request_id: str
    recordings: int
    download_url: str | None = Field(description="signed link to the ZIP, valid until expires_at")
    expires_at: datetime | None


def _authorise(gate: Gate, user: User, action: AuditAction, tenant: str) -> None:
    decision = gate.decide(Action.SUBJECT_REQUEST, None)
    if not decision.allowed or not user.in_tenant(tenant):
        reason = decision.reason if not decision.allowed else f"tenant {tenant} is outside the user's tenants"
        raise gate.refuse(action, reason, target_type="tenant", target_id=tenant)
    gate.record(action, target_type="tenant", target_id=tenant, outcome=Outcome.ALLOWED, reason=decision.reason)


def _run(ctx: ApiContext, user: User, at: datetime, action: AuditAction, tenant: str, fn):
    """Authorise ``action`` on ``tenant`` (audited), then ``fn(uow, services, actor)``, one commit for both."""
    with ctx.unit_of_work() as uow:
        _authorise(Gate(uow, user, at, ctx.metrics), user, action, tenant)
        result = fn(uow, ctx.services, Actor(user.id, user.role.value))
        uow.commit()
    return result


def _erasure(report) -> ErasureOutcome:
    return ErasureOutcome(**report.as_dict())


@router.post("/subjects/object", response_model=ErasureOutcome, responses=errors())
def subjects_object(body: SubjectRequest, user: User = Depends(current_user), at: datetime = Depends(now),
                    ctx: ApiContext = Depends(context)) -> ErasureOutcome:
    return _erasure(_run(ctx, user, at, AuditAction.SUBJECT_OBJECT, body.tenant,
                         lambda uow, svc, actor: service.object_to(
                             uow, svc, tenant=body.tenant, numbers=body.numbers, actor=actor, now=at)))


@router.post("/subjects/erase", response_model=ErasureOutcome, responses=errors())
def subjects_erase(body: SubjectRequest, user: User = Depends(current_user), at: datetime = Depends(now),
                   ctx: ApiContext = Depends(context)) -> ErasureOutcome:
    return _erasure(_run(ctx, user, at, AuditAction.SUBJECT_ERASE, body.tenant, lambda uow, svc, actor: service.erase(
        uow, svc, tenant=body.tenant, numbers=body.numbers, actor=actor, now=at)))


@router.post("/subjects/erase-recordings", response_model=ErasureOutcome, responses=errors(404))
def subjects_erase_recordings(body: RecordingsRequest, user: User = Depends(current_user),
                              at: datetime = Depends(now), ctx: ApiContext = Depends(context)) -> ErasureOutcome:
    """Erase recordings by id: how a call whose number was withheld is erased."""
    return _erasure(_run(ctx, user, at, AuditAction.SUBJECT_ERASE, body.tenant,
                         lambda uow, svc, actor: service.erase_recordings(
                             uow, svc, tenant=body.tenant, recording_ids=body.recording_ids, actor=actor, now=at)))


@router.post("/subjects/restrict", response_model=CountOutcome, responses=errors())
def subjects_restrict(body: SubjectRequest, user: User = Depends(current_user), at: datetime = Depends(now),
                      ctx: ApiContext = Depends(context)) -> CountOutcome:
    return CountOutcome(recordings=_run(ctx, user, at, AuditAction.SUBJECT_RESTRICT, body.tenant,
                                        lambda uow, svc, actor: service.restrict(
                                            uow, svc, tenant=body.tenant, numbers=body.numbers, actor=actor, now=at)))


@router.post("/subjects/lift", response_model=CountOutcome, responses=errors())
def subjects_lift(body: SubjectRequest, user: User = Depends(current_user), at: datetime = Depends(now),
                  ctx: ApiContext = Depends(context)) -> CountOutcome:
    return CountOutcome(recordings=_run(ctx, user, at, AuditAction.SUBJECT_LIFT, body.tenant,
                                        lambda uow, svc, actor: service.restrict(
                                            uow, svc, tenant=body.tenant, numbers=body.numbers, actor=actor, now=at,
                                            lift=True)))


@router.post("/subjects/rectify", response_model=CountOutcome, responses=errors())
def subjects_rectify(body: RectifyRequest, user: User = Depends(current_user), at: datetime = Depends(now),
                     ctx: ApiContext = Depends(context)) -> CountOutcome:
    return CountOutcome(recordings=_run(ctx, user, at, AuditAction.SUBJECT_RECTIFY, body.tenant,
                                        lambda uow, svc, actor: service.rectify(
                                            uow, svc, tenant=body.tenant, numbers=body.numbers, actor=actor, now=at,
                                            new_number=body.new_number, agent_id=body.agent_id,
                                            team_id=body.team_id)))


def sign(key: bytes, tenant: str, request_id: str, user_id: str, expires: int) -> str:
    message = f"{tenant}\n{request_id}\n{user_id}\n{expires}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


@router.post("/subjects/export", response_model=ExportOutcome, responses=errors())
def subjects_export(body: SubjectRequest, user: User = Depends(current_user), at: datetime = Depends(now),
                    ctx: ApiContext = Depends(context)) -> ExportOutcome:
    result = _run(ctx, user, at, AuditAction.SUBJECT_EXPORT, body.tenant, lambda uow, svc, actor: service.export(
        uow, svc, tenant=body.tenant, numbers=body.numbers, actor=actor, now=at))
    if not result.recordings:
        return ExportOutcome(request_id=result.request_id, recordings=0, download_url=None, expires_at=None)
    expires = int((at + timedelta(seconds=ctx.settings.stream_url_ttl_seconds)).timestamp())
    key = link_key(ctx.settings, LinkPurpose.EXPORT)  # no secret: a clear configuration error, not a dead link
    sig = sign(key, body.tenant, result.request_id, user.id, expires)
    url = f"/exports/{body.tenant}/{result.request_id}.zip?user={user.id}&expires={expires}&sig={sig}"
    return ExportOutcome(request_id=result.request_id, recordings=result.recordings, download_url=url,
                         expires_at=datetime.fromtimestamp(expires, timezone.utc))


@router.get("/exports/{tenant}/{request_id}.zip", responses={**errors(404), 200: {"content": {"application/zip": {}}}},
            response_class=StreamingResponse)
def download_export(tenant: str, request_id: str, user: Annotated[str, Query(max_length=64)],
                    expires: Annotated[int, Query(ge=0, le=2**40)],
                    sig: Annotated[str, Query(max_length=128, description="hex HMAC")],
                    at: datetime = Depends(now), ctx: ApiContext = Depends(context)) -> StreamingResponse:
    if at.timestamp() > expires:  # before the signature: the time is in the URL, and "expired" is actionable
        raise Unauthenticated("download link expired", hint="ask for the export again")
    expected = sign(link_key(ctx.settings, LinkPurpose.EXPORT), tenant, request_id, user, expires).encode()
    if not hmac.compare_digest(expected, sig.encode("utf-8", "surrogatepass")):
        raise Unauthenticated("invalid download link")
    svc = ctx.services
    with ctx.unit_of_work() as uow:
        who = load_user(uow.conn, user)
        if who is None or account_state(who, at) is not None or not who.in_tenant(tenant):
            raise Forbidden("the link's user may no longer download this export")
        gate = Gate(uow, who, at, ctx.metrics)
        try:
            plan = plan_export_zip(uow.conn, tenant=tenant, request_id=request_id)
        except NotFound:
            raise NotFound(f"export {request_id} not found") from None
        detail = {"tenant": tenant, "files": len(plan.entries), "audio_bytes": plan.audio_bytes}
        try:  # the first chunk (256 KiB) is read now: a missing object or destroyed key is a clean error
            body = primed(stream_export_zip(plan, svc.store, svc.keys, svc.engine.connect))
        except CallvaultError as exc:
            gate.record(AuditAction.SUBJECT_EXPORT_DOWNLOAD, target_type="export", target_id=request_id,
                        outcome=Outcome.FAILED, detail={**detail, "error": exc.code})
            uow.commit()
            raise
        gate.record(AuditAction.SUBJECT_EXPORT_DOWNLOAD, target_type="export", target_id=request_id,
                    outcome=Outcome.ALLOWED, detail=detail)
        uow.commit()
    # Streamed after the commit: no transaction, no audit lock, no catalog connection is held
    # while the audio is read; memory stays at a few frames (``access.subjects.stream_export_zip``).
    headers = {"Content-Disposition": f'attachment; filename="callvault-export-{request_id}.zip"',
               "Cache-Control": "private, no-store"}
    return StreamingResponse(paced(body, ctx.settings.export_stream_mb_per_s), media_type="application/zip",
                             headers=headers)


def primed(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """The same chunks, the first one read now (before the response's headers are sent)."""
    first = next(chunks, None)
    return chunks if first is None else chain((first,), chunks)


def paced(chunks: Iterator[bytes], mb_per_s: float | None) -> Iterator[bytes]:
    """The same chunks, no faster than ``mb_per_s`` on average. Each ``next`` runs in the thread
    pool (a sync iterator), so the sleep holds a worker thread, never the event loop."""
    if not mb_per_s:
        return chunks

    def generate() -> Iterator[bytes]:
        start, sent = time.monotonic(), 0
        for chunk in chunks:
            yield chunk
            sent += len(chunk)
            ahead = sent / (mb_per_s * 1e6) - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)

    return generate()
