"""The console's two JSON reads: who is signed in, and a recording with what the user may do.

``/console/api/me`` only reports the caller's own permissions (like authenticating, it is not
audited). ``/console/api/recordings/{id}`` *is* the API's detail view (audited once, 404 when
not visible) plus the decisions on each action the page could offer: those are counted but
not audited, as search's per-copy decisions are, because offering is not doing; the action
itself goes through its own view, which decides and audits again.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from fastapi import APIRouter, Depends
from fastapi.responses import RedirectResponse
from pydantic import BaseModel

from core.vocabulary import Role, Tier
from lifecycle import service

from ..api import catalog
from ..api.deps import ApiContext, context, current_user, now
from ..api.models import NewCopyTier, RecordingDetail, errors
from ..api.views.lifecycle import may_read_report
from ..api.views.recordings import recording_detail
from ..identities import active_grant
from ..policy import User
from .capabilities import CopyView, pages, recording_actions

router = APIRouter(tags=["console"])


class Me(BaseModel):
    id: str
    role: str
    tenants: list[str]
    numbers_masked: bool
    pages: dict[str, bool]
    break_glass_max_minutes: int


class CopyActionsOut(BaseModel):
    copy_id: str
    play: bool
    download: bool
    hold: bool
    release: bool


class GrantOut(BaseModel):
    ticket: str
    expires_at: datetime
    recording_id: str | None
    tiers: list[Tier]


class ActionsOut(BaseModel):
    copies: list[CopyActionsOut]
    create: list[NewCopyTier]
    hold_all: bool
    release_all: bool
    break_glass: bool
    grant: GrantOut | None


class ConsoleRecording(BaseModel):
    recording: RecordingDetail
    actions: ActionsOut


@router.get("/", include_in_schema=False)
def home() -> RedirectResponse:
    return RedirectResponse("/console/", status_code=307)


@router.get("/favicon.ico", include_in_schema=False)
def favicon() -> RedirectResponse:
    """What a browser asks for on any page without an icon link (the API's own, /docs): the console's."""
    return RedirectResponse("/console/favicon.svg", status_code=308)


@router.get("/console/api/me", response_model=Me, responses=errors())
def me(user: User = Depends(current_user), at: datetime = Depends(now),
       ctx: ApiContext = Depends(context)) -> Me:
    allowed = pages(user, at, may_read_report=may_read_report(user, at).allowed)
    return Me(id=user.id, role=user.role.value, tenants=sorted(user.tenants), numbers_masked=user.role is Role.IT,
              pages={"search": allowed.search, "audit": allowed.audit, "subjects": allowed.subjects,
                     "report": allowed.report, "break_glass": allowed.break_glass, "dlq": allowed.dlq},
              break_glass_max_minutes=ctx.settings.break_glass_max_minutes)


@router.get("/console/api/recordings/{recording_id}", response_model=ConsoleRecording, responses=errors(404))
def recording(recording_id: uuid.UUID, user: User = Depends(current_user), at: datetime = Depends(now),
              ctx: ApiContext = Depends(context)) -> ConsoleRecording:
    detail = recording_detail(recording_id, user=user, at=at, ctx=ctx)
    visible = {str(c.id): c for c in detail.copies}
    with ctx.unit_of_work() as uow:  # reads only: nothing to commit
        rec = catalog.recording(uow.conn, recording_id)
        copies = [c for c in catalog.live_copies(uow.conn, [recording_id]) if str(c["id"]) in visible] if rec else []
        source = service.source_copy(uow, recording_id, now=at) if rec else None
        grant = active_grant(uow.conn, user.id, recording_id, at) if user.role is Role.IT else None
    views = [CopyView(str(c["id"]), catalog.target(rec, c), bool(c["hold"])) for c in copies]
    decided = recording_actions(user, views, catalog.target(rec, source) if source else None, now=at,
                                grant=grant)
    return ConsoleRecording(recording=detail, actions=ActionsOut(
        copies=[CopyActionsOut(**vars(c)) for c in decided.copies], create=decided.create,
        hold_all=decided.hold_all, release_all=decided.release_all, break_glass=decided.break_glass,
        grant=GrantOut(ticket=grant.ticket, expires_at=grant.expires_at, recording_id=grant.recording_id,
                       tiers=sorted(grant.tiers))
        if grant else None))
