"""Who may do what to which copy: one pure function, ``decide``.

The default policy of the privacy rules (DESIGN.md §Roles):

| role             | scope                                 | may play                           | may also |
|------------------|---------------------------------------|------------------------------------|----------|
| consultant       | calls where they are the agent        | own production, own training       | — |
| manager          | calls of agents in teams they manage  | production, monitoring, training   | monitoring copies |
| coach            | calls of teams they coach             | production, training               | training copies (with a report) |
| internal control | their tenants (group-level: all)      | every tier                         | extracts, holds, subject requests, audit |
| IT               | their tenants                         | nothing, except by break-glass     | metadata (numbers masked), sweeps, checks |
| telephony        | its tenants (a system, never "*")     | nothing                            | push recordings, read their ingest status |

IT may neither filter nor sort by number (it would tell whether a person called, and let the
masked digits be guessed one query at a time), except under an active break-glass grant, and
then only over the recordings granted. A break-glass grant names one recording and the tiers
it opens; a tier not named stays shut.

Telephony is a system, not a person: its target is a tenant (``push_target``), on which it may
push recordings and read their ingest status; it plays, searches and sees nothing.

Everyone: no access once revoked or after the contract end date, none outside their
tenants, and a restricted recording (GDPR restriction) is playable by internal control only.
Expired means unplayable (DESIGN.md §Tiers): a copy past its expiry and not held is refused
for every use of its audio, by every role, from the moment it expires rather than from the
moment the sweeper gets to it; its metadata stays visible until the sweep.
No I/O and no clock: the caller passes ``now`` and any break-glass grant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from core.vocabulary import EXPIRED, Action, Relation, Role, Tier

ALL_TENANTS = "*"
PLAYABLE: dict[Role, frozenset[Tier]] = {
    Role.CONSULTANT: frozenset({Tier.PRODUCTION, Tier.TRAINING}),
    Role.MANAGER: frozenset({Tier.PRODUCTION, Tier.MONITORING, Tier.TRAINING}),
    Role.COACH: frozenset({Tier.PRODUCTION, Tier.TRAINING}),
    Role.INTERNAL_CONTROL: frozenset(Tier),
    Role.IT: frozenset(),
    Role.TELEPHONY: frozenset(),
}
# Actions on a copy beyond reading it, per role (the copy must still be in the role's scope).
EXTRA: dict[Role, frozenset[Action]] = {
    Role.CONSULTANT: frozenset(),
    Role.MANAGER: frozenset({Action.COPY_MONITORING}),
    Role.COACH: frozenset({Action.COPY_TRAINING}),
    Role.INTERNAL_CONTROL: frozenset({Action.EXPORT, Action.COPY_EXTRACT, Action.HOLD, Action.RELEASE_HOLD,
                                      Action.DELETE, Action.SUBJECT_REQUEST}),
    Role.IT: frozenset(),
    Role.TELEPHONY: frozenset({Action.PUSH, Action.INGEST_STATUS}),  # a tenant's target, no recording yet
}
# Actions that do not concern one copy.
GLOBAL: dict[Role, frozenset[Action]] = {
    Role.INTERNAL_CONTROL: frozenset({Action.AUDIT_READ, Action.SUBJECT_REQUEST, Action.SEARCH,
                                      Action.SEARCH_BY_NUMBER, Action.DLQ_READ, Action.RETENTION_SET}),
    Role.IT: frozenset({Action.LIFECYCLE_RUN, Action.BREAK_GLASS, Action.SEARCH, Action.DLQ_READ,
                        Action.DLQ_MANAGE, Action.RETENTION_SET}),
    Role.CONSULTANT: frozenset({Action.SEARCH, Action.SEARCH_BY_NUMBER}),
    Role.MANAGER: frozenset({Action.SEARCH, Action.SEARCH_BY_NUMBER}),
    Role.COACH: frozenset({Action.SEARCH, Action.SEARCH_BY_NUMBER}),
}
METADATA = frozenset({Action.SEARCH, Action.SEARCH_BY_NUMBER, Action.VIEW_METADATA})
# Reading audio or making a new copy of it: what a GDPR restriction stops for all but internal control.
USES_AUDIO = frozenset({Action.STREAM, Action.EXPORT, Action.COPY_MONITORING, Action.COPY_TRAINING,
                        Action.COPY_EXTRACT})


@dataclass(frozen=True)
class User:
    id: str
    role: Role
    tenants: frozenset[str]
    teams: frozenset[tuple[str, str, Relation]] = frozenset()  # (tenant, team, relation)
    agent_id: str | None = None
    contract_end: date | None = None
    revoked: bool = False

    def in_tenant(self, tenant: str) -> bool:
        return ALL_TENANTS in self.tenants or tenant in self.tenants

    def relates(self, tenant: str, team: str | None, relation: Relation) -> bool:
        return team is not None and (tenant, team, relation) in self.teams


@dataclass(frozen=True)
class Target:
    """What a decision is about: one copy (tier) of one recording, or a recording in search."""

    tenant: str
    tier: str
    agent_id: str
    team_id: str | None = None
    restricted: bool = False
    recording_id: str | None = None
    expires_at: datetime | None = None  # None: not one stored copy, so no clock to check
    held: bool = False


def push_target(tenant: str) -> Target:
    """What a push (or an ingest status) is decided on: the tenant, before any recording exists."""
    return Target(tenant=tenant, tier="production", agent_id="")


def expired(target: Target, now: datetime) -> bool:
    """Past its expiry and not under legal hold: the sweeper's own test (``expires_at <= now``),
    so no copy is ever playable here yet already due for deletion there."""
    return target.expires_at is not None and now >= target.expires_at and not target.held


@dataclass(frozen=True)
class BreakGlass:
    """An IT grant: one recording, the tiers it opens, until ``expires_at``. A grant naming no
    recording (made before grants had to name one) opens nothing."""

    ticket: str
    expires_at: datetime
    recording_id: str | None = None
    tiers: frozenset[str] = frozenset()

    def active(self, now: datetime) -> bool:
        return now < self.expires_at and self.recording_id is not None


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    mask_numbers: bool = False
    ticket: str | None = None
    extra: dict = field(default_factory=dict)


def _deny(reason: str) -> Decision:
    return Decision(False, reason)


def account_state(user: User, now: datetime) -> Decision | None:
    if user.revoked:
        return _deny("account revoked")
    if user.contract_end is not None and now.date() > user.contract_end:
        return _deny(f"contract ended on {user.contract_end.isoformat()}")
    return None


def in_scope(user: User, target: Target) -> bool:
    """Whose calls the user may see at all (before tiers)."""
    if user.role is Role.CONSULTANT:
        return user.agent_id is not None and target.agent_id == user.agent_id
    if user.role is Role.MANAGER:
        return user.relates(target.tenant, target.team_id, Relation.MANAGER)
    if user.role is Role.COACH:
        return user.relates(target.tenant, target.team_id, Relation.COACH)
    return True  # internal control and IT: their whole tenants


def decide(user: User, action: Action, target: Target | None, *, now: datetime,
           grant: BreakGlass | None = None) -> Decision:
    refused = account_state(user, now)
    if refused:
        return refused
    if target is None:
        if action is Action.SEARCH_BY_NUMBER and user.role is Role.IT:
            if grant is not None and grant.active(now):
                return Decision(True, f"break-glass ticket {grant.ticket}: granted recordings only",
                                mask_numbers=True, ticket=grant.ticket)
            return _deny("IT may not search by number without an active break-glass grant")
        return Decision(True, f"{user.role.value} may {action.value}") if action in GLOBAL.get(user.role, ()) \
            else _deny(f"{user.role.value} may not {action.value}")
    if not user.in_tenant(target.tenant):
        return _deny(f"tenant {target.tenant} is outside the user's tenants")
    if action in USES_AUDIO and expired(target, now):
        return _deny(EXPIRED)
    if target.restricted and action in USES_AUDIO and user.role is not Role.INTERNAL_CONTROL:
        return _deny("recording is restricted (GDPR): internal control only")
    if not in_scope(user, target):
        return _deny(f"outside the {user.role.value}'s scope (not their {'calls' if user.role is Role.CONSULTANT else 'teams'})")
    if action in METADATA:
        if user.role is Role.IT:
            if action is Action.SEARCH_BY_NUMBER:
                refused = _grant_refusal(grant, target, now)
                if refused:
                    return refused
            return Decision(True, "IT sees metadata with numbers masked", mask_numbers=True)
        if target.tier in PLAYABLE[user.role] or user.role is Role.INTERNAL_CONTROL:
            return Decision(True, f"{user.role.value} in scope")
        return _deny(f"{user.role.value} may not see {target.tier} copies")
    if action is Action.STREAM:
        if user.role is Role.IT:
            return _break_glass(grant, target, now)
        if target.tier in PLAYABLE[user.role]:
            return Decision(True, f"{user.role.value} may play {target.tier} copies in scope")
        return _deny(f"{user.role.value} may not play {target.tier} copies")
    if action in EXTRA[user.role]:
        if action in (Action.COPY_MONITORING, Action.COPY_TRAINING) and target.tier not in PLAYABLE[user.role]:
            return _deny(f"{user.role.value} may not copy from a {target.tier} copy")
        return Decision(True, f"{user.role.value} may {action.value}")
    return _deny(f"{user.role.value} may not {action.value}")


def _grant_refusal(grant: BreakGlass | None, target: Target, now: datetime) -> Decision | None:
    if grant is None:
        return _deny("IT may play audio only with a break-glass ticket")
    if now >= grant.expires_at:
        return _deny(f"break-glass ticket {grant.ticket} expired")
    if grant.recording_id is None:
        return _deny(f"break-glass ticket {grant.ticket} names no recording")
    if grant.recording_id != target.recording_id:
        return _deny(f"break-glass ticket {grant.ticket} covers another recording")
    return None


def _break_glass(grant: BreakGlass | None, target: Target, now: datetime) -> Decision:
    refused = _grant_refusal(grant, target, now)
    if refused:
        return refused
    assert grant is not None
    if target.tier not in grant.tiers:
        return _deny(f"break-glass ticket {grant.ticket} does not open {target.tier} copies")
    return Decision(True, f"break-glass ticket {grant.ticket}", ticket=grant.ticket)
