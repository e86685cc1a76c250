"""``GET /copies/{id}/audio`` (playback, HTTP Range; ``HEAD`` for its headers alone) and
``GET /copies/{id}/export`` (download).

Two actions, audited apart: a listen (``recording:audio:stream``, with its byte range, and
the break-glass ticket for IT) and a download (``recording:audio:export``, internal control).
Range handling is in ``ranges``; a multi-range request gets the whole audio (200). No audio byte
leaves before the listen's entry is committed; when the first GET ran while that entry was being
committed (``_stream_audited``) and then failed, a second entry, ``failed``, names the error.

``POST /copies/{id}/stream-link`` is for an ``<audio>`` element, which cannot send a bearer:
the same decision as a listen, audited, then a URL signed for that copy and user, valid
``stream_url_ttl_seconds``. Each request made with it is decided and audited again.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import Annotated
from urllib.parse import urlencode

from anyio import to_thread
from fastapi import APIRouter, Depends, Header
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel

from core.errors import CallvaultError
from core.vocabulary import Action, Role
from storage.copies import open_copy

from ...exceptions import InvalidRange
from ...identities import active_grant, load_user
from ...policy import BreakGlass, Decision, User
from ...tokens import LinkPurpose
from .. import catalog
from ..deps import (
    ApiContext,
    Caller,
    StreamLink,
    context,
    current_user,
    link_key,
    listener,
    now,
    stream_link,
    stream_signature,
)
from ..errors import error_response
from ..gate import Gate
from ..models import errors
from ..ranges import Unsatisfiable, parse_range
from ..streaming import EXTENSIONS, AudioSpan, content_type

router = APIRouter(tags=["audio"])

_AUDIO = {"content": {"audio/ogg": {"schema": {"type": "string", "format": "binary"}},
                      "audio/flac": {"schema": {"type": "string", "format": "binary"}}}}
_RANGE_DOC = ("bytes=a-b, bytes=a- or bytes=-n (suffix). A malformed or multi-range header is ignored "
              "(the whole audio, 200).")


def _etag(copy) -> str:
    return f'"{copy["stored_sha256"][:32]}"'


def _stream(ctx: ApiContext, gate: Gate, action: Action, decision: Decision, found: catalog.CopyOf, start: int,
            end: int, detail: dict) -> AudioSpan:
    """The span, first window read; a failure to read it (object gone, key destroyed) is audited."""
    svc = ctx.services
    try:
        return AudioSpan(svc.engine, svc.store, svc.keys, found.copy["id"], start, end).prime(
            gate.uow.conn, found.copy, found.caller_key)
    except CallvaultError as exc:
        _read_failed(gate, action, decision, found, detail, exc)
        raise


def _read_failed(gate: Gate, action: Action, decision: Decision, found: catalog.CopyOf, detail: dict,
                 exc: Exception) -> None:
    gate.allowed(action, decision, target_type="copy", target_id=str(found.copy["id"]), outcome="failed",
                 detail={**detail, "error": getattr(exc, "code", "internal_error")}, target=found.target)
    gate.uow.commit()


def _openable(ctx: ApiContext, gate: Gate, decision: Decision, found: catalog.CopyOf, detail: dict) -> None:
    """The copy's data key unwraps (``KeyDestroyedError``, audited ``failed``, once erased)."""
    try:
        open_copy(gate.uow.conn, ctx.services.keys, row=found.copy, key_row=found.caller_key)
    except CallvaultError as exc:
        _read_failed(gate, Action.STREAM, decision, found, detail, exc)
        raise


def _listened(gate: Gate, decision: Decision, found: catalog.CopyOf, detail: dict) -> None:
    """The listen's ``allowed`` entry, committed."""
    gate.allowed(Action.STREAM, decision, target_type="copy", target_id=str(found.copy["id"]), detail=detail,
                 target=found.target)
    gate.uow.commit()


def _stream_audited(ctx: ApiContext, gate: Gate, decision: Decision, found: catalog.CopyOf, start: int, end: int,
                    detail: dict, overlap: bool) -> AudioSpan:
    """The span, first window read, and the decision's entry committed; nothing is returned before
    both are done, so no byte leaves before its entry is committed.

    ``overlap``: the GET runs on a reader thread while the entry is appended and committed
    (``AudioSpan.begin``); a key destroyed is audited ``failed`` alone (the copy is opened before
    the entry), a read failing after the entry committed is audited ``failed`` right after it,
    naming the error. Otherwise the window is read first and the one entry tells how it went."""
    if not overlap:
        span = _stream(ctx, gate, Action.STREAM, decision, found, start, end, detail)
        _listened(gate, decision, found, detail)
        return span
    svc = ctx.services
    try:
        primed = AudioSpan(svc.engine, svc.store, svc.keys, found.copy["id"], start, end).begin(
            gate.uow.conn, found.copy, found.caller_key)
    except CallvaultError as exc:
        _read_failed(gate, Action.STREAM, decision, found, detail, exc)
        raise
    _listened(gate, decision, found, detail)
    try:
        return primed()
    except Exception as exc:
        _read_failed(gate, Action.STREAM, decision, found, detail, exc)
        raise


def _open(uow, copy_id: uuid.UUID) -> catalog.CopyOf:
    found = catalog.copy_of(uow.conn, copy_id)
    if found is None:
        raise catalog.copy_not_found(copy_id)
    return found


@router.get("/copies/{copy_id}/audio", response_class=StreamingResponse,
            responses={200: _AUDIO, 206: {**_AUDIO, "description": "the requested byte range"},
                       **errors(404, 410), 416: {"description": "range outside the audio"}})
async def stream_audio(copy_id: uuid.UUID,
                       range_: Annotated[str | None, Header(alias="range", max_length=200,
                                                            description=_RANGE_DOC)] = None,
                       if_range: Annotated[str | None, Header(alias="if-range", max_length=200)] = None,
                       who: Caller = Depends(listener), link: StreamLink | None = Depends(stream_link),
                       at: datetime = Depends(now), ctx: ApiContext = Depends(context)) -> Response:
    # Every dependency is ``async`` (no I/O); the user, the copy, the decision, the audit and the
    # first window are all done in one worker thread (``_play``): one thread hand-off per request, on
    # at most ``playback_threads`` threads at once. The GET overlaps the audit append only while this
    # app plays few ranges at once (``OVERLAP_UP_TO``): with more, the cores are busy and a reader
    # thread per request only adds CPU.
    ctx.playing += 1  # on the event loop: no lock needed
    try:
        play = partial(_play, ctx, who, copy_id, range_, if_range, at, link is not None, ctx.playing <= OVERLAP_UP_TO)
        return await to_thread.run_sync(play, limiter=ctx.playback_threads())
    finally:
        ctx.playing -= 1


@router.head("/copies/{copy_id}/audio", include_in_schema=False)
async def audio_head(copy_id: uuid.UUID,
                     range_: Annotated[str | None, Header(alias="range", max_length=200)] = None,
                     if_range: Annotated[str | None, Header(alias="if-range", max_length=200)] = None,
                     who: Caller = Depends(listener), link: StreamLink | None = Depends(stream_link),
                     at: datetime = Depends(now), ctx: ApiContext = Depends(context)) -> Response:
    """A GET's status and headers without its audio (players and ``curl -I`` ask first): the same
    decision, audited as a listen marked ``head``; no byte of the object is read."""
    play = partial(_play, ctx, who, copy_id, range_, if_range, at, link is not None, False, head=True)
    return await to_thread.run_sync(play, limiter=ctx.playback_threads())


# Ranges in flight up to which the first GET overlaps the audit append: measured (bench.access,
# NOTES §11) 1 ms faster at the p50 with 1 listener, and 1.4 ms more CPU per request with 50.
OVERLAP_UP_TO = 2


def _read(ctx: ApiContext, who: Caller, copy_id: uuid.UUID,
          at: datetime) -> tuple[User, catalog.CopyOf, BreakGlass | None]:
    """The user, the copy and (IT) its grant, read in autocommit on one connection, released before
    the unit of work takes one (never two at once); the user admitted first (401/403 before 404)."""
    with ctx.reads() as conn:
        known = load_user(conn, who.user_id)
        found = catalog.copy_of(conn, copy_id)
        grant = active_grant(conn, known.id, found.recording["id"], at, tier=found.copy["tier"]) \
            if known is not None and found is not None and known.role is Role.IT else None
    user = who.admit(known)
    if found is None:
        raise catalog.copy_not_found(copy_id)
    return user, found, grant


def _play(ctx: ApiContext, who: Caller, copy_id: uuid.UUID, range_: str | None, if_range: str | None,
          at: datetime, via_link: bool, overlap: bool, *, head: bool = False) -> Response:
    user, found, grant = _read(ctx, who, copy_id, at)
    with ctx.unit_of_work() as uow:
        gate = Gate(uow, user, at, ctx.metrics)
        decision = gate.check(Action.STREAM, found.target, target_type="copy", target_id=str(copy_id),
                              grant=grant, audit_allowed=False)
        total, etag = found.audio_bytes, _etag(found.copy)
        audited = {"recording_id": str(found.recording["id"]), "tier": found.copy["tier"], "total": total}
        if via_link:
            audited["via"] = "stream-link"
        if head:
            audited["head"] = True
        try:
            wanted = parse_range(range_, total, if_range=if_range, etag=etag)
        except Unsatisfiable:
            gate.allowed(Action.STREAM, decision, target_type="copy", target_id=str(copy_id), outcome="failed",
                         detail={**audited, "start": None, "end": None, "unsatisfiable": True},
                         target=found.target)
            uow.commit()
            return error_response(416, InvalidRange.code, f"range outside the audio (0-{total - 1})",
                                  headers={"Content-Range": f"bytes */{total}"})
        start, end = (wanted.start, wanted.end) if wanted else (0, total - 1)
        audited.update(start=start, end=end)
        if head:  # its key opened (a GET of an erased copy is 410, so is its HEAD); no byte of the object read
            _openable(ctx, gate, decision, found, audited)
        if total and not head:
            body = _stream_audited(ctx, gate, decision, found, start, end, audited, overlap)
        else:  # an empty copy, or only its headers asked for: nothing to read, the decision audited all the same
            body = None
            _listened(gate, decision, found, audited)
    headers = {"Accept-Ranges": "bytes", "Content-Length": str(end - start + 1 if total else 0), "ETag": etag,
               "Cache-Control": "private, no-store", "Content-Disposition": "inline"}
    if wanted is not None:
        headers["Content-Range"] = wanted.content_range(total)
    status, media = 206 if wanted else 200, content_type(found.recording["audio_format"])
    if head:  # the Content-Length a GET would send; no body
        return Response(status_code=status, headers=headers, media_type=media)
    whole = b"" if body is None else body.whole
    if whole is not None:  # one window (a player's range), already read: a plain body, nothing to iterate
        return Response(whole, status_code=status, headers=headers, media_type=media)
    return StreamingResponse(body, status_code=status, headers=headers, media_type=media)


class StreamLinkIssued(BaseModel):
    url: str
    expires_at: datetime


@router.post("/copies/{copy_id}/stream-link", response_model=StreamLinkIssued, responses=errors(404))
def new_stream_link(copy_id: uuid.UUID, user: User = Depends(current_user), at: datetime = Depends(now),
                    ctx: ApiContext = Depends(context)) -> StreamLinkIssued:
    key = link_key(ctx.settings, LinkPurpose.STREAM)
    expires = int((at + timedelta(seconds=ctx.settings.stream_url_ttl_seconds)).timestamp())
    with ctx.unit_of_work() as uow:
        gate = Gate(uow, user, at, ctx.metrics)
        found = _open(uow, copy_id)
        grant = active_grant(uow.conn, user.id, found.recording["id"], at, tier=found.copy["tier"]) \
            if user.role is Role.IT else None
        gate.check(Action.STREAM, found.target, target_type="copy", target_id=str(copy_id), grant=grant,
                   detail={"recording_id": str(found.recording["id"]), "tier": found.copy["tier"],
                           "stream_link_expires": expires})
        uow.commit()
    sig = stream_signature(key, copy_id, user.id, expires)
    query = urlencode({"user": user.id, "expires": expires, "sig": sig})
    return StreamLinkIssued(url=f"/copies/{copy_id}/audio?{query}",
                            expires_at=datetime.fromtimestamp(expires, timezone.utc))


@router.get("/copies/{copy_id}/export", response_class=StreamingResponse,
            responses={200: {**_AUDIO, "description": "the whole audio as an attachment"}, **errors(404, 410)})
def export_audio(copy_id: uuid.UUID, user: User = Depends(current_user), at: datetime = Depends(now),
                 ctx: ApiContext = Depends(context)) -> Response:
    with ctx.unit_of_work() as uow:
        gate = Gate(uow, user, at, ctx.metrics)
        found = _open(uow, copy_id)
        decision = gate.check(Action.EXPORT, found.target, target_type="copy", target_id=str(copy_id),
                              audit_allowed=False)
        total = found.audio_bytes
        audited = {"recording_id": str(found.recording["id"]), "tier": found.copy["tier"], "bytes": total}
        body = _stream(ctx, gate, Action.EXPORT, decision, found, 0, total - 1, audited) if total else []
        gate.allowed(Action.EXPORT, decision, target_type="copy", target_id=str(copy_id), detail=audited,
                     target=found.target)
        uow.commit()
    media = content_type(found.recording["audio_format"])
    name = f'{found.recording["id"]}-{found.copy["tier"]}.{EXTENSIONS.get(media, "bin")}'
    return StreamingResponse(body, media_type=media, headers={
        "Content-Length": str(total), "Content-Disposition": f'attachment; filename="{name}"',
        "Cache-Control": "private, no-store"})
