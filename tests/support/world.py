"""The one test world of the API, the console and the fuzzing: a catalog over a fresh schema and
bucket, two tenants, one user of each role, calls with their copies, and the API app over them.

The app runs in-process through ``World.client`` (FastAPI's TestClient) or served over real HTTP
by ``tests.support.server.Server``. Every decision the app takes lands in the audit trail, read
back with ``World.audit_rows``.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from access.api import create_app
from access.identities import add_user
from access.settings import AccessSettings
from access.tokens import issue_token
from lifecycle.deps import Services
from lifecycle.settings import LifecycleSettings
from storage.audit import verify
from storage.catalog import tables as t
from storage.catalog.migrate import upgrade
from testbed.catalog import add_recording
from tests.support.catalog import FRAME, store_copy

NUMBER = "+33612345678"
OTHER_NUMBER = "+33698765432"
SECRET = SecretStr("x" * 40)

USERS = [
    dict(user_id="consultant-1", role="consultant", tenants=["acme"], agent_id="a1",
         teams=[("acme", "t1", "member")]),
    dict(user_id="consultant-2", role="consultant", tenants=["acme"], agent_id="a2",
         teams=[("acme", "t1", "member")]),
    dict(user_id="manager-1", role="manager", tenants=["acme"], teams=[("acme", "t1", "manager")]),
    dict(user_id="coach-1", role="coach", tenants=["acme"], teams=[("acme", "t1", "coach")]),
    dict(user_id="control-1", role="internal-control", tenants=["acme"]),
    dict(user_id="control-group", role="internal-control", tenants=["*"]),
    dict(user_id="it-1", role="it", tenants=["acme"]),
]


@dataclass
class World:
    """The app over a fresh catalog and bucket. ``recordings`` and ``audio`` by call name, ``copies``
    by ``name/tier``. ``sound`` (if set) is every call's audio and ``duration_ms`` its length; else
    each call gets random bytes. ``url``: where a ``Server`` serves the app, once served."""

    engine: sa.Engine
    services: Services
    settings: AccessSettings
    bucket: str
    app: FastAPI
    client: TestClient
    sound: bytes | None = None
    duration_ms: int = 4000
    url: str | None = None
    recordings: dict[str, uuid.UUID] = field(default_factory=dict)
    copies: dict[str, uuid.UUID] = field(default_factory=dict)
    audio: dict[str, bytes] = field(default_factory=dict)

    # -- requests as a user -------------------------------------------------------------------
    def token(self, user_id: str) -> str:
        return issue_token(user_id, self.settings)

    def auth(self, user_id: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user_id)}"}

    def get(self, path: str, user: str | None, **kw):
        return self.client.get(path, headers={**(self.auth(user) if user else {}), **kw.pop("headers", {})}, **kw)

    def post(self, path: str, user: str, **kw):
        return self.client.post(path, headers=self.auth(user), **kw)

    def delete(self, path: str, user: str, **kw):
        return self.client.delete(path, headers=self.auth(user), **kw)

    # -- the catalog ----------------------------------------------------------------------------
    def audit_rows(self, **where) -> list[dict]:
        a = t.audit_events
        with self.engine.connect() as conn:
            query = sa.select(a).order_by(a.c.seq)
            for column, value in where.items():
                query = query.where(a.c[column] == value)
            return [dict(r) for r in conn.execute(query).mappings()]

    def copy_rows(self, name: str) -> list[dict]:
        """The live (not being deleted) copies of call ``name``."""
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(sa.select(t.copies).where(
                t.copies.c.recording_id == self.recordings[name], t.copies.c.deleting_at.is_(None))).mappings()]

    def assert_audit_verifies(self) -> None:
        with self.engine.connect() as conn:
            result = verify(conn)
        assert result.ok, result.problem

    def add_call(self, name: str, *, agent: str, team: str | None, number: str = NUMBER, tenant: str = "acme",
                 size: int = 6 * FRAME + 77, tiers: tuple[str, ...] = ("production",), started_ago_h: int = 1,
                 restricted: bool = False) -> uuid.UUID:
        """A call started ``started_ago_h`` hours ago, a copy in each of ``tiers`` (a training one
        with its report)."""
        started = datetime.now(timezone.utc) - timedelta(hours=started_ago_h)
        with self.engine.begin() as conn:
            rid, number_hash = add_recording(conn, self.services.keys, number, tenant=tenant, agent=agent,
                                             team=team, started=started, duration_ms=self.duration_ms,
                                             redactions=[[1000, 2000]], restricted=restricted)
        audio = self.sound or os.urandom(size)
        for tier in tiers:
            _, _, copy_id, _ = store_copy(self.engine, self.services.store, self.services.keys, self.bucket, audio,
                                          tier=tier, rid=rid, number_hash=number_hash, tenant=tenant,
                                          training_report="a model call" if tier == "training" else None)
            self.copies[f"{name}/{tier}"] = copy_id
        self.recordings[name], self.audio[name] = rid, audio
        return rid


def build_world(engine: sa.Engine, store, keys, bucket: str, storage_settings, *, sound: bytes | None = None,
                duration_ms: int = 4000, restricted_call: bool = False) -> World:
    """Tenants acme and other, ``USERS``, and the calls: team t1 has agents a1 (``own``: production,
    monitoring and training copies) and a2 (``teammate``), team t2 agent a3 (``elsewhere``), and
    tenant other a call with ``own``'s number (``other-tenant``); with ``restricted_call``, a
    restricted call of a1 (``restricted``). Newest first in that order, an hour apart."""
    upgrade(engine)
    now = datetime.now(timezone.utc)
    with engine.begin() as conn:
        conn.execute(t.tenants.insert(), [dict(id="acme", name="Acme", created_at=now),
                                          dict(id="other", name="Other", created_at=now)])
        for spec in USERS:
            add_user(conn, **spec)
    services = Services(engine, store, keys, storage=storage_settings, lifecycle=LifecycleSettings())
    settings = AccessSettings(jwt_secret=SECRET)
    app = create_app(services, settings)
    world = World(engine, services, settings, bucket, app, TestClient(app), sound=sound, duration_ms=duration_ms)
    world.add_call("own", agent="a1", team="t1", tiers=("production", "monitoring", "training"), started_ago_h=1)
    world.add_call("teammate", agent="a2", team="t1", number=OTHER_NUMBER, started_ago_h=2)
    world.add_call("elsewhere", agent="a3", team="t2", number=OTHER_NUMBER, started_ago_h=3)
    if restricted_call:
        world.add_call("restricted", agent="a1", team="t1", started_ago_h=4, restricted=True)
    world.add_call("other-tenant", agent="a1", team="t1", tenant="other", started_ago_h=5)
    return world


def names(world: World, response) -> set[str]:
    """The call names of a page of recordings."""
    by_id = {str(v): k for k, v in world.recordings.items()}
    return {by_id[item["id"]] for item in response.json()["items"]}
