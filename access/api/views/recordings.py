"""``GET /recordings`` (search) and ``GET /recordings/{id}`` (detail): only what the caller may see.

One audit entry per search (the filters, never the number: only whether one was given) and
one per detail view. A recording the caller may not see answers 404, as if it did not exist.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from storage.copies import plaintext_length

from ...exceptions import BadRequest, NotFound
from ...policy import Action, Decision, User
from .. import catalog
from ..deps import ApiContext, context, current_user, now
from ..gate import Gate, tenants_label
from ..models import CopyDetail, CopySummary, RecordingDetail, RecordingSummary, SearchResult, Text, Tier, errors
from ..search import Filters, Found, search

router = APIRouter(tags=["recordings"])

Filter = Annotated[Text | None, Query(max_length=100)]


def _aware(value: datetime | None, name: str) -> datetime | None:
    """Query datetimes without an offset are read as UTC."""
    if value is None:
        return None
    try:
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    except OverflowError:
        raise BadRequest(f"{name} is outside the supported dates") from None


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


@router.get("/recordings", response_model=SearchResult, responses=errors(400))
def search_recordings(
    number: Annotated[Text | None, Query(max_length=64, description="caller number, any usual format")] = None,
    agent: Filter = None,
    team: Filter = None,
    start: Annotated[datetime | None, Query(alias="from", description="calls started at or after")] = None,
    end: Annotated[datetime | None, Query(alias="to", description="calls started before")] = None,
    tier: Tier | None = None,
    tenant: Annotated[Text | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
    user: User = Depends(current_user), at: datetime = Depends(now), ctx: ApiContext = Depends(context),
) -> SearchResult:
    filters = Filters(number=number, agent=agent, team=team, start=_aware(start, "from"), end=_aware(end, "to"),
                      tier=tier, tenant=tenant)
    target_id = tenant or tenants_label(user.tenants)
    with ctx.unit_of_work() as uow:
        gate = Gate(uow, user, at, ctx.metrics)
        decision = gate.check(Action.SEARCH, None, target_type="recordings", target_id=target_id,
                              detail=filters.audited(), audit_allowed=False)
        page, more = search(uow.conn, ctx.services.keys, user, filters, limit=limit, offset=offset,
                            decide=gate.decide)
        gate.allowed(Action.SEARCH, decision, target_type="recordings", target_id=target_id,
                     detail={**filters.audited(), "limit": limit, "offset": offset, "results": len(page)})
        uow.commit()
    return SearchResult(items=[_summary(f) for f in page], limit=limit, offset=offset,
                        next_offset=offset + len(page) if more else None)


@router.get("/recordings/{recording_id}", response_model=RecordingDetail, responses=errors(404))
def recording_detail(recording_id: uuid.UUID, user: User = Depends(current_user), at: datetime = Depends(now),
                     ctx: ApiContext = Depends(context)) -> RecordingDetail:
    with ctx.unit_of_work() as uow:
        gate = Gate(uow, user, at, ctx.metrics)
        rec = catalog.recording(uow.conn, recording_id)
        if rec is None:
            raise NotFound(f"recording {recording_id} not found")
        visible: list[tuple] = []
        last: Decision | None = None
        for copy in catalog.live_copies(uow.conn, [recording_id]):
            last = gate.decide(Action.VIEW_METADATA, catalog.target(rec, copy))
            if last.allowed:
                visible.append((copy, last))
        if not visible:
            reason = last.reason if last is not None else "no copy left"
            raise gate.refuse(Action.VIEW_METADATA.value, reason, target_type="recording",
                              target_id=str(recording_id), error=NotFound(f"recording {recording_id} not found"))
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
