"""Legal holds through the API: on one copy, or on every copy of a recording (internal control).

Every copy concerned must pass the policy (``copy:hold:set`` / ``copy:hold:release``);
one refusal refuses the whole request. The decision is audited once per request target, and
``lifecycle.holds`` audits each copy it changes.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from core.vocabulary import Action
from lifecycle import service
from lifecycle.holds import HoldResult

from ...policy import User
from .. import catalog
from ..deps import ApiContext, context, current_user, now
from ..gate import Gate
from ..models import HoldOutcome, HoldRequest, Text, errors

router = APIRouter(tags=["holds"])

ReleaseReason = Annotated[Text | None, Query(max_length=500, description="why the hold ends (audited)")]


def _outcome(result: HoldResult) -> HoldOutcome:
    return HoldOutcome(changed=result.changed, unchanged=result.unchanged, refused=result.refused,
                       mirrored=result.mirrored)


def _targets(conn, copy_id: uuid.UUID | None, recording_id: uuid.UUID | None) -> tuple[str, str, list[tuple]]:
    """(target type, target id, [(recording, copy), ...]) of a hold request; live copies only."""
    if copy_id is not None:
        found = catalog.copy_of(conn, copy_id)
        return "copy", str(copy_id), [(found.recording, found.copy)] if found else []
    rec = catalog.recording(conn, recording_id) if recording_id is not None else None
    copies = catalog.live_copies(conn, [recording_id]) if rec is not None and recording_id is not None else []
    return "recording", str(recording_id), [(rec, c) for c in copies]


def _hold(ctx: ApiContext, user: User, at: datetime, action: Action, *, copy_id: uuid.UUID | None = None,
          recording_id: uuid.UUID | None = None, reason: str | None) -> HoldOutcome:
    with ctx.unit_of_work() as uow:
        gate = Gate(uow, user, at, ctx.metrics)
        target_type, target_id, pairs = _targets(uow.conn, copy_id, recording_id)
        if not pairs:
            raise catalog.not_found(target_type, target_id)
        detail = {"copies": [str(c["id"]) for _, c in pairs]}
        for rec, copy in pairs:
            gate.check(action, catalog.target(rec, copy), target_type=target_type, target_id=target_id,
                       detail=detail, audit_allowed=False)
        gate.record(action.value, target_type=target_type, target_id=target_id, outcome="allowed", reason=reason,
                    detail=detail)
        ids = [c["id"] for _, c in pairs]
        if action is Action.HOLD:
            result = service.set_hold(uow, ctx.services, copy_ids=ids, reason=reason or "", actor=user.id,
                                      role=user.role.value, now=at)
        else:
            result = service.release_hold(uow, ctx.services, copy_ids=ids, actor=user.id, role=user.role.value,
                                          now=at, reason=reason)
        uow.commit()
    return _outcome(result)


@router.post("/copies/{copy_id}/hold", response_model=HoldOutcome, responses=errors(404))
def hold_copy(copy_id: uuid.UUID, body: HoldRequest, user: User = Depends(current_user),
              at: datetime = Depends(now), ctx: ApiContext = Depends(context)) -> HoldOutcome:
    return _hold(ctx, user, at, Action.HOLD, copy_id=copy_id, reason=body.reason)


@router.delete("/copies/{copy_id}/hold", response_model=HoldOutcome, responses=errors(404))
def release_copy(copy_id: uuid.UUID, reason: ReleaseReason = None, user: User = Depends(current_user),
                 at: datetime = Depends(now), ctx: ApiContext = Depends(context)) -> HoldOutcome:
    return _hold(ctx, user, at, Action.RELEASE_HOLD, copy_id=copy_id, reason=reason)


@router.post("/recordings/{recording_id}/hold", response_model=HoldOutcome, responses=errors(404))
def hold_recording(recording_id: uuid.UUID, body: HoldRequest, user: User = Depends(current_user),
                   at: datetime = Depends(now), ctx: ApiContext = Depends(context)) -> HoldOutcome:
    return _hold(ctx, user, at, Action.HOLD, recording_id=recording_id, reason=body.reason)


@router.delete("/recordings/{recording_id}/hold", response_model=HoldOutcome, responses=errors(404))
def release_recording(recording_id: uuid.UUID, reason: ReleaseReason = None, user: User = Depends(current_user),
                      at: datetime = Depends(now), ctx: ApiContext = Depends(context)) -> HoldOutcome:
    return _hold(ctx, user, at, Action.RELEASE_HOLD, recording_id=recording_id, reason=reason)
