"""Access's service layer: the data-subject requests, as the CLI and the API call them.

Each function takes a unit of work and the adapters (``lifecycle.deps.Services``), runs one
request for one tenant as ``actor`` (already authorised by the caller: the API's gate or the
CLI's ``access.operators.authorise``), and leaves the commit to the caller. The rules live in
``access.subjects``; the entries each request writes are appended at the unit's commit.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from lifecycle.deps import Services
from storage.catalog.db import UnitOfWork

from . import subjects
from .subjects import Actor, ErasureReport, ExportResult

__all__ = ["Actor", "erase", "erase_recordings", "export", "object_to", "rectify", "restrict"]


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
    return subjects.restrict(uow.conn, svc.keys, tenant=tenant, numbers=numbers, actor=actor, now=now, lift=lift)


def rectify(uow: UnitOfWork, svc: Services, *, tenant: str, numbers: list[str], actor: Actor, now: datetime,
            new_number: str | None = None, agent_id: str | None = None, team_id: str | None = None) -> int:
    """Correct the number, agent or team of every recording of ``numbers``."""
    return subjects.rectify_numbers(uow.conn, svc.keys, tenant=tenant, numbers=numbers, actor=actor, now=now,
                                    caller_number=new_number, agent_id=agent_id, team_id=team_id)
