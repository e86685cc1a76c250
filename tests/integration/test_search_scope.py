"""Search's SQL scope against a brute-force policy, on real PostgreSQL and on SQLite.

For random catalogs (tenants, agents, teams, numbers, ties on ``started_at``, copies of every
tier — expired, held, restricted, being deleted), random users of every role (tenants, teams
and relations, agent, group-level, IT with break-glass grants) and random filters (number,
agent, team, tier, tenant, time range), paging through ``search`` with a random page size
returns exactly the recordings that ``decide`` over *every* row allows, newest first, with the
same visible copies and masking: the SQL scope hides nothing the policy shows and shows nothing
it hides, and no page is ever filled by skipping. Hypothesis prints the seed (and the
reproduction blob) of a failing example.
"""

from __future__ import annotations

import os
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from access.api import catalog
from access.api.search import Filters, scoped, search
from access.policy import ALL_TENANTS, BreakGlass, User, decide
from core.phone import number_forms
from core.vocabulary import Action, Relation, Role, Tier
from storage.catalog import tables as t
from storage.catalog.db import enable_sqlite_pragmas
from storage.catalog.migrate import upgrade
from storage.keys import KeyRing

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
TENANTS = ("acme", "other")
AGENTS = ("a1", "a2", "a3")
TEAMS = ("t1", "t2", None)
NUMBERS = ("+33612345678", "+33698765432", "4012")
TIERS = [tier.value for tier in Tier]
STARTS = [NOW - timedelta(hours=h) for h in (1, 2, 2, 3, 5)]  # repeated: ties broken by id
KEYS = KeyRing(os.urandom(32))
EXAMPLES = int(os.environ.get("CALLVAULT_SEARCH_SCOPE_EXAMPLES", "100"))

copy_st = st.fixed_dictionaries({
    "tier": st.sampled_from(TIERS), "expired": st.booleans(), "held": st.booleans(),
    "deleting": st.sampled_from([False, False, False, True])})
recording_st = st.fixed_dictionaries({
    "tenant": st.sampled_from(TENANTS), "agent": st.sampled_from(AGENTS), "team": st.sampled_from(TEAMS),
    "number": st.sampled_from(NUMBERS), "started": st.sampled_from(STARTS), "restricted": st.booleans(),
    "copies": st.lists(copy_st, max_size=4)})
user_st = st.builds(
    lambda role, tenants, teams, agent: User(f"{role.value}-x", role, frozenset(tenants), frozenset(teams),
                                             agent_id=agent),
    role=st.sampled_from([r for r in Role]),
    tenants=st.one_of(st.just([ALL_TENANTS]), st.lists(st.sampled_from(TENANTS), max_size=2, unique=True)),
    teams=st.lists(st.tuples(st.sampled_from(TENANTS), st.sampled_from(["t1", "t2"]), st.sampled_from(Relation)),
                   max_size=3, unique=True),
    agent=st.sampled_from([None, *AGENTS]))
filters_st = st.builds(
    Filters, number=st.sampled_from([None, None, *NUMBERS]), agent=st.sampled_from([None, None, *AGENTS]),
    team=st.sampled_from([None, None, "t1", "t2"]),
    start=st.sampled_from([None, None, NOW - timedelta(hours=3)]),
    end=st.sampled_from([None, None, NOW - timedelta(hours=2)]),
    tier=st.sampled_from([None, None, *TIERS]), tenant=st.sampled_from([None, None, *TENANTS]))


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request) -> sa.Engine:
    """Migrated once per test: each example runs in a transaction rolled back after it."""
    engine = enable_sqlite_pragmas(request.getfixturevalue("sqlite_engine")) if request.param == "sqlite" \
        else request.getfixturevalue("pg_engine")
    upgrade(engine)
    return engine


def _insert(conn: sa.Connection, recordings: list[dict]) -> None:
    conn.execute(t.tenants.insert(), [dict(id=tn, name=tn, created_at=NOW) for tn in TENANTS])
    for i, spec in enumerate(recordings):
        rid = uuid.UUID(int=(i * 7919 + 13) % (1 << 128)) if i % 2 else uuid.uuid4()  # mixed id orders
        number_hash = KEYS.number_hash(spec["tenant"], spec["number"])
        caller = KEYS.caller_key(conn, tenant=spec["tenant"], number_hash=number_hash)
        conn.execute(t.recordings.insert().values(
            id=rid, tenant_id=spec["tenant"], external_id=f"ext-{i}", started_at=spec["started"],
            direction="inbound", number_hash=number_hash, agent_id=spec["agent"], team_id=spec["team"],
            duration_ms=1000, audio_format="opus", channels=1, restricted=spec["restricted"],
            restricted_at=NOW if spec["restricted"] else None, created_at=spec["started"], content_sha256="0" * 64,
            caller_number_sealed=KEYS.seal_number(caller, tenant=spec["tenant"], recording_id=rid,
                                                  e164=spec["number"]), caller_key_id=caller.id))
        for j, copy in enumerate(spec["copies"]):
            tier = copy["tier"]
            hold = dict(hold=True, hold_reason="case", hold_actor="ic", hold_at=NOW) if copy["held"] else {}
            conn.execute(t.copies.insert().values(
                id=uuid.uuid4(), recording_id=rid, tier=tier, object_key=f"{rid}/{j}", bucket="b", size_bytes=100,
                stored_sha256="d" * 64, wrapped_data_key=b"w" * 40, caller_key_id=caller.id, frame_size=1024,
                created_at=NOW, created_by="test", reason=f"case-{j}" if tier == "complaint-extract" else "",
                training_report="report" if tier == "training" else None,
                expires_at=NOW - timedelta(days=1) if copy["expired"] else NOW + timedelta(days=1),
                deleting_at=NOW if copy["deleting"] else None, **hold))


def _unique_tiers(recordings: list[dict]) -> list[dict]:
    """One copy per (tier) of a recording but extracts (the catalog's UNIQUE(recording, tier, reason))."""
    for spec in recordings:
        seen, kept = set(), []
        for copy in spec["copies"]:
            if copy["tier"] == "complaint-extract" or copy["tier"] not in seen:
                kept.append(copy)
                seen.add(copy["tier"])
        spec["copies"] = kept
    return recordings


def _matches(rec, filters: Filters) -> bool:
    if filters.number is not None:
        if rec["number_hash"] not in {KEYS.number_hash(rec["tenant_id"], f) for f in number_forms(filters.number)}:
            return False
    checks = ((filters.agent, rec["agent_id"]), (filters.team, rec["team_id"]), (filters.tenant, rec["tenant_id"]))
    if any(wanted is not None and wanted != got for wanted, got in checks):
        return False
    return (filters.start is None or rec["started_at"] >= filters.start) and \
        (filters.end is None or rec["started_at"] < filters.end)


def brute_force(conn: sa.Connection, user: User, filters: Filters, rule) -> list[tuple]:
    """Every row through ``decide``: (recording id, visible copy ids, masked), newest first."""
    expected = []
    for rec in conn.execute(sa.select(t.recordings)).mappings():
        if not _matches(rec, filters):
            continue
        copies = [c for c in catalog.live_copies(conn, [rec["id"]], filters.tier)]
        allowed = [(c, d) for c in copies if (d := rule(catalog.target(rec, c))).allowed]
        if allowed:
            expected.append((rec["started_at"], rec["id"], sorted(c["id"] for c, _ in allowed),
                             any(d.mask_numbers for _, d in allowed)))
    expected.sort(key=lambda row: (row[0], row[1]), reverse=True)
    return [row[1:] for row in expected]


@settings(max_examples=EXAMPLES, deadline=None, print_blob=True, suppress_health_check=list(HealthCheck))
@given(recordings=st.lists(recording_st, max_size=14).map(_unique_tiers), user=user_st, filters=filters_st,
       granted=st.lists(st.integers(0, 13), max_size=3), limit=st.integers(1, 4))
def test_sql_scoped_search_is_the_brute_force_policy_in_order_across_pages(engine, recordings, user, filters,
                                                                         granted, limit):
    with engine.connect() as conn:
        outer = conn.begin()
        try:
            _insert(conn, recordings)
            action = Action.SEARCH if filters.number is None else Action.SEARCH_BY_NUMBER
            ids = [rid for (rid,) in conn.execute(sa.select(t.recordings.c.id).order_by(t.recordings.c.external_id))]
            grants = None
            if action is Action.SEARCH_BY_NUMBER and user.role is Role.IT and granted:
                grants = {str(ids[i]): BreakGlass("INC-1", NOW + timedelta(hours=1), str(ids[i]),
                                                  frozenset({"production"})) for i in granted if i < len(ids)}
            evidence = next(iter(grants.values()), None) if grants else None
            if not decide(user, action, None, now=NOW, grant=evidence).allowed:
                return  # the gate refuses the search itself: nothing reaches the SQL

            def rule(target):
                return decide(user, action, target, now=NOW,
                              grant=grants.get(target.recording_id or "") if grants else None)

            expected = brute_force(conn, user, filters, rule)
            query = scoped(conn, KEYS, user, filters, frozenset(grants) if grants is not None else None)
            selected = [] if query is None else list(conn.execute(query.with_only_columns(t.recordings.c.id)).scalars())
            assert selected == [rid for rid, _, _ in expected], "the SQL scope differs from the policy"
            got, cursor, pages = [], None, 0
            while True:
                page, cursor = search(conn, KEYS, user, filters, limit=limit, cursor=cursor,
                                      decide=lambda _action, target: rule(target), action=action,
                                      only=frozenset(grants) if grants is not None else None)
                assert len(page) == limit or cursor is None, "a short page before the last one"
                got += [(f.recording["id"], sorted(c["id"] for c in f.copies), f.mask_numbers) for f in page]
                pages += 1
                assert pages <= len(expected) + 1
                if cursor is None:
                    break
            assert got == expected
        finally:
            outer.rollback()
