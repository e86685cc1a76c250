"""Search: the recordings a user may see, filtered, newest first.

Two layers. SQL narrows the candidates to the user's tenants and scope (own calls, managed
or coached teams) and to the tiers the role may see, so pages are cheap; then the policy
(``decide(SEARCH)``) rules on every candidate copy and is the authority: SQL only mirrors
it. Pages are cut by a keyset cursor on the sort key (``started_at`` desc, ``id``): the
opaque ``cursor`` of a page is the key of its last recording, and the next page starts
strictly after it, so a deep page costs what the first does (no offset to skip) and a
recording stored meanwhile neither repeats nor shifts a result. A page counts *visible*
recordings, so it is never short because the policy hid a candidate. A number filter is
normalised (``core.phone``: E.164, or kept as given) and compared through the keyed number
hash of each tenant searched: the clear number is never put in a query.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Iterator

import sqlalchemy as sa

from core.phone import WITHHELD, mask_number, number_forms
from core.vocabulary import Action, Relation, Role
from storage.catalog import tables as t
from storage.keys import KeyRing

from ..exceptions import BadRequest
from ..policy import ALL_TENANTS, PLAYABLE, Decision, Target, User
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
class Cursor:
    """Where a page ended: the sort key of its last recording."""

    started_at: datetime
    id: uuid.UUID

    def encode(self) -> str:
        raw = json.dumps([self.started_at.isoformat(), str(self.id)], separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> "Cursor":
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            started, ident = json.loads(raw)
            at = datetime.fromisoformat(started)
            if at.tzinfo is None:
                raise ValueError("naive")
            return cls(at, uuid.UUID(ident))
        except (binascii.Error, ValueError, TypeError, UnicodeDecodeError, OverflowError):
            raise BadRequest("invalid cursor", hint="pass back the next_cursor of the previous page") from None


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


def candidates(conn: sa.Connection, keys: KeyRing, user: User, filters: Filters,
               only: frozenset[str] | None = None) -> sa.Select | None:
    """``only``: the recording ids a search is confined to (IT's number search: the granted ones)."""
    tenants = tenants_searched(user, filters.tenant)
    if tenants == [] or only == frozenset():
        return None
    where = [_c.c.deleting_at.is_(None), *_scope(user)]
    if only is not None:
        where.append(_r.c.id.in_(sorted(uuid.UUID(i) for i in only)))
    if tenants is not None:
        where.append(_r.c.tenant_id.in_(tenants))
    if filters.number is not None:
        forms = number_forms(filters.number)
        hashed = [keys.number_hash(tn, form) for tn in (tenants if tenants is not None else catalog.all_tenants(conn))
                  for form in forms]
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


def _after(cursor: Cursor | None) -> list[sa.ColumnElement[bool]]:
    if cursor is None:
        return []
    return [sa.or_(_r.c.started_at < cursor.started_at,
                   sa.and_(_r.c.started_at == cursor.started_at, _r.c.id > cursor.id))]


def search(conn: sa.Connection, keys: KeyRing, user: User, filters: Filters, *, limit: int, cursor: Cursor | None,
           decide: Callable[[Action, Target], Decision], action: Action = Action.SEARCH,
           only: frozenset[str] | None = None) -> tuple[list[Found], Cursor | None]:
    """The page of visible recordings after ``cursor``, and the cursor of the next page (None: last)."""
    query = candidates(conn, keys, user, filters, only)
    if query is None:
        return [], None
    page: list[Found] = []
    for found in _visible(conn, keys, query, filters.tier, decide, action, cursor):
        if len(page) == limit:
            last = page[-1].recording
            return page, Cursor(last["started_at"], last["id"])
        page.append(found)
    return page, None


def _visible(conn: sa.Connection, keys: KeyRing, query: sa.Select, tier: str | None,
             decide: Callable[[Action, Target], Decision], action: Action, cursor: Cursor | None) -> Iterator[Found]:
    while True:
        rows = conn.execute(query.where(*_after(cursor)).limit(_BATCH)).all()
        if not rows:
            return
        cursor = Cursor(rows[-1].started_at, rows[-1].id)
        ids = [row.id for row in rows]
        recordings = {row["id"]: row for row in conn.execute(sa.select(_r).where(_r.c.id.in_(ids))).mappings()}
        by_recording: dict = {}
        for copy in catalog.live_copies(conn, ids, tier):
            by_recording.setdefault(copy["recording_id"], []).append(copy)
        for rid in ids:
            rec = recordings[rid]
            decisions = [(copy, decide(action, catalog.target(rec, copy)))
                         for copy in by_recording.get(rid, [])]
            visible = [copy for copy, decision in decisions if decision.allowed]
            if visible:
                yield Found(rec, visible, any(d.mask_numbers for _, d in decisions if d.allowed),
                            keys.open_number(conn, rec))
        if len(rows) < _BATCH:
            return
