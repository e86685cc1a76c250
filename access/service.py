"""Access's service layer: users, what a user may see of the recordings, and the data-subject
requests, as the CLI and the API call them.

Each function takes a unit of work and the adapters (``lifecycle.deps.Services``), runs one
request as an ``actor`` or ``user`` already authorised by the caller (the API's gate or the
CLI's ``access.operators.authorise``), and leaves the commit to the caller. The rules live in
``access.subjects`` and ``access.policy``; the search is the API's own (``access.api.search``),
so the command line and the API see the same recordings; the entries each request writes are
appended at the unit's commit.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime

from core.vocabulary import Action
from lifecycle import service as lifecycle_service
from lifecycle.deps import Services
from storage.catalog.db import UnitOfWork

from . import identities, subjects
from .api import catalog
from .api.search import Cursor, Filters, Found, search
from .policy import ALL_TENANTS, Decision, Target, User, decide
from .subjects import Actor, ErasureReport, ExportResult

__all__ = ["Actor", "Filters", "add_user", "erase", "erase_recordings", "export", "object_to", "recording_for",
           "rectify", "restrict", "search_recordings"]


def add_user(uow: UnitOfWork, *, user_id: str, role: str, tenants: list[str], teams: list[tuple[str, str, str]] = (),
             agent_id: str | None = None, contract_end: date | None = None, display_name: str | None = None) -> User:
    """Register a user of existing tenants (``*``: a group-level user, every tenant)."""
    for tenant in dict.fromkeys([*tenants, *(team[0] for team in teams)]):
        if tenant != ALL_TENANTS:
            lifecycle_service.require_tenant(uow, tenant)
    return identities.add_user(uow.conn, user_id=user_id, role=role, tenants=tenants, teams=teams,
                               agent_id=agent_id, contract_end=contract_end, display_name=display_name)


def search_recordings(uow: UnitOfWork, svc: Services, *, user: User, filters: Filters, now: datetime, limit: int,
                      cursor: Cursor | None = None) -> tuple[list[Found], Cursor | None]:
    """The API's search for ``user``: the policy rules on every candidate copy (numbers masked for IT)."""
    def rule(action: Action, target: Target) -> Decision:
        return decide(user, action, target, now=now)

    action = Action.SEARCH if filters.number is None else Action.SEARCH_BY_NUMBER
    return search(uow.conn, svc.keys, user, filters, limit=limit, cursor=cursor, decide=rule, action=action)


def recording_for(uow: UnitOfWork, svc: Services, *, user: User, recording_id: uuid.UUID,
                  now: datetime) -> Found | None:
    """A recording with the live copies ``user`` may see of it (None: none), as ``GET /recordings/{id}``."""
    rec = catalog.recording(uow.conn, recording_id)
    if rec is None:
        return None
    decided = [(copy, decide(user, Action.VIEW_METADATA, catalog.target(rec, copy), now=now))
               for copy in catalog.live_copies(uow.conn, [recording_id])]
    visible = [(copy, d) for copy, d in decided if d.allowed]
    if not visible:
        return None
    return Found(rec, [c for c, _ in visible], any(d.mask_numbers for _, d in visible),
                 svc.keys.open_number(uow.conn, rec))


def object_to(uow: UnitOfWork, svc: Services, *, tenant: str, numbers: list[str], actor: Actor,
              now: datetime) -> ErasureReport:
    """Objection: suppress the numbers for the future, erase what exists (held copies kept)."""
    return subjects.object_to_recording(uow.conn, svc.store, svc.keys, svc.ledger, tenant=tenant, numbers=numbers,
                                        actor=actor, now=now)


def erase(uow: UnitOfWork, svc: Services, *, tenant: str, numbers: list[str], actor: Actor,
          now: datetime) -> ErasureReport:
    return subjects.erase(uow.conn, svc.store, svc.keys, svc.ledger, tenant=tenant, numbers=numbers, actor=actor,
                          now=now)


def erase_recordings(uow: UnitOfWork, svc: Services, *, tenant: str, recording_ids: list[uuid.UUID], actor: Actor,
                     now: datetime) -> ErasureReport:
    """Erasure of calls by id: how a call with a withheld number is erased."""
    return subjects.erase_recordings(uow.conn, svc.store, svc.keys, svc.ledger, tenant=tenant,
                                     recording_ids=recording_ids, actor=actor, now=now)


def export(uow: UnitOfWork, svc: Services, *, tenant: str, numbers: list[str], actor: Actor,
           now: datetime) -> ExportResult:
    return subjects.export(uow.conn, svc.store, svc.keys, tenant=tenant, numbers=numbers, actor=actor, now=now)


def restrict(uow: UnitOfWork, svc: Services, *, tenant: str, numbers: list[str], actor: Actor, now: datetime,
             lift: bool = False) -> int:
    return subjects.restrict(uow.conn, svc.keys, svc.ledger, tenant=tenant, numbers=numbers, actor=actor, now=now,
                             lift=lift)


def rectify(uow: UnitOfWork, svc: Services, *, tenant: str, numbers: list[str], actor: Actor, now: datetime,
            new_number: str | None = None, agent_id: str | None = None, team_id: str | None = None) -> int:
    """Correct the number, agent or team of every recording of ``numbers``."""
    return subjects.rectify_numbers(uow.conn, svc.keys, tenant=tenant, numbers=numbers, actor=actor, now=now,
                                    caller_number=new_number, agent_id=agent_id, team_id=team_id)
