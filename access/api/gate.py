"""Decide, count and audit in one step, inside the request's unit of work.

An allowed decision is audited in the same transaction as what it allows, so the entry and
the effect commit together. A denial is audited and *committed* before the refusal is
raised: leaving the unit of work rolls back, and a refusal must never vanish with it.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from core.vocabulary import Action
from storage import audit
from storage.catalog import tables as t
from storage.catalog.db import UnitOfWork

from ..exceptions import AccessError, Forbidden
from ..policy import ALL_TENANTS, BreakGlass, Decision, Target, User, decide
from . import catalog
from .metrics import ApiMetrics

_TARGET_ID_MAX = 200  # audit_events.target_id
_DERIVE = "derive"  # the tenant of an entry, unless given: see ``Gate.tenant_of``


def tenants_label(tenants) -> str:
    """A target id naming a set of tenants; a long list is summarised to fit the column."""
    label = ",".join(sorted(tenants))
    return label if len(label) <= _TARGET_ID_MAX else f"{len(tenants)} tenants"


@dataclass
class Gate:
    uow: UnitOfWork
    user: User
    now: datetime
    metrics: ApiMetrics

    def tenant_of(self, target_type: str, target_id: str, target: Target | None = None) -> str | None:
        """The tenant an entry is about: the decision's target's; a recording's or a copy's; a
        ``tenant`` target; else the user's only tenant; else None (group-level)."""
        if target is not None:
            return target.tenant
        if target_type in ("recording", "copy"):
            try:
                ident = uuid.UUID(target_id)
            except ValueError:
                ident = None
            if ident is not None:
                r, c = t.recordings, t.copies
                query = (sa.select(r.c.tenant_id).where(r.c.id == ident) if target_type == "recording" else
                         sa.select(r.c.tenant_id).join(c, c.c.recording_id == r.c.id).where(c.c.id == ident))
                found = self.uow.conn.execute(query).scalar()
                if found is not None:
                    return found
        if target_type == "tenant" and target_id and "," not in target_id and target_id != ALL_TENANTS:
            return target_id
        mine = self.user.tenants - {ALL_TENANTS}
        return next(iter(mine)) if len(mine) == 1 and ALL_TENANTS not in self.user.tenants else None

    def record(self, action: str, *, target_type: str, target_id: str, outcome: str, reason: str | None = None,
               detail: dict[str, Any] | None = None, tenant: str | None = _DERIVE,
               target: Target | None = None) -> None:
        if tenant == _DERIVE:
            tenant = self.tenant_of(target_type, target_id, target)
        audit.append(self.uow.conn, tenant=tenant, actor=self.user.id, role=self.user.role.value, action=action,
                     target_type=target_type, target_id=target_id, outcome=outcome, reason=reason,
                     detail=detail, at=self.now)

    def refuse(self, action: str, reason: str, *, target_type: str, target_id: str,
               detail: dict[str, Any] | None = None, error: AccessError | None = None,
               tenant: str | None = _DERIVE, target: Target | None = None) -> AccessError:
        """Audit and commit a denial; returns the error for the caller to raise."""
        self.record(action, target_type=target_type, target_id=target_id, outcome="denied", reason=reason,
                    detail=detail, tenant=tenant, target=target)
        self.uow.commit()
        return error or Forbidden(reason)

    def decide(self, action: Action, target: Target | None, *, grant: BreakGlass | None = None,
               tally: Counter | None = None) -> Decision:
        """The policy's decision, counted but not audited (search rules on many copies, audits once).
        ``tally``: counted there instead, for ``count`` to add at once (a page's copies: one
        metric update per outcome, not one per copy)."""
        decision = decide(self.user, action, target, now=self.now, grant=grant)
        if tally is None:
            self.metrics.decision(action.value, decision.allowed)
        else:
            tally[action.value, decision.allowed] += 1
        return decision

    def count(self, tally: Counter) -> None:
        for (action, allowed), count in tally.items():
            self.metrics.decision(action, allowed, count)

    def check(self, action: Action, target: Target | None, *, target_type: str, target_id: str,
              grant: BreakGlass | None = None, detail: dict[str, Any] | None = None, audit_allowed: bool = True,
              denied: AccessError | None = None) -> Decision:
        """The policy's decision; a denial is audited, committed and raised (``denied`` or 403).

        A target outside the user's tenants is refused as if it did not exist: the 404 of a
        missing recording or copy, byte for byte (the audit entry keeps the true reason)."""
        decision = self.decide(action, target, grant=grant)
        if not decision.allowed:
            if target is not None and not self.user.in_tenant(target.tenant):
                denied = catalog.not_found(target_type, target_id)
            raise self.refuse(action.value, decision.reason, target_type=target_type, target_id=target_id,
                              detail=detail, error=denied, target=target)
        if audit_allowed:
            self.allowed(action, decision, target_type=target_type, target_id=target_id, detail=detail,
                         target=target)
        return decision

    def allowed(self, action: Action, decision: Decision, *, target_type: str, target_id: str,
                detail: dict[str, Any] | None = None, outcome: str = "allowed", tenant: str | None = _DERIVE,
                target: Target | None = None) -> None:
        self.record(action.value, target_type=target_type, target_id=target_id, outcome=outcome,
                    tenant=tenant, target=target,
                    reason=decision.ticket or decision.reason,
                    detail={**(detail or {}), **({"ticket": decision.ticket} if decision.ticket else {})} or None)
