"""``POST /recordings/{id}/copies``: a monitoring (manager), training (coach, with a report) or
complaint-extract (internal control, with a reference) copy of a recording.

The policy rules against the copy the new one is made from (the production original while it
exists), so "may copy" means "may read that audio in that scope". The decision is audited,
then ``lifecycle.service.create_copy`` audits the copy itself; both commit together. When
every copy left is past its expiry and not held, the source is an expired one and the policy
refuses it ("expired, awaiting deletion", 403, audited) before the sweeper has deleted it.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from core.vocabulary import COPY_ACTIONS
from lifecycle import service

from ...policy import User
from .. import catalog
from ..deps import ApiContext, context, current_user, now
from ..gate import Gate
from ..models import CopyCreated, NewCopy, errors

router = APIRouter(tags=["copies"])


@router.post("/recordings/{recording_id}/copies", status_code=201, response_model=CopyCreated,
             responses={200: {"model": CopyCreated, "description": "that copy already existed"}, **errors(404)})
def new_copy(recording_id: uuid.UUID, body: NewCopy, user: User = Depends(current_user),
             at: datetime = Depends(now), ctx: ApiContext = Depends(context)) -> JSONResponse:
    with ctx.unit_of_work() as uow:
        gate = Gate(uow, user, at, ctx.metrics)
        rec = catalog.recording(uow.conn, recording_id)
        source = service.source_copy(uow, recording_id, now=at) if rec is not None else None
        if rec is None or source is None:
            raise catalog.recording_not_found(recording_id)
        gate.check(COPY_ACTIONS[body.tier], catalog.target(rec, source), target_type="recording",
                   target_id=str(recording_id), detail={"tier": body.tier, "source_copy": str(source["id"])})
        info = service.create_copy(uow, ctx.services, recording_id=recording_id, tier=body.tier, actor=user.id,
                                   role=user.role.value, now=at, reason=body.reason,
                                   training_report=body.training_report)
        uow.commit()
    created = CopyCreated(copy_id=info.copy_id, recording_id=info.recording_id, tier=info.tier.value,
                          expires_at=info.expires_at, created=info.created)
    return JSONResponse(created.model_dump(mode="json"), status_code=201 if info.created else 200)
