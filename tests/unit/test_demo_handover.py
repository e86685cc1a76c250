"""The demo hands over (issue 19): one demo user per role, registered idempotently, and a last
word that says how to serve the console, whom to sign in as and how to get their token. On a
throwaway SQLite catalog; the demo end to end is ``scripts/demo``."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from access.identities import load_user
from callvault import demo
from core.vocabulary import Role
from storage.catalog import tables as t
from storage.catalog.db import UnitOfWork, make_engine
from storage.catalog.migrate import upgrade

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def engine(tmp_path) -> sa.Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'catalog.sqlite3'}", echo=False)
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(t.tenants.insert().values(id=demo.TENANT, name="Demo", created_at=NOW))
    yield engine
    engine.dispose()


def add_users(engine: sa.Engine) -> list[str]:
    with UnitOfWork(engine) as uow:
        added = demo._add_demo_users(uow, NOW)
        uow.commit()
    return added


def test_one_demo_user_per_role_registered_once(engine) -> None:
    assert add_users(engine) == [user_id for user_id, _, _ in demo.DEMO_USERS]
    assert add_users(engine) == []  # a second demo keeps them as they are
    with engine.connect() as conn:
        users = {user_id: load_user(conn, user_id) for user_id, _, _ in demo.DEMO_USERS}
    assert {u.role for u in users.values()} == set(Role) - {Role.TELEPHONY}  # people: telephony is a system
    assert all(u.tenants == frozenset({demo.TENANT}) and not u.revoked for u in users.values())
    assert users["demo-consultant"].agent_id == "agent-01"  # the agent of two of the demo's calls
    assert {(tm, rel) for _, tm, rel in users["demo-manager"].teams} == {(demo.TEAM, "manager")}
    assert {(tm, rel) for _, tm, rel in users["demo-coach"].teams} == {(demo.TEAM, "coach")}


def test_the_last_word_is_the_next_step() -> None:
    said: list[str] = []
    demo._hand_over(said.append)
    text = "\n".join(said)
    assert " api " in text and "/console/" in text and "users token demo-control" in text
    assert all(user_id in text for user_id, _, _ in demo.DEMO_USERS)
    assert all(role.value in text for role in set(Role) - {Role.TELEPHONY})
