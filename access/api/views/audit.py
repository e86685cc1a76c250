"""``GET /audit`` (a page of the trail) and ``GET /audit/verify`` (walk the hash chain): internal control.

Reading the trail is itself a decision, audited like any other. A user sees the entries of
their tenants only (a group-level user: all, including group-level and system entries);
pages are keyset cursors on ``seq`` (``after_seq`` / ``before_seq``), at most 500 entries.
Verification always covers the whole chain (and its anchors): it reports counts, not content.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.exceptions import RequestValidationError

from core.vocabulary import Action
from storage import audit

from ...policy import ALL_TENANTS, User
from ..deps import ApiContext, context, current_user, now
from ..gate import Gate
from ..models import AuditEntry, AuditPage, AuditVerification, errors

router = APIRouter(tags=["audit"])
MAX_PAGE = 500


@router.get("/audit", response_model=AuditPage, responses=errors())
def read_audit(limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
               after_seq: Annotated[int, Query(ge=0, le=2**62, description="entries after this seq")] = 0,
               before_seq: Annotated[int | None, Query(ge=1, le=2**62, description=(
                   "newest first: entries before this seq (omit for the newest page)"))] = None,
               newest_first: Annotated[bool, Query(description="page from the newest entry back")] = False,
               target_type: Annotated[str | None, Query(pattern=r"^[a-z:-]{1,40}$", description=(
                   "with target_id: only entries about this target (copy, recording, subject, user...)"))] = None,
               target_id: Annotated[str | None, Query(min_length=1, max_length=200, description=(
                   "with target_type: e.g. a copy id, to see who played, exported or retagged it"))] = None,
               user: User = Depends(current_user), at: datetime = Depends(now),
               ctx: ApiContext = Depends(context)) -> AuditPage:
    newest_first = newest_first or before_seq is not None
    if (target_type is None) != (target_id is None):
        raise RequestValidationError([{"type": "missing", "loc": ("query", "target_type" if target_id else "target_id"),
                                       "msg": "target_type and target_id go together", "input": None}])
    with ctx.unit_of_work() as uow:
        gate = Gate(uow, user, at, ctx.metrics)
        detail = {"after_seq": after_seq, "limit": limit, "before_seq": before_seq, "newest_first": newest_first,
                  "target_type": target_type, "target_id": target_id}
        detail = {k: v for k, v in detail.items() if v not in (None, False)}
        decision = gate.check(Action.AUDIT_READ, None, target_type="audit", target_id="trail", detail=detail,
                              audit_allowed=False)
        found = audit.page(uow.conn, limit=limit, tenants=None if ALL_TENANTS in user.tenants else user.tenants,
                           after_seq=after_seq, before_seq=before_seq, newest_first=newest_first,
                           target_type=target_type, target_id=target_id)
        gate.allowed(Action.AUDIT_READ, decision, target_type="audit", target_id="trail", detail=detail)
        uow.commit()
    entries = [AuditEntry(**{k: row[k] for k in AuditEntry.model_fields}) for row in found.entries]
    cursor = entries[-1].seq if found.more and entries else None
    if newest_first:
        return AuditPage(entries=entries, next_after_seq=None, next_before_seq=cursor)
    return AuditPage(entries=entries, next_after_seq=cursor)


@router.get("/audit/verify", response_model=AuditVerification, responses=errors())
def verify_audit(user: User = Depends(current_user), at: datetime = Depends(now),
                 ctx: ApiContext = Depends(context)) -> AuditVerification:
    with ctx.unit_of_work() as uow:
        gate = Gate(uow, user, at, ctx.metrics)
        decision = gate.check(Action.AUDIT_READ, None, target_type="audit", target_id="trail:verify",
                              audit_allowed=False)
        # Its own connection: ``audit.verify`` switches the connection it is given to streamed
        # results (``execution_options`` mutates it), after which an INSERT on it fails.
        with ctx.services.engine.connect() as conn:
            result = audit.verify(conn, ctx.services.anchors)
        gate.allowed(Action.AUDIT_READ, decision, target_type="audit", target_id="trail:verify",
                     detail={"ok": result.ok, "entries": result.entries})
        uow.commit()
    return AuditVerification(ok=result.ok, entries=result.entries, first_bad_seq=result.first_bad_seq,
                             problem=result.problem, anchors=result.anchors, anchored_seq=result.anchored_seq)
