"""The whole policy matrix: 6 roles × 4 tiers × own/team/other agent × tenant in/out ×
restricted or not × active/expired/revoked user × every action, against a table written
straight from DESIGN.md §Roles (not from the implementation)."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from access.policy import EXPIRED, USES_AUDIO, BreakGlass, Target, User, decide
from core.vocabulary import Action, Relation, Role

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
TIERS = ("production", "monitoring", "training", "complaint-extract")
ALL = frozenset(TIERS)

# (role, action) -> tiers on which it is allowed, for a copy *in the role's scope*.
SPEC: dict[tuple[Role, Action], frozenset[str]] = {
    (Role.CONSULTANT, Action.STREAM): frozenset({"production", "training"}),
    (Role.CONSULTANT, Action.VIEW_METADATA): frozenset({"production", "training"}),
    (Role.CONSULTANT, Action.SEARCH): frozenset({"production", "training"}),
    (Role.CONSULTANT, Action.SEARCH_BY_NUMBER): frozenset({"production", "training"}),
    (Role.MANAGER, Action.STREAM): frozenset({"production", "monitoring", "training"}),
    (Role.MANAGER, Action.VIEW_METADATA): frozenset({"production", "monitoring", "training"}),
    (Role.MANAGER, Action.SEARCH): frozenset({"production", "monitoring", "training"}),
    (Role.MANAGER, Action.SEARCH_BY_NUMBER): frozenset({"production", "monitoring", "training"}),
    (Role.MANAGER, Action.COPY_MONITORING): frozenset({"production", "monitoring", "training"}),
    (Role.COACH, Action.STREAM): frozenset({"production", "training"}),
    (Role.COACH, Action.VIEW_METADATA): frozenset({"production", "training"}),
    (Role.COACH, Action.SEARCH): frozenset({"production", "training"}),
    (Role.COACH, Action.SEARCH_BY_NUMBER): frozenset({"production", "training"}),
    (Role.COACH, Action.COPY_TRAINING): frozenset({"production", "training"}),
    **{(Role.INTERNAL_CONTROL, a): ALL for a in (
        Action.STREAM, Action.VIEW_METADATA, Action.SEARCH, Action.SEARCH_BY_NUMBER, Action.EXPORT, Action.COPY_EXTRACT, Action.HOLD,
        Action.RELEASE_HOLD, Action.DELETE, Action.SUBJECT_REQUEST)},
    (Role.IT, Action.VIEW_METADATA): ALL,
    (Role.IT, Action.SEARCH): ALL,
    # (Role.IT, Action.SEARCH_BY_NUMBER): nothing without a break-glass grant
    # Telephony (a system): pushes its tenants' calls and reads their ingest status, nothing else.
    (Role.TELEPHONY, Action.PUSH): ALL,
    (Role.TELEPHONY, Action.INGEST_STATUS): ALL,
}
AUDIO = {Action.STREAM, Action.EXPORT, Action.COPY_MONITORING, Action.COPY_TRAINING, Action.COPY_EXTRACT}
COPY_ACTIONS = [a for a in Action if a not in (Action.AUDIT_READ, Action.LIFECYCLE_RUN, Action.BREAK_GLASS,
                                               Action.DLQ_READ, Action.DLQ_MANAGE, Action.RETENTION_SET,
                                               Action.REPORT_VIEW)]


def make_user(role: Role, state: str) -> User:
    return User(
        id=f"{role.value}-1", role=role, tenants=frozenset({"acme"}),
        teams=frozenset({("acme", "team-a", Relation.MANAGER if role is Role.MANAGER else
                          Relation.COACH if role is Role.COACH else Relation.MEMBER)}),
        agent_id="agent-1" if role is Role.CONSULTANT else None,
        contract_end=date(2026, 11, 1) if state == "expired" else date(2027, 6, 30),
        revoked=state == "revoked",
    )


def make_target(tier: str, whose: str, tenant_in: bool, restricted: bool) -> Target:
    agent, team = {"own": ("agent-1", "team-a"), "team": ("agent-2", "team-a"), "other": ("agent-3", "team-z")}[whose]
    return Target(tenant="acme" if tenant_in else "other-co", tier=tier, agent_id=agent, team_id=team,
                  restricted=restricted, recording_id="rec-1")


def expected(role: Role, action: Action, tier: str, whose: str, tenant_in: bool, restricted: bool,
             state: str) -> bool:
    if state != "active" or not tenant_in:
        return False
    if restricted and action in AUDIO and role is not Role.INTERNAL_CONTROL:
        return False
    in_scope = {Role.CONSULTANT: whose == "own", Role.MANAGER: whose in ("own", "team"),
                Role.COACH: whose in ("own", "team")}.get(role, True)
    return in_scope and tier in SPEC.get((role, action), frozenset())


MATRIX = list(itertools.product(Role, COPY_ACTIONS, TIERS, ("own", "team", "other"), (True, False), (False, True),
                                ("active", "expired", "revoked")))


@pytest.mark.parametrize("role, action, tier, whose, tenant_in, restricted, state", MATRIX)
def test_policy_matrix(role, action, tier, whose, tenant_in, restricted, state):
    decision = decide(make_user(role, state), action, make_target(tier, whose, tenant_in, restricted), now=NOW)
    assert decision.allowed is expected(role, action, tier, whose, tenant_in, restricted, state), decision.reason
    assert decision.reason  # every decision, allowed or denied, carries its reason for the audit trail


def test_matrix_size():
    assert len(MATRIX) == 6 * len(COPY_ACTIONS) * 4 * 3 * 2 * 2 * 3


@pytest.mark.parametrize("role", list(Role))
def test_global_actions(role):
    user = make_user(role, "active")
    assert decide(user, Action.AUDIT_READ, None, now=NOW).allowed is (role is Role.INTERNAL_CONTROL)
    assert decide(user, Action.LIFECYCLE_RUN, None, now=NOW).allowed is (role is Role.IT)
    assert decide(user, Action.BREAK_GLASS, None, now=NOW).allowed is (role is Role.IT)
    assert decide(user, Action.DLQ_READ, None, now=NOW).allowed is (role in (Role.IT, Role.INTERNAL_CONTROL))
    assert decide(user, Action.DLQ_MANAGE, None, now=NOW).allowed is (role is Role.IT)
    assert decide(user, Action.RETENTION_SET, None, now=NOW).allowed is (role in (Role.IT, Role.INTERNAL_CONTROL))
    assert not decide(make_user(role, "revoked"), Action.SEARCH, None, now=NOW).allowed


def test_it_sees_metadata_masked_and_plays_only_with_a_live_ticket_for_that_recording():
    it = make_user(Role.IT, "active")
    target = make_target("production", "other", True, False)
    meta = decide(it, Action.VIEW_METADATA, target, now=NOW)
    assert meta.allowed and meta.mask_numbers
    assert not decide(it, Action.STREAM, target, now=NOW).allowed
    live = BreakGlass("INC-4711", NOW + timedelta(hours=1), recording_id="rec-1", tiers=frozenset({"production"}))
    ok = decide(it, Action.STREAM, target, now=NOW, grant=live)
    assert ok.allowed and ok.ticket == "INC-4711"
    assert not decide(it, Action.STREAM, target, now=NOW + timedelta(hours=2), grant=live).allowed
    other = BreakGlass("INC-1", NOW + timedelta(hours=1), recording_id="rec-9", tiers=frozenset(TIERS))
    assert not decide(it, Action.STREAM, target, now=NOW, grant=other).allowed
    assert not decide(it, Action.EXPORT, target, now=NOW, grant=live).allowed  # a ticket opens playback only
    restricted = make_target("production", "other", True, True)
    assert not decide(it, Action.STREAM, restricted, now=NOW, grant=live).allowed


def test_a_break_glass_grant_opens_only_the_tiers_it_names_of_the_recording_it_names():
    it = make_user(Role.IT, "active")
    grant = BreakGlass("INC-7", NOW + timedelta(hours=1), recording_id="rec-1",
                       tiers=frozenset({"production", "training"}))
    for tier in TIERS:
        decision = decide(it, Action.STREAM, make_target(tier, "other", True, False), now=NOW, grant=grant)
        assert decision.allowed is (tier in ("production", "training")), tier
    refused = decide(it, Action.STREAM, make_target("monitoring", "other", True, False), now=NOW, grant=grant)
    assert "does not open monitoring" in refused.reason
    legacy = BreakGlass("INC-8", NOW + timedelta(hours=1), recording_id=None, tiers=frozenset(TIERS))
    assert not decide(it, Action.STREAM, make_target("production", "other", True, False), now=NOW,
                      grant=legacy).allowed


def test_it_may_search_by_number_only_under_an_active_grant_and_only_its_recording():
    it = make_user(Role.IT, "active")
    assert not decide(it, Action.SEARCH_BY_NUMBER, None, now=NOW).allowed
    assert decide(it, Action.SEARCH, None, now=NOW).allowed
    grant = BreakGlass("INC-7", NOW + timedelta(hours=1), recording_id="rec-1", tiers=frozenset({"production"}))
    assert decide(it, Action.SEARCH_BY_NUMBER, None, now=NOW, grant=grant).allowed
    assert not decide(it, Action.SEARCH_BY_NUMBER, None, now=NOW + timedelta(hours=2), grant=grant).allowed
    granted = make_target("production", "other", True, False)  # recording rec-1
    assert decide(it, Action.SEARCH_BY_NUMBER, granted, now=NOW, grant=grant).allowed
    assert not decide(it, Action.SEARCH_BY_NUMBER, granted, now=NOW).allowed
    elsewhere = BreakGlass("INC-9", NOW + timedelta(hours=1), recording_id="rec-9", tiers=frozenset(TIERS))
    assert not decide(it, Action.SEARCH_BY_NUMBER, granted, now=NOW, grant=elsewhere).allowed
    for role in (Role.CONSULTANT, Role.MANAGER, Role.COACH, Role.INTERNAL_CONTROL):
        assert decide(make_user(role, "active"), Action.SEARCH_BY_NUMBER, None, now=NOW).allowed


def test_group_level_internal_control_sees_every_tenant():
    group = User(id="ic-group", role=Role.INTERNAL_CONTROL, tenants=frozenset({"*"}))
    assert decide(group, Action.STREAM, make_target("complaint-extract", "other", False, True), now=NOW).allowed


def test_contract_end_day_itself_still_works_the_day_after_does_not():
    user = User(id="c", role=Role.CONSULTANT, tenants=frozenset({"acme"}), agent_id="agent-1",
                contract_end=date(2026, 11, 23))
    target = make_target("production", "own", True, False)
    assert decide(user, Action.STREAM, target, now=NOW).allowed
    assert not decide(user, Action.STREAM, target, now=NOW + timedelta(days=1)).allowed


# --- expired means unplayable (DESIGN.md §Tiers) ------------------------------------------------

targets = st.builds(make_target, st.sampled_from(TIERS), st.sampled_from(("own", "team", "other")),
                    st.just(True), st.booleans())
grants = st.none() | st.builds(BreakGlass, st.just("INC-1"), st.just(NOW + timedelta(hours=1)),
                               st.sampled_from((None, "rec-1")), st.frozensets(st.sampled_from(TIERS)))
past = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3 * 365))


@given(role=st.sampled_from(Role), action=st.sampled_from(sorted(USES_AUDIO)), target=targets, grant=grants,
       overdue=past)
def test_an_expired_unheld_copy_is_refused_every_use_of_its_audio(role, action, target, grant, overdue):
    expired = dataclasses.replace(target, expires_at=NOW - overdue)
    decision = decide(make_user(role, "active"), action, expired, now=NOW, grant=grant)
    assert not decision.allowed and decision.reason == EXPIRED


@given(role=st.sampled_from(Role), action=st.sampled_from(list(Action)), target=targets, grant=grants,
       state=st.sampled_from(("active", "expired", "revoked")), overdue=past)
def test_a_held_copy_is_decided_as_if_it_had_no_expiry(role, action, target, grant, state, overdue):
    user = make_user(role, state)
    held = dataclasses.replace(target, expires_at=NOW - overdue, held=True)
    assert decide(user, action, held, now=NOW, grant=grant) == decide(user, action, target, now=NOW, grant=grant)


@given(role=st.sampled_from(Role), action=st.sampled_from(list(Action)), target=targets, grant=grants,
       early=st.timedeltas(min_value=timedelta(microseconds=1), max_value=timedelta(days=3 * 365)))
def test_a_copy_before_its_expiry_is_decided_as_if_it_had_none(role, action, target, grant, early):
    user = make_user(role, "active")
    live = dataclasses.replace(target, expires_at=NOW + early)
    assert decide(user, action, live, now=NOW, grant=grant) == decide(user, action, target, now=NOW, grant=grant)


@pytest.mark.parametrize("action", [Action.VIEW_METADATA, Action.SEARCH, Action.HOLD, Action.RELEASE_HOLD])
def test_an_expired_copy_is_still_listed_and_holdable(action):
    control = make_user(Role.INTERNAL_CONTROL, "active")
    expired = dataclasses.replace(make_target("production", "other", True, False), expires_at=NOW)
    assert decide(control, action, expired, now=NOW).allowed  # metadata is not audio; a hold saves it


def test_expiry_is_the_sweepers_comparison_at_the_instant_itself():
    control = make_user(Role.INTERNAL_CONTROL, "active")
    target = make_target("production", "other", True, False)
    second = timedelta(seconds=1)
    assert decide(control, Action.STREAM, dataclasses.replace(target, expires_at=NOW + second), now=NOW).allowed
    at_expiry = decide(control, Action.STREAM, dataclasses.replace(target, expires_at=NOW), now=NOW)
    assert not at_expiry.allowed and at_expiry.reason == EXPIRED
