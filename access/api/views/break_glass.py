"""``POST /break-glass``: IT opens time-limited playback of one recording's named tiers with a
ticket reference.

``identities.open_break_glass`` decides and audits (allowed or denied). A denial is
committed before the 403 goes out, so the refusal stays in the trail. A length beyond this
deployment's maximum is a malformed request (422), as the schema says (``app._state_limits``).
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends
from fastapi.exceptions import RequestValidationError

from core.vocabulary import Action

from ...exceptions import Forbidden
from ...identities import open_break_glass
from ...policy import User
from .. import catalog
from ..deps import ApiContext, context, current_user, now
from ..models import BreakGlassGrant, BreakGlassRequest, errors

router = APIRouter(tags=["break-glass"])


@router.post("/break-glass", status_code=201, response_model=BreakGlassGrant, responses=errors(404))
def break_glass(body: BreakGlassRequest, user: User = Depends(current_user), at: datetime = Depends(now),
                ctx: ApiContext = Depends(context)) -> BreakGlassGrant:
    longest = ctx.settings.break_glass_max_minutes
    if body.minutes > longest:
        raise RequestValidationError([{"type": "less_than_equal", "loc": ("body", "minutes"), "ctx": {"le": longest},
                                       "msg": f"Input should be less than or equal to {longest}"}])
    with ctx.unit_of_work() as uow:
        rec = catalog.recording(uow.conn, body.recording_id)
        if rec is None or not user.in_tenant(rec["tenant_id"]):
            raise catalog.recording_not_found(body.recording_id)
        try:
            grant = open_break_glass(uow.conn, user, ticket=body.ticket, minutes=body.minutes,
                                     max_minutes=ctx.settings.break_glass_max_minutes,
                                     recording_id=body.recording_id, tiers=body.tiers, now=at)
        except Forbidden:
            ctx.metrics.decision(Action.BREAK_GLASS.value, False)
            uow.commit()
            raise
        ctx.metrics.decision(Action.BREAK_GLASS.value, True)
        uow.commit()
    return BreakGlassGrant(ticket=grant.ticket, expires_at=grant.expires_at, recording_id=grant.recording_id,
                           tiers=sorted(grant.tiers))
