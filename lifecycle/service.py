"""Lifecycle's service layer: what the CLI, the API, the worker and the demo call.

Each function takes a unit of work (``storage.catalog.db.UnitOfWork``) and the adapters it
needs (``lifecycle.deps.Services``), does one thing a person asked for, and leaves the commit
to the caller: the entry point decides (and audits the decision) in the same unit, then
commits once, so the decision and its effect stand or fall together.

The rules themselves live beside: ``tiers`` (the arithmetic), ``retention`` (overrides and
their bounds), ``copies`` (the source choice and the copy), ``holds`` (the catalog flag, the
S3 legal hold and the ledger journal).
"""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa

from core.inputs import RecordingRef, tenant_slug
from core.vocabulary import Tier
from storage.catalog import tables as t
from storage.catalog.db import UnitOfWork

from . import copies, holds, retention
from .deps import Services
from .exceptions import NotFound

__all__ = ["add_tenant", "create_copy", "recording_by_external_id", "release_hold", "require_tenant",
           "resolve_recording", "set_hold", "set_retention", "source_copy", "tenant_exists", "tenant_overrides"]

tenant_overrides = retention.tenant_overrides


def tenant_exists(uow: UnitOfWork, tenant: str) -> bool:
    return uow.conn.execute(sa.select(t.tenants.c.id).where(t.tenants.c.id == tenant)).first() is not None


def add_tenant(uow: UnitOfWork, *, tenant: str, name: str | None, now: datetime) -> bool:
    """Register a client (a data controller). False if it already exists (nothing changes).
    The slug is checked here, so every entry point refuses "Bad Name!" alike (``MalformedInput``)."""
    tenant_slug(tenant)
    if tenant_exists(uow, tenant):
        return False
    uow.conn.execute(t.tenants.insert().values(id=tenant, name=name or tenant, created_at=now))
    return True


def require_tenant(uow: UnitOfWork, tenant: str) -> None:
    if not tenant_exists(uow, tenant):
        raise NotFound(f"tenant {tenant!r} does not exist", hint="add it with `callvault tenants add`")


def recording_by_external_id(uow: UnitOfWork, *, tenant: str, external_id: str) -> sa.RowMapping | None:
    """A recording by the id telephony gave it (unique per tenant)."""
    r = t.recordings.c
    return uow.conn.execute(sa.select(t.recordings).where(r.tenant_id == tenant, r.external_id == external_id)
                            ).mappings().first()


def resolve_recording(uow: UnitOfWork, ref: RecordingRef) -> uuid.UUID:
    """The catalog id of a recording named either way (``core.inputs.recording_ref``). A catalog
    id is returned as given (the caller's service says whether it exists, after the policy has
    ruled); ``TENANT/TELEPHONY_ID`` is looked up, and NotFound when there is no such call."""
    if ref.id is not None:
        return ref.id
    row = recording_by_external_id(uow, tenant=ref.tenant or "", external_id=ref.telephony_id or "")
    if row is None:
        hint = (f"`callvault recordings list --tenant {ref.tenant} --actor ...` lists its calls" if
                tenant_exists(uow, ref.tenant or "") else f"there is no tenant {ref.tenant!r}")
        raise NotFound(f"recording {ref} not found (not stored, or expired or erased)", hint=hint)
    return row["id"]


def source_copy(uow: UnitOfWork, recording_id: uuid.UUID, *, now: datetime) -> sa.RowMapping | None:
    """The copy a new copy (or an operator's decision about one) is made from: the production
    original while it is usable, else the best usable copy, else the best unusable one
    (labelled ``usable = false`` so the caller can say why)."""
    return copies.source_copy(uow.conn, recording_id, now)


def set_retention(uow: UnitOfWork, svc: Services, *, tenant: str, tier: str | Tier, months: int, now: datetime,
                  actor: str, role: str, dry_run: bool = False) -> retention.RetentionChange:
    return retention.set_retention(uow.conn, tenant=tenant, tier=str(tier), months=months, bounds=svc.bounds,
                                   now=now, ledger=svc.ledger, dry_run=dry_run, actor=actor, role=role)


def create_copy(uow: UnitOfWork, svc: Services, *, recording_id: uuid.UUID, tier: str | Tier, actor: str, role: str,
                now: datetime, reason: str = "", training_report: str | None = None) -> copies.CopyInfo:
    return copies.create_copy(uow.conn, svc.store, svc.keys, recording_id=recording_id, tier=str(tier), actor=actor,
                              role=role, now=now, reason=reason, training_report=training_report)


def set_hold(uow: UnitOfWork, svc: Services, *, reason: str, actor: str, role: str, now: datetime,
             copy_ids: list[uuid.UUID] | None = None, recording_id: uuid.UUID | None = None) -> holds.HoldResult:
    return holds.set_hold(uow.conn, svc.store, copy_ids=copy_ids, recording_id=recording_id, reason=reason,
                          actor=actor, role=role, now=now, ledger=svc.ledger)


def release_hold(uow: UnitOfWork, svc: Services, *, actor: str, role: str, now: datetime,
                 copy_ids: list[uuid.UUID] | None = None, recording_id: uuid.UUID | None = None,
                 reason: str | None = None) -> holds.HoldResult:
    return holds.release_hold(uow.conn, svc.store, copy_ids=copy_ids, recording_id=recording_id, actor=actor,
                              role=role, now=now, reason=reason, ledger=svc.ledger)
