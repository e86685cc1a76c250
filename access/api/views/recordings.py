"""Search (``GET /recordings``; ``POST /recordings/search`` when a number is among the filters)
and ``GET /recordings/{id}`` (detail): only what the caller may see.

One audit entry per search (the filters, never the number: only whether one was given) and
one per detail view. A recording the caller may not see answers 404, as if it did not exist.
Pages are cut by an opaque keyset ``cursor`` (``search.Cursor``), at most 200 per page.
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import datetime, timezone
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from core.errors import FieldError, InvalidInput
from core.vocabulary import Action, Role
from storage.copies import plaintext_length

from ...exceptions import BadRequest
from ...identities import active_grants
from ...policy import Decision, Target, User
from .. import catalog
from ..deps import ApiContext, Caller, caller, context, current_user, now
from ..gate import Gate, tenants_label
from ..models import (
    MAX_PAGE,
    CopyDetail,
    CopySummary,
    RecordingDetail,
    RecordingSummary,
    SearchRequest,
    SearchResult,
    Text,
    Tier,
    errors,
)
from ..search import Cursor, Filters, Found, search

router = APIRouter(tags=["recordings"])

Filter = Annotated[Text | None, Query(max_length=100)]


def _aware(value: datetime | None, name: str) -> datetime | None:
    """Query datetimes without an offset are read as UTC."""
    if value is None:
        return None
    try:
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    except OverflowError:
        raise InvalidInput(f"{name} is outside the supported dates",
                           errors=[FieldError(("query", name), "datetime_range", "outside the supported dates")],
                           hint="give a date between the years 0002 and 9998") from None


def copy_summary(copy) -> CopySummary:
    return CopySummary(id=copy["id"], tier=copy["tier"], expires_at=copy["expires_at"], hold=copy["hold"],
                       audio_bytes=plaintext_length(copy["size_bytes"], copy["frame_size"]),
                       stored_bytes=copy["size_bytes"])


def _summary(found: Found) -> RecordingSummary:
    rec = found.recording
    return RecordingSummary(
        id=rec["id"], tenant=rec["tenant_id"], external_id=rec["external_id"], started_at=rec["started_at"],
        direction=rec["direction"], caller_number=found.caller_number, numbers_masked=found.mask_numbers,
        agent_id=rec["agent_id"], team_id=rec["team_id"], duration_ms=rec["duration_ms"],
        audio_format=rec["audio_format"], restricted=rec["restricted"], copies=[copy_summary(c) for c in found.copies])


NUMBER_IN_URL = ("a number never goes in a URL (proxy logs, browser history): "
                 "search by number with POST /recordings/search and a JSON body")


@router.get("/recordings", response_model=SearchResult, responses=errors(400))
def search_recordings(
    request: Request,
    agent: Filter = None,
    team: Filter = None,
    start: Annotated[datetime | None, Query(alias="from", description="calls started at or after")] = None,
    end: Annotated[datetime | None, Query(alias="to", description="calls started before")] = None,
    tier: Tier | None = None,
    tenant: Annotated[Text | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[Text | None, Query(max_length=200, description="the next_cursor of the previous page")] = None,
    who: Caller = Depends(caller), at: datetime = Depends(now), ctx: ApiContext = Depends(context),
) -> Response:
    """Search without a number (a ``number`` parameter is refused: use ``POST /recordings/search``)."""
    user = who.load()
    if "number" in request.query_params:
        raise BadRequest(NUMBER_IN_URL)
    filters = Filters(agent=agent, team=team, start=_aware(start, "from"), end=_aware(end, "to"), tier=tier,
                      tenant=tenant)
    return _search(ctx, user, at, filters, limit, cursor)


@router.post("/recordings/search", response_model=SearchResult, responses=errors(400))
def search_recordings_by_body(body: SearchRequest, who: Caller = Depends(caller), at: datetime = Depends(now),
                              ctx: ApiContext = Depends(context)) -> Response:
    """Search with any filter, the caller's number included, in the body. IT may filter by
    number only under an active break-glass grant, and then sees the granted recordings only."""
    user = who.load()
    filters = Filters(number=body.number, agent=body.agent, team=body.team, start=_aware(body.start, "from"),
                      end=_aware(body.end, "to"), tier=body.tier, tenant=body.tenant)
    return _search(ctx, user, at, filters, body.limit, body.cursor)


def _search(ctx: ApiContext, user: User, at: datetime, filters: Filters, limit: int,
            cursor_text: str | None) -> Response:
    cursor = Cursor.decode(cursor_text) if cursor_text else None
    action = Action.SEARCH if filters.number is None else Action.SEARCH_BY_NUMBER
    target_id = filters.tenant or tenants_label(user.tenants)
    with ctx.unit_of_work() as uow:
        gate = Gate(uow, user, at, ctx.metrics)
        grants = active_grants(uow.conn, user.id, at) if action is Action.SEARCH_BY_NUMBER and user.role is Role.IT \
            else None
        evidence = next(iter(grants.values()), None) if grants else None
        decision = gate.check(action, None, target_type="recordings", target_id=target_id,
                              detail=filters.audited(), audit_allowed=False, grant=evidence)

        tally: Counter = Counter()

        def decide(act: Action, target: Target) -> Decision:
            return gate.decide(act, target, grant=grants.get(target.recording_id or "") if grants else None,
                               tally=tally)

        page, following = search(uow.conn, ctx.services.keys, user, filters, limit=limit, cursor=cursor,
                                 decide=decide, action=action,
                                 only=frozenset(grants) if grants is not None else None)
        gate.count(tally)
        detail = {**filters.audited(), "limit": limit, "cursor": cursor is not None, "results": len(page)}
        if grants is not None:
            detail["tickets"] = sorted({g.ticket for g in grants.values()})
        gate.allowed(action, decision, target_type="recordings", target_id=target_id, detail=detail)
        uow.commit()
    result = SearchResult(items=[_summary(f) for f in page], limit=limit,
                          next_cursor=following.encode() if following else None)
    # Serialised here (the model's own JSON, what FastAPI would send): returned as a model, it would
    # be validated again and serialised in one more worker-thread hand-off.
    return Response(result.model_dump_json(), media_type="application/json")


@router.get("/recordings/{recording_id}", response_model=RecordingDetail, responses=errors(404))
def recording_detail(recording_id: uuid.UUID, user: User = Depends(current_user), at: datetime = Depends(now),
                     ctx: ApiContext = Depends(context)) -> RecordingDetail:
    with ctx.unit_of_work() as uow:
        gate = Gate(uow, user, at, ctx.metrics)
        rec = catalog.recording(uow.conn, recording_id)
        if rec is None:
            raise catalog.recording_not_found(recording_id)
        visible: list[tuple] = []
        last: Decision | None = None
        for copy in catalog.live_copies(uow.conn, [recording_id]):
            last = gate.decide(Action.VIEW_METADATA, catalog.target(rec, copy))
            if last.allowed:
                visible.append((copy, last))
        if not visible:
            reason = last.reason if last is not None else "no copy left"
            raise gate.refuse(Action.VIEW_METADATA.value, reason, target_type="recording",
                              target_id=str(recording_id), error=catalog.recording_not_found(recording_id))
        decision = visible[0][1]
        gate.allowed(Action.VIEW_METADATA, decision, target_type="recording", target_id=str(recording_id),
                     detail={"copies": [str(c["id"]) for c, _ in visible]})
        uow.commit()
    copies = [c for c, _ in visible]
    with ctx.services.engine.connect() as conn:
        number = ctx.services.keys.open_number(conn, rec)
    found = Found(rec, copies, any(d.mask_numbers for _, d in visible), number)
    unheld = [c["expires_at"] for c in copies if not c["hold"]]
    base = _summary(found).model_dump(exclude={"copies"})
    return RecordingDetail(
        **base, restricted_at=rec["restricted_at"], created_at=rec["created_at"],
        redactions=[{"start_ms": a, "end_ms": b} for a, b in (rec["redactions"] or [])],
        retained_until=max(unheld) if unheld else None, held=any(c["hold"] for c in copies),
        copies=[CopyDetail(**copy_summary(c).model_dump(), created_at=c["created_at"], created_by=c["created_by"],
                           reason=c["reason"], has_training_report=c["training_report"] is not None,
                           hold_reason=c["hold_reason"], hold_actor=c["hold_actor"], hold_at=c["hold_at"])
                for c in copies])
