"""Search: the recordings a user may see, filtered, newest first.

Two layers. SQL selects exactly what the policy would let the user see — the user's tenants,
their scope (own calls, managed or coached teams), the tiers their role may see, the break-glass
grants an IT number search is confined to, live copies only — so no row the policy would hide is
ever loaded and a page is one indexed ``ORDER BY … LIMIT``. Then the policy (``decide(SEARCH)``)
still rules on every copy it returns and is the authority: SQL only mirrors it (the property
test ``test_search_scope`` holds the two equal). For ``SEARCH`` the policy hides neither an
expired copy nor a restricted recording (their *audio* is refused, their metadata listed until
the sweep), so neither is filtered here.

A recording is listed when at least one live copy of it is visible (``EXISTS`` on copies, no
join to de-duplicate). Pages are cut by a keyset cursor on the sort key (``started_at`` desc,
``id`` desc, one row-value comparison an index on ``(…, started_at, id)`` serves backwards): the
opaque ``cursor`` of a page is the key of its last recording and the next page starts strictly
after it, so a deep page costs what the first does and a recording stored meanwhile neither
repeats nor shifts a result. Were SQL and the policy ever to disagree, the refused recording is
left out and logged — the page is short, it never walks on to fill itself. A number filter is
normalised (``core.phone``: E.164, or kept as given) and compared through the keyed number hash
of each tenant searched: the clear number is never put in a query.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import aggregate_order_by

from core.phone import WITHHELD, mask_number, number_forms
from core.vocabulary import Action, Relation, Role
from storage.catalog import tables as t
from storage.keys import KeyRing

from ..exceptions import BadRequest
from ..policy import ALL_TENANTS, PLAYABLE, Decision, Target, User
from . import catalog

_r, _c = t.recordings, t.copies
log = logging.getLogger(__name__)
CURSOR_VERSION = 2  # 2: (started_at desc, id desc). Version 1 (id ascending) is refused, not misread.


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
        raw = json.dumps([CURSOR_VERSION, self.started_at.isoformat(), str(self.id)], separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> "Cursor":
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            decoded = json.loads(raw)
            if isinstance(decoded, list) and len(decoded) == 2:
                raise BadRequest("this cursor comes from an older version of the search, whose order differs",
                                 hint="start again from the first page (no cursor)")
            version, started, ident = decoded
            if version != CURSOR_VERSION:
                raise ValueError("version")
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


def visible_tiers(user: User, tier: str | None) -> list[str] | None:
    """The tiers of the copies ``user`` may see in a search (None: every tier), narrowed to ``tier``:
    the SQL mirror of ``decide``'s metadata rule (internal control and IT see every tier)."""
    if user.role in (Role.INTERNAL_CONTROL, Role.IT):
        return None if tier is None else [tier]
    allowed = sorted(PLAYABLE.get(user.role, frozenset()))
    return allowed if tier is None else [tier] if tier in allowed else []


def _scope(user: User) -> list[sa.ColumnElement[bool]]:
    """SQL mirror of ``policy.in_scope``."""
    if user.role is Role.CONSULTANT:
        return [_r.c.agent_id == user.agent_id if user.agent_id else sa.false()]
    if user.role in (Role.MANAGER, Role.COACH):
        relation = Relation.MANAGER if user.role is Role.MANAGER else Relation.COACH
        teams = sorted((tn, tm) for tn, tm, rel in user.teams if rel is relation and user.in_tenant(tn))
        if not teams:
            return [sa.false()]
        if len(teams) == 1:
            return [_r.c.tenant_id == teams[0][0], _r.c.team_id == teams[0][1]]
        return [sa.tuple_(_r.c.tenant_id, _r.c.team_id).in_(teams)]
    if user.role in (Role.INTERNAL_CONTROL, Role.IT):
        return []
    return [sa.false()]  # telephony: a system, it searches nothing


def _live_copy(tiers: list[str] | None) -> sa.ColumnElement[bool]:
    where = [_c.c.recording_id == _r.c.id, _c.c.deleting_at.is_(None)]
    if tiers is not None:
        where.append(_c.c.tier == tiers[0] if len(tiers) == 1 else _c.c.tier.in_(tiers))
    return sa.exists().where(*where)


def _number_hashes(conn: sa.Connection, keys: KeyRing, tenants: list[str] | None, number: str) -> list[str]:
    searched = tenants if tenants is not None else catalog.all_tenants(conn)
    return [keys.number_hash(tn, form) for tn in searched for form in number_forms(number)]


def scoped(conn: sa.Connection, keys: KeyRing, user: User, filters: Filters,
           only: frozenset[str] | None = None) -> sa.Select | None:
    """The recordings ``user`` may see under ``filters``, newest first, every column (None: none can
    match). ``only``: the recording ids a search is confined to (IT's number search: the granted ones)."""
    tenants = tenants_searched(user, filters.tenant)
    tiers = visible_tiers(user, filters.tier)
    if tenants == [] or tiers == [] or only == frozenset():
        return None
    where = [*_scope(user)]
    if tenants is not None:
        where.append(_r.c.tenant_id == tenants[0] if len(tenants) == 1 else _r.c.tenant_id.in_(tenants))
    if only is not None:
        where.append(_r.c.id.in_(sorted(uuid.UUID(i) for i in only)))
    if filters.number is not None:
        where.append(_r.c.number_hash.in_(_number_hashes(conn, keys, tenants, filters.number)))
    for column, value in ((_r.c.agent_id, filters.agent), (_r.c.team_id, filters.team)):
        if value is not None:
            where.append(column == value)
    if filters.start is not None:
        where.append(_r.c.started_at >= filters.start)
    if filters.end is not None:
        where.append(_r.c.started_at < filters.end)
    where.append(_live_copy(tiers))
    return sa.select(_r).where(*where).order_by(_r.c.started_at.desc(), _r.c.id.desc())


def after(cursor: Cursor | None) -> list[sa.ColumnElement[bool]]:
    """Strictly after ``cursor`` in (started_at desc, id desc) order: one row-value comparison."""
    if cursor is None:
        return []
    return [sa.tuple_(_r.c.started_at, _r.c.id) < sa.tuple_(sa.literal(cursor.started_at, t.UTCDateTime()),
                                                            sa.literal(cursor.id, sa.Uuid()))]


def search(conn: sa.Connection, keys: KeyRing, user: User, filters: Filters, *, limit: int, cursor: Cursor | None,
           decide: Callable[[Action, Target], Decision], action: Action = Action.SEARCH,
           only: frozenset[str] | None = None) -> tuple[list[Found], Cursor | None]:
    """The page of visible recordings after ``cursor``, and the cursor of the next page (None: last).

    On PostgreSQL the page, its live copies and its caller keys come in one statement
    (``with_copies_and_keys``); elsewhere the copies and the keys are a query each."""
    query = scoped(conn, keys, user, filters, only)
    if query is None:
        return [], None
    statement = query.where(*after(cursor)).limit(limit + 1)
    joined = conn.dialect.name == "postgresql"
    rows = list(conn.execute(with_copies_and_keys(statement, filters.tier) if joined else statement).mappings())
    following = None
    if len(rows) > limit:
        rows = rows[:limit]
        following = Cursor(rows[-1]["started_at"], rows[-1]["id"])
    if joined:
        copies = {row["id"]: _json_copies(row) for row in rows}
        key_rows = [{name: row[_KEY + name] for name in _KEY_FIELDS} for row in rows if row[_KEY + "id"] is not None]

        def numbers(recordings: list[sa.RowMapping]) -> dict:
            return keys.open_numbers_with(key_rows, recordings)
    else:
        copies = _copies_by_recording(conn, rows, filters.tier)

        def numbers(recordings: list[sa.RowMapping]) -> dict:
            return keys.open_numbers(conn, recordings)
    return _ruled(rows, copies, numbers, decide, action), following


# What a search shows of a copy and what the policy rules on (``catalog.target``, ``copy_summary``).
_COPY_FIELDS = ("id", "tier", "expires_at", "hold", "size_bytes", "frame_size")
_KEY_FIELDS = ("id", "tenant_id", "purpose", "master_version", "wrapped_key")  # ``KeyRing.open_numbers_with``
_COPIES, _KEY = "c__copies", "k__"


def with_copies_and_keys(page: sa.Select, tier: str | None) -> sa.Select:
    """PostgreSQL: ``page`` (a ``scoped`` query, keyset, LIMIT) with each recording's live copies as a
    JSON array (the ``_COPY_FIELDS``, in ``catalog.live_copies`` order, narrowed to ``tier``) and its
    caller key's columns (null: no key row): one statement, one round trip. The copies are a scalar
    subquery of the select list, so PostgreSQL evaluates it for the rows the LIMIT keeps only."""
    fields = [part for name in _COPY_FIELDS for part in (sa.literal_column(f"'{name}'"), _c.c[name])]
    narrowed = [_c.c.tier == tier] if tier is not None else []
    copies = (sa.select(sa.func.json_agg(aggregate_order_by(sa.func.json_build_object(*fields),
                                                            _c.c.created_at, _c.c.id)))
              .where(_c.c.recording_id == _r.c.id, _c.c.deleting_at.is_(None), *narrowed)
              .scalar_subquery().label(_COPIES))
    key = t.caller_keys
    return (page.add_columns(copies, *(key.c[name].label(_KEY + name) for name in _KEY_FIELDS))
            .outerjoin_from(_r, key, key.c.id == _r.c.caller_key_id))


def _json_copies(row: sa.RowMapping) -> list[dict]:
    """The copies of a ``with_copies_and_keys`` row, typed as the copies table's columns are."""
    return [{"id": uuid.UUID(copy["id"]), "recording_id": row["id"], "tier": copy["tier"],
             "expires_at": datetime.fromisoformat(copy["expires_at"]).astimezone(timezone.utc),
             "hold": copy["hold"], "size_bytes": copy["size_bytes"], "frame_size": copy["frame_size"]}
            for copy in row[_COPIES] or ()]


def _copies_by_recording(conn: sa.Connection, rows: list[sa.RowMapping], tier: str | None) -> dict:
    by_recording: dict = {}
    for copy in catalog.live_copies(conn, [row["id"] for row in rows], tier):
        by_recording.setdefault(copy["recording_id"], []).append(copy)
    return by_recording


def _ruled(rows: list[sa.RowMapping], copies: dict, numbers: Callable[[list], dict],
           decide: Callable[[Action, Target], Decision], action: Action) -> list[Found]:
    """The policy's ruling on each live copy of each row: the recordings with a visible copy, whose
    caller numbers only are then opened (``numbers``)."""
    kept = []
    for rec in rows:
        decisions = [(copy, decide(action, catalog.target(rec, copy))) for copy in copies.get(rec["id"], ())]
        visible = [(copy, decision) for copy, decision in decisions if decision.allowed]
        if not visible:
            log.warning("search: SQL scope selected recording %s, the policy refuses it (%s): left out",
                        rec["id"], decisions[0][1].reason if decisions else "no live copy")
            continue
        kept.append((rec, visible))
    opened = numbers([rec for rec, _ in kept]) if kept else {}
    return [Found(rec, [copy for copy, _ in visible], any(d.mask_numbers for _, d in visible), opened[rec["id"]])
            for rec, visible in kept]
