"""What the console offers each role (``access.console.capabilities``): pure, no browser.

(Pure unit tests; they sit here because the console's tests live in tests/browser.)
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from access.console.capabilities import CopyView, pages, recording_actions
from access.policy import BreakGlass, Target, User
from core.vocabulary import Relation, Role

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
ACME = frozenset({"acme"})


def user(role: Role, **kw) -> User:
    return User(id=f"{role.value}-1", role=role, tenants=ACME, **kw)


def copies(*tiers: str, restricted: bool = False, held: tuple[str, ...] = ()) -> list[CopyView]:
    return [CopyView(f"c-{tier}", Target("acme", tier, "a1", "t1", restricted, "r1"), tier in held) for tier in tiers]


def source(tier: str = "production", restricted: bool = False) -> Target:
    return Target("acme", tier, "a1", "t1", restricted, "r1")


COACH = user(Role.COACH, teams=frozenset({("acme", "t1", Relation.COACH)}))
MANAGER = user(Role.MANAGER, teams=frozenset({("acme", "t1", Relation.MANAGER)}))
CONSULTANT = user(Role.CONSULTANT, agent_id="a1")
CONTROL = user(Role.INTERNAL_CONTROL)
IT = user(Role.IT)


def test_pages_per_role():
    assert pages(CONSULTANT, NOW, may_read_report=False) == pages(COACH, NOW, may_read_report=False)
    control = pages(CONTROL, NOW, may_read_report=True)
    assert control.search and control.audit and control.subjects and not control.break_glass
    it = pages(IT, NOW, may_read_report=True)
    assert it.search and it.break_glass and not it.audit and not it.subjects
    assert not pages(User("x", Role.COACH, ACME, revoked=True), NOW, may_read_report=False).search


def test_a_coach_is_offered_training_only_and_plays_what_it_may():
    offered = recording_actions(COACH, copies("production", "training"), source(), now=NOW)
    assert offered.create == ["training"]
    assert [(c.play, c.download, c.hold, c.release) for c in offered.copies] == [(True, False, False, False)] * 2
    assert not offered.hold_all and not offered.release_all and not offered.break_glass


def test_a_manager_is_offered_monitoring_and_a_consultant_nothing():
    assert recording_actions(MANAGER, copies("production"), source(), now=NOW).create == ["monitoring"]
    offered = recording_actions(CONSULTANT, copies("production"), source(), now=NOW)
    assert offered.create == [] and offered.copies[0].play


def test_restriction_hides_audio_and_copies_from_all_but_internal_control():
    for who in (COACH, MANAGER, CONSULTANT):
        offered = recording_actions(who, copies("production", restricted=True), source(restricted=True), now=NOW)
        assert offered.create == [] and not offered.copies[0].play
    control = recording_actions(CONTROL, copies("production", restricted=True), source(restricted=True), now=NOW)
    assert control.copies[0].play and control.create == ["complaint-extract"]


def test_internal_control_holds_what_is_unheld_and_releases_what_is_held():
    offered = recording_actions(CONTROL, copies("production", "training", held=("training",)), source(), now=NOW)
    assert [(c.hold, c.release, c.download) for c in offered.copies] == [(True, False, True), (False, True, True)]
    assert offered.hold_all and offered.release_all
    none_held = recording_actions(CONTROL, copies("production"), source(), now=NOW)
    assert none_held.hold_all and not none_held.release_all


def test_it_plays_only_with_a_live_grant_for_that_recording():
    assert not recording_actions(IT, copies("production"), source(), now=NOW).copies[0].play
    assert recording_actions(IT, copies("production"), source(), now=NOW).break_glass
    live = BreakGlass("INC-1", NOW + timedelta(minutes=5), "r1", frozenset({"production"}))
    assert recording_actions(IT, copies("production"), source(), now=NOW, grant=live).copies[0].play
    other = BreakGlass("INC-1", NOW + timedelta(minutes=5), "r2", frozenset({"production"}))
    assert not recording_actions(IT, copies("production"), source(), now=NOW, grant=other).copies[0].play
    stale = BreakGlass("INC-1", NOW - timedelta(minutes=1), "r1", frozenset({"production"}))
    assert not recording_actions(IT, copies("production"), source(), now=NOW, grant=stale).copies[0].play
    assert recording_actions(IT, copies("production"), source(), now=NOW, grant=live).create == []
