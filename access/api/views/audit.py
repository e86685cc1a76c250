"""``GET /audit`` (a page of the trail) and ``GET /audit/verify`` (walk the hash chain): internal control.

Reading the trail is itself a decision, audited like any other.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query

from storage.catalog import tables as t

from ... import audit
from ...policy import Action, User
from ..deps import ApiContext, context, current_user, now
from ..gate import Gate
from ..models import AuditEntry, AuditPage, AuditVerification, errors

router = APIRouter(tags=["audit"])


@router.get("/audit", response_model=AuditPage, responses=errors())
def read_audit(limit: Annotated[int, Query(ge=1, le=1000)] = 100,
               after_seq: Annotated[int, Query(ge=0, le=2**62, description="entries after this seq")] = 0,
               user: User = Depends(current_user), at: datetime = Depends(now),
               ctx: ApiContext = Depends(context)) -> AuditPage:
    with ctx.unit_of_work() as uow:
        gate = Gate(uow, user, at, ctx.metrics)
        detail = {"after_seq": after_seq, "limit": limit}
        decision = gate.check(Action.AUDIT_READ, None, target_type="audit", target_id="trail", detail=detail,
                              audit_allowed=False)
        a = t.audit_events
        rows = list(uow.conn.execute(sa.select(a).where(a.c.seq > after_seq).order_by(a.c.seq).limit(limit + 1))
                    .mappings())
        gate.allowed(Action.AUDIT_READ, decision, target_type="audit", target_id="trail", detail=detail)
        uow.commit()
    more = len(rows) > limit
    entries = [AuditEntry(**{k: row[k] for k in AuditEntry.model_fields}) for row in rows[:limit]]
    return AuditPage(entries=entries, next_after_seq=entries[-1].seq if more and entries else None)


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
            result = audit.verify(conn)
        gate.allowed(Action.AUDIT_READ, decision, target_type="audit", target_id="trail:verify",
                     detail={"ok": result.ok, "entries": result.entries})
        uow.commit()
    return AuditVerification(ok=result.ok, entries=result.entries, first_bad_seq=result.first_bad_seq,
                             problem=result.problem)
