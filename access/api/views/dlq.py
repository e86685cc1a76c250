"""``GET /dlq``: the dead letters of the user's tenants, by reason and tenant, oldest first.

For IT and internal control (``ingest:dead-letters:read``): counts only, never a number or audio.
A dead letter whose tenant cannot be read (a message that is not JSON) belongs to no tenant:
only a group-level user sees those. Replaying is an operator's command (`callvault dlq replay`).
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from core.vocabulary import Action
from ingest.dlq import read, summary
from ingest.settings import get_kafka_settings

from ...policy import ALL_TENANTS, User
from ..deps import ApiContext, context, current_user, now
from ..gate import Gate, tenants_label
from ..models import errors

router = APIRouter(tags=["ingest"])


class DeadLetterGroup(BaseModel):
    reason: str
    tenant: str
    count: int
    oldest: datetime


class DeadLetters(BaseModel):
    generated_at: datetime
    total: int
    groups: list[DeadLetterGroup]


@router.get("/dlq", response_model=DeadLetters, responses=errors())
def dead_letters(user: User = Depends(current_user), at: datetime = Depends(now),
                 ctx: ApiContext = Depends(context)) -> DeadLetters:
    label = tenants_label(user.tenants)
    with ctx.unit_of_work() as uow:
        gate = Gate(uow, user, at, ctx.metrics)
        gate.check(Action.DLQ_READ, None, target_type="dead-letters", target_id=label, audit_allowed=False)
        mine = [d for d in asyncio.run(read(get_kafka_settings()))
                if ALL_TENANTS in user.tenants or d.tenant in user.tenants]
        groups = [DeadLetterGroup(reason=r, tenant=tn, count=n, oldest=o) for r, tn, n, o in summary(mine)]
        gate.record(Action.DLQ_READ.value, target_type="dead-letters", target_id=label, outcome="allowed",
                    detail={"dead_letters": len(mine)})
        uow.commit()
    return DeadLetters(generated_at=at, total=len(mine), groups=groups)
