"""Search: the recordings a user may see, filtered, newest first.

Two layers. SQL narrows the candidates to the user's tenants and scope (own calls, managed
or coached teams) and to the tiers the role may see, so pages are cheap; then the policy
(``decide(SEARCH)``) rules on every candidate copy and is the authority: SQL only mirrors
it. Offsets count *visible* recordings, so a page is never short because the policy hid a
candidate. A number filter is normalised to E.164 and compared through the keyed number
hash of each tenant searched: the clear number is never put in a query.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Iterator

import sqlalchemy as sa

from ingest.phone import WITHHELD, mask_number, normalise_number
from storage.catalog import tables as t
from storage.keys import KeyRing

from ..policy import ALL_TENANTS, PLAYABLE, Action, Decision, Relation, Role, Target, User
from . import catalog

_r, _c = t.recordings, t.copies
_BATCH = 200


@dataclass(frozen=True)
class Filters:
    number: str | None = None
    agent: str | None = None
    team: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    tier: str | None = None
    tenant: str | None = None

    def audited(self) -> dict:
        """What the audit trail keeps of a search: every filter but the number."""
        return {"agent": self.agent, "team": self.team, "from": self.start.isoformat() if self.start else None,
                "to": self.end.isoformat() if self.end else None, "tier": self.tier, "tenant": self.tenant,
                "has_number_filter": self.number is not None}


@dataclass(frozen=True)
class Found:
    recording: sa.RowMapping
    copies: list[sa.RowMapping]
    mask_numbers: bool
    number: str | None = None  # opened with the recording's caller key (None: key destroyed)

    @property
    def caller_number(self) -> str:
        if self.number is None:
            return "(erased)"
        if self.number == "":  # sealed empty at ingest: the caller withheld their number
            return WITHHELD
        return mask_number(self.number) if self.mask_numbers else self.number


def tenants_searched(user: User, tenant: str | None) -> list[str] | None:
    """None: every tenant (a group-level user without a tenant filter)."""
    if ALL_TENANTS in user.tenants:
        return None if tenant is None else [tenant]
    mine = sorted(user.tenants)
    return mine if tenant is None else [tenant] if tenant in user.tenants else []


def _scope(user: User) -> list[sa.ColumnElement[bool]]:
    """SQL mirror of ``policy.in_scope`` and of the tiers a role may see."""
    if user.role is Role.CONSULTANT:
        own = _r.c.agent_id == user.agent_id if user.agent_id else sa.false()
        return [own, _c.c.tier.in_(sorted(PLAYABLE[user.role]))]
    if user.role in (Role.MANAGER, Role.COACH):
        relation = Relation.MANAGER if user.role is Role.MANAGER else Relation.COACH
        teams = [sa.and_(_r.c.tenant_id == tn, _r.c.team_id == tm) for tn, tm, rel in user.teams if rel is relation]
        return [sa.or_(*teams) if teams else sa.false(), _c.c.tier.in_(sorted(PLAYABLE[user.role]))]
    return []


def candidates(conn: sa.Connection, keys: KeyRing, user: User, filters: Filters) -> sa.Select | None:
    tenants = tenants_searched(user, filters.tenant)
    if tenants == []:
        return None
    where = [_c.c.deleting_at.is_(None), *_scope(user)]
    if tenants is not None:
        where.append(_r.c.tenant_id.in_(tenants))
    if filters.number is not None:
        e164 = normalise_number(filters.number)
        hashed = [keys.number_hash(tn, e164) for tn in (tenants if tenants is not None else catalog.all_tenants(conn))]
        where.append(_r.c.number_hash.in_(hashed))
    for column, value in ((_r.c.agent_id, filters.agent), (_r.c.team_id, filters.team), (_c.c.tier, filters.tier)):
        if value is not None:
            where.append(column == value)
    if filters.start is not None:
        where.append(_r.c.started_at >= filters.start)
    if filters.end is not None:
        where.append(_r.c.started_at < filters.end)
    return (sa.select(_r.c.id, _r.c.started_at).join(_c, _c.c.recording_id == _r.c.id).where(*where).distinct()
            .order_by(_r.c.started_at.desc(), _r.c.id))


def search(conn: sa.Connection, keys: KeyRing, user: User, filters: Filters, *, limit: int, offset: int,
           decide: Callable[[Action, Target], Decision]) -> tuple[list[Found], bool]:
    """The page of visible recordings and whether another page follows."""
    query = candidates(conn, keys, user, filters)
    if query is None:
        return [], False
    page: list[Found] = []
    skipped = 0
    for found in _visible(conn, keys, query, filters.tier, decide):
        if skipped < offset:
            skipped += 1
            continue
        if len(page) == limit:
            return page, True
        page.append(found)
    return page, False


def _visible(conn: sa.Connection, keys: KeyRing, query: sa.Select, tier: str | None,
             decide: Callable[[Action, Target], Decision]) -> Iterator[Found]:
    position = 0
    while True:
        ids = [row.id for row in conn.execute(query.limit(_BATCH).offset(position))]
        position += len(ids)
        if not ids:
            return
        recordings = {row["id"]: row for row in conn.execute(sa.select(_r).where(_r.c.id.in_(ids))).mappings()}
        by_recording: dict = {}
        for copy in catalog.live_copies(conn, ids, tier):
            by_recording.setdefault(copy["recording_id"], []).append(copy)
        for rid in ids:
            rec = recordings[rid]
            decisions = [(copy, decide(Action.SEARCH, catalog.target(rec, copy)))
                         for copy in by_recording.get(rid, [])]
            visible = [copy for copy, decision in decisions if decision.allowed]
            if visible:
                yield Found(rec, visible, any(d.mask_numbers for _, d in decisions if d.allowed),
                            keys.open_number(conn, rec))
        if len(ids) < _BATCH:
            return
