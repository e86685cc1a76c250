"""Who runs a CLI command: the ``--actor`` is a registered user whose role the policy allows.

The API's gate for the command line. ``authorise`` loads the actor from the catalog, asks
``policy.decide`` about the command's action (on each copy it touches, or on the tenant it
names) and audits the decision, allowed or denied, with the operating-system user who ran
the command (``getpass.getuser()``) in the entry's detail: a free-text actor proves nothing,
the OS account at least says whose shell it was. A denial is committed before it is raised,
and raised as one ``Forbidden`` line (the CLI prints it without a traceback, exit code 1).
"""

from __future__ import annotations

import getpass
import uuid
from datetime import datetime
from typing import Iterable

import sqlalchemy as sa

from core.vocabulary import Action
from lifecycle import service
from storage import audit
from storage.catalog import tables as t
from storage.catalog.db import UnitOfWork

from .exceptions import Forbidden
from .identities import load_user
from .policy import ALL_TENANTS, EXTRA, Target, User, account_state, decide


def os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER (some containers)
        return "unknown"


def authorise(engine: sa.Engine, actor: str, action: Action, *, now: datetime, target_type: str, target_id: str,
              tenant: str | None = None, targets: Iterable[Target] | None = None, any_target: bool = False,
              own_tenants: bool = False, detail: dict | None = None) -> User:
    """The actor as a ``policy.User``, once the policy allows ``action``; Forbidden otherwise.

    ``targets``: the copies the command acts on, each of which must be allowed (``any_target``:
    at least one, as when showing what the user may see of a recording; none found: the role
    must be one that may take that action at all; the service then says what is missing).
    ``None``: a global action, confined to ``tenant`` when one is given, else to the user's own
    tenants when ``own_tenants`` (a search), else acting on every tenant (group-level users).
    ``detail`` goes into the audit entry beside the OS user."""
    detail = {**(detail or {}), "os_user": os_user(), "via": "cli"}
    targets = None if targets is None else list(targets)
    # The tenant the entry is about: the one named, or the one every target belongs to.
    about = tenant or (targets[0].tenant if targets and len({tg.tenant for tg in targets}) == 1 else None)
    refused: Forbidden | None = None
    with engine.begin() as conn:  # the entry commits, allowed or denied, before anything is raised
        user = load_user(conn, actor)
        if user is None:
            reason = f"--actor {actor!r} is not a registered user"
            _record(conn, about, actor[:100], "unknown", action, target_type, target_id, "denied", reason, detail,
                    now)
            refused = Forbidden(reason, hint="`callvault users add` registers one")
        else:
            reason = _refusal(user, action, tenant, targets, now, any_target=any_target, own_tenants=own_tenants)
            outcome = "allowed" if reason is None else "denied"
            _record(conn, about, user.id, user.role.value, action, target_type, target_id, outcome,
                    reason or "cli", detail, now)
            if reason is not None:
                refused = Forbidden(f"--actor {actor!r} ({user.role.value}) may not {action.value}: {reason}")
    if refused is not None:
        raise refused
    assert user is not None
    return user


def _refusal(user: User, action: Action, tenant: str | None, targets: list[Target] | None,
             now: datetime, *, any_target: bool = False, own_tenants: bool = False) -> str | None:
    if targets == []:
        refused = account_state(user, now)
        if refused is not None:
            return refused.reason
        return None if action in EXTRA[user.role] else f"{user.role.value} may not {action.value}"
    if targets is None:
        decision = decide(user, action, None, now=now)
        if not decision.allowed:
            return decision.reason
        if tenant is not None and not user.in_tenant(tenant):
            return f"tenant {tenant} is outside the user's tenants"
        if tenant is None and ALL_TENANTS not in user.tenants and not own_tenants:
            return "without a tenant it acts on every tenant: group-level users only (name a tenant of yours)"
        return None
    refusals = [d.reason for d in (decide(user, action, target, now=now) for target in targets) if not d.allowed]
    if any_target and len(refusals) < len(targets):
        return None
    return refusals[0] if refusals else None


def _record(conn: sa.Connection, tenant: str | None, actor: str, role: str, action: Action, target_type: str,
             target_id: str, outcome: str, reason: str, detail: dict, now: datetime) -> None:
    audit.append(conn, tenant=tenant, actor=actor, role=role, action=action.value, target_type=target_type,
                 target_id=target_id[:200], outcome=outcome, reason=reason, detail=detail, at=now)


def _target(rec, copy) -> Target:
    # The same target as the API's (``access.api.catalog.target``), without importing the API.
    return Target(tenant=rec["tenant_id"], tier=copy["tier"], agent_id=rec["agent_id"], team_id=rec["team_id"],
                  restricted=bool(rec["restricted"]), recording_id=str(rec["id"]), expires_at=copy["expires_at"],
                  held=bool(copy["hold"]))


def _recording(conn: sa.Connection, recording_id: uuid.UUID):
    return conn.execute(sa.select(t.recordings).where(t.recordings.c.id == recording_id)).mappings().first()


def copy_targets(engine: sa.Engine, copy_ids: list[uuid.UUID] | None,
                 recording_id: uuid.UUID | None) -> list[Target]:
    """The policy targets of the live copies a hold command names (by copy, or every copy of a recording)."""
    live = t.copies.c.deleting_at.is_(None)
    with engine.connect() as conn:
        if copy_ids:
            where = [live, t.copies.c.id.in_(copy_ids)]
        elif recording_id is not None:
            where = [live, t.copies.c.recording_id == recording_id]
        else:
            return []
        copies = list(conn.execute(sa.select(t.copies).where(*where)).mappings())
        recordings = {c["recording_id"]: _recording(conn, c["recording_id"]) for c in copies}
        return [_target(recordings[c["recording_id"]], c) for c in copies if recordings[c["recording_id"]]]


def source_target(engine: sa.Engine, recording_id: uuid.UUID, now: datetime) -> list[Target]:
    """The target a new copy is ruled on: the copy it is made from (``lifecycle.service.source_copy``,
    the choice ``create_copy`` makes too)."""
    with UnitOfWork(engine) as uow:  # reads only: nothing to commit
        rec = _recording(uow.conn, recording_id)
        source = service.source_copy(uow, recording_id, now=now) if rec is not None else None
        return [_target(rec, source)] if rec is not None and source is not None else []
