"""Users: role, tenants, teams, agent id, contract end, revocation; and break-glass grants.

Rows live in the catalog (``users``, ``team_memberships``, ``break_glass``); the policy works
on the plain ``policy.User`` built here, so it stays free of SQL.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta, timezone

import sqlalchemy as sa

from core.vocabulary import Action, AuditAction, Relation, Role, Tier
from storage import audit
from storage.catalog import tables as t
from storage.keys import KeyRing
from storage.ledger import ErasureLedger

from .exceptions import BadRequest, Forbidden, NotFound
from .policy import ALL_TENANTS, BreakGlass, User, decide


def add_user(conn: sa.Connection, *, user_id: str, role: str, tenants: list[str], display_name: str | None = None,
             teams: list[tuple[str, str, str]] = (), agent_id: str | None = None,
             contract_end: date | None = None, now: datetime | None = None) -> User:
    try:
        role_ = Role(role)
    except ValueError:
        raise BadRequest(f"unknown role {role!r}", hint=f"one of {', '.join(r.value for r in Role)}") from None
    if role_ is Role.CONSULTANT and not agent_id:
        raise BadRequest("a consultant needs the agent id their calls carry (--agent)")
    if role_ is Role.TELEPHONY and (not tenants or ALL_TENANTS in tenants):
        raise BadRequest("a telephony user is bound to named tenants (--tenant acme), never to all of them (*)",
                         hint="register one telephony user per system and name the tenants it records for")
    if conn.execute(sa.select(t.users.c.id).where(t.users.c.id == user_id)).first():
        raise BadRequest(f"user {user_id!r} already exists")
    now = now or datetime.now(timezone.utc)
    conn.execute(t.users.insert().values(id=user_id, display_name=display_name or user_id, role=role_.value,
                                         tenants=sorted(tenants), agent_id=agent_id, contract_end=contract_end,
                                         revoked=False, created_at=now))
    for tenant, team, relation in teams:
        conn.execute(t.team_memberships.insert().values(user_id=user_id, tenant_id=tenant, team_id=team,
                                                        relation=Relation(relation).value))
    audit.append(conn, tenant=audit.sole_tenant(tenants), actor="admin", role="it", action=AuditAction.USER_ADD,
                 target_type="user", target_id=user_id,
                 outcome="done", at=now, detail={"role": role_.value, "tenants": sorted(tenants)})
    return load_user(conn, user_id)  # type: ignore[return-value]


def revoke_user(conn: sa.Connection, user_id: str, *, keys: KeyRing | None, ledger: ErasureLedger | None,
                now: datetime | None = None, actor: str = "admin") -> None:
    """Revoke at once. Journalled in the ledger first (by the id's keyed hash; a failed write
    aborts), so a catalog restored from an older backup does not let the user back in
    (``lifecycle.erasures``). ``ledger=None``: not journalled (a test's catalog only)."""
    now = now or datetime.now(timezone.utc)
    row = conn.execute(sa.select(t.users.c.tenants).where(t.users.c.id == user_id)).first()
    if row is None:
        raise NotFound(f"user {user_id!r} does not exist")
    if ledger is not None:
        if keys is None:
            raise ValueError("journalling a revocation needs the key ring (its keyed hash)")
        ledger.record_policy("revoke", target=keys.user_hash(user_id), actor=actor, now=now)
    conn.execute(t.users.update().where(t.users.c.id == user_id).values(revoked=True, revoked_at=now))
    audit.append(conn, tenant=audit.sole_tenant(row.tenants or []), actor=actor, role="it", action=AuditAction.USER_REVOKE,
                 target_type="user", target_id=user_id,
                 outcome="done", at=now)


_m = t.team_memberships
_MEMBERSHIP = (_m.c.tenant_id.label("m__tenant_id"), _m.c.team_id.label("m__team_id"),
               _m.c.relation.label("m__relation"))


# Built once: every request reads its user, and a statement object keeps its cache key.
_USER_WITH_TEAMS = (sa.select(t.users, *_MEMBERSHIP).outerjoin(_m, _m.c.user_id == t.users.c.id)
                    .where(t.users.c.id == sa.bindparam("user_id")))


def load_user(conn: sa.Connection, user_id: str) -> User | None:
    """The user and their team memberships, in one statement (a row per membership)."""
    rows = conn.execute(_USER_WITH_TEAMS, {"user_id": user_id}).mappings().all()
    if not rows:
        return None
    row = rows[0]
    teams = frozenset((r["m__tenant_id"], r["m__team_id"], Relation(r["m__relation"]))
                      for r in rows if r["m__relation"] is not None)
    return User(id=row["id"], role=Role(row["role"]), tenants=frozenset(row["tenants"] or []), teams=teams,
                agent_id=row["agent_id"], contract_end=row["contract_end"], revoked=row["revoked"])


def open_break_glass(conn: sa.Connection, user: User, *, ticket: str, minutes: int, max_minutes: int,
                     recording_id: uuid.UUID, tiers: list[str] | frozenset[str], now: datetime) -> BreakGlass:
    """IT opens time-limited playback of one recording's named tiers with a ticket reference;
    audited whether allowed or not."""
    decision = decide(user, Action.BREAK_GLASS, None, now=now)
    tiers = sorted(set(tiers))
    if not ticket.strip():
        decision = type(decision)(False, "a ticket reference is required")
    elif not 0 < minutes <= max_minutes:
        decision = type(decision)(False, f"break-glass lasts 1..{max_minutes} minutes")
    elif not tiers or not set(tiers) <= set(Tier):
        decision = type(decision)(False, f"a grant opens one or more of {', '.join(Tier)}")
    if recording_id is not None and conn.execute(
            sa.select(t.recordings.c.id).where(t.recordings.c.id == recording_id)).first() is None:
        raise NotFound(f"recording {recording_id} does not exist (expired or erased?)")
    tenants = ",".join(sorted(user.tenants))
    tenant = (conn.execute(sa.select(t.recordings.c.tenant_id).where(t.recordings.c.id == recording_id)).scalar()
              if recording_id is not None else audit.sole_tenant(user.tenants))
    audit.append(conn, tenant=tenant, actor=user.id, role=user.role.value, action=Action.BREAK_GLASS.value,
                 target_type="recording" if recording_id else "tenant",
                 target_id=str(recording_id) if recording_id else (tenants if len(tenants) <= 200 else "many"),
                 outcome="allowed" if decision.allowed else "denied", reason=ticket or decision.reason, at=now,
                 detail={"minutes": minutes, "tiers": tiers, "why": decision.reason})
    if not decision.allowed:
        raise Forbidden(decision.reason)
    expires = now + timedelta(minutes=minutes)
    conn.execute(t.break_glass.insert().values(id=uuid.uuid4(), user_id=user.id, ticket=ticket, granted_at=now,
                                               expires_at=expires, recording_id=recording_id, tiers=tiers))
    return BreakGlass(ticket, expires, str(recording_id), frozenset(tiers))


def _grant(row) -> BreakGlass:
    return BreakGlass(row["ticket"], row["expires_at"], str(row["recording_id"]) if row["recording_id"] else None,
                      frozenset(row["tiers"] or ()))


def active_grants(conn: sa.Connection, user_id: str, now: datetime) -> dict[str, BreakGlass]:
    """The user's live grants by recording id (the latest-expiring one per recording); grants
    naming no recording (older than 0006) open nothing and are left out."""
    rows = conn.execute(sa.select(t.break_glass).where(
        t.break_glass.c.user_id == user_id, t.break_glass.c.expires_at > now,
        t.break_glass.c.recording_id.is_not(None)).order_by(t.break_glass.c.expires_at)).mappings()
    return {str(row["recording_id"]): _grant(row) for row in rows}


def active_grant(conn: sa.Connection, user_id: str, recording_id: uuid.UUID, now: datetime, *,
                 tier: str | None = None) -> BreakGlass | None:
    """The live grant of that recording that opens ``tier`` (the latest-expiring one, so the
    audit names the ticket that allows it). Otherwise (no tier asked, or none opens it): every
    live grant of the recording folded into one (the tiers of all, the ticket of the latest,
    the earliest expiry): what the console shows, and what a refusal is explained by."""
    rows = conn.execute(sa.select(t.break_glass).where(
        t.break_glass.c.user_id == user_id, t.break_glass.c.expires_at > now,
        t.break_glass.c.recording_id == recording_id)).mappings().all()
    grants = list(map(_grant, rows))
    if not grants:
        return None
    opening = [g for g in grants if tier in g.tiers]
    if opening:
        return max(opening, key=lambda g: g.expires_at)
    latest = max(grants, key=lambda g: g.expires_at)
    # None opens ``tier`` (or no tier asked): the fold, so a refusal names the tiers that are open.
    return BreakGlass(latest.ticket, min(g.expires_at for g in grants), latest.recording_id,
                      frozenset().union(*(g.tiers for g in grants)))
