"""``GET /lifecycle/report``: per tenant and tier, copies and bytes now, and what expires soon.

The policy has no action for reading this report, so the rule lives here, stated once:
internal control and IT (whose jobs are retention and sweeps), for their own tenants, with the
account checks of every decision. It is audited as ``lifecycle:report:view``.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends

from core.vocabulary import Action, Role
from lifecycle.report import lifecycle_report

from ...policy import Decision, User, account_state
from ..deps import ApiContext, context, current_user, now
from ..gate import Gate, tenants_label
from ..models import LifecycleReport, ReportRow, errors

router = APIRouter(tags=["lifecycle"])

REPORT_ROLES = frozenset({Role.INTERNAL_CONTROL, Role.IT})


def may_read_report(user: User, at: datetime) -> Decision:
    refused = account_state(user, at)
    if refused:
        return refused
    if user.role in REPORT_ROLES:
        return Decision(True, f"{user.role.value} reads the lifecycle report of its tenants")
    return Decision(False, f"{user.role.value} may not read the lifecycle report")


@router.get("/lifecycle/report", response_model=LifecycleReport, responses=errors())
def report(user: User = Depends(current_user), at: datetime = Depends(now),
           ctx: ApiContext = Depends(context)) -> LifecycleReport:
    tenants = sorted(user.tenants)
    with ctx.unit_of_work() as uow:
        gate = Gate(uow, user, at, ctx.metrics)
        decision = may_read_report(user, at)
        ctx.metrics.decision(Action.REPORT_VIEW, decision.allowed)
        if not decision.allowed:
            raise gate.refuse(Action.REPORT_VIEW, decision.reason, target_type="tenant",
                              target_id=tenants_label(tenants))
        rows = lifecycle_report(uow.conn, now=at, tenants=tenants)
        gate.record(Action.REPORT_VIEW, target_type="tenant", target_id=tenants_label(tenants), outcome="allowed",
                    reason=decision.reason)
        uow.commit()
    return LifecycleReport(generated_at=at, tenants=tenants, rows=[
        ReportRow(tenant=r.tenant, tier=r.tier, copies=r.copies, bytes=r.bytes, held=r.held,
                  expiring={str(days): n for days, n in r.expiring.items()}) for r in rows])
