"""The console in a real browser: Debian's Chromium driven by Playwright, against the app served
by uvicorn on a free loopback port, over real PostgreSQL + MinIO, with playable Ogg/Opus audio.

Chromium comes from Debian's packages and is installed here if missing (never Playwright's
own browser download). Each test gets a fresh world (schema, bucket, users, calls), a fresh
server and a fresh browser context (so an empty sessionStorage).
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import pytest
import sqlalchemy as sa
import uvicorn

from access.api import create_app
from access.identities import add_user
from access.settings import AccessSettings
from access.tokens import issue_token
from lifecycle.deps import Services
from lifecycle.settings import LifecycleSettings
from storage.catalog import tables as t
from storage.catalog.migrate import upgrade
from tests.audio_fixtures import encode, sine_wav
from tests.integration.catalog_helpers import store_copy
from tests.integration.conftest import keys, ledger_bucket, storage_settings, store  # noqa: F401 - fixtures
from tests.integration.test_api import NUMBER, OTHER_NUMBER, SECRET, USERS

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
AUDIO_SECONDS = 20


@lru_cache(maxsize=1)
def opus_audio() -> bytes:
    """A 20 s, 440 Hz tone in Ogg/Opus, encoded by the real ffmpeg: something a browser plays."""
    return encode(sine_wav(AUDIO_SECONDS, rate=8000), "opus")


class Server:
    """uvicorn in a background thread on a free loopback port: real HTTP, so <audio> streams."""

    def __init__(self, app) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True,
                                       name="console-uvicorn")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "Server":
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the console's uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.socket.close()


@dataclass
class Console:
    """A served app over a fresh schema and bucket, one user per role, calls with real audio."""

    url: str
    engine: sa.Engine
    services: Services
    settings: AccessSettings
    bucket: str
    recordings: dict[str, uuid.UUID] = field(default_factory=dict)
    copies: dict[str, uuid.UUID] = field(default_factory=dict)

    def token(self, user_id: str) -> str:
        return issue_token(user_id, self.settings)

    def audit_rows(self, **where) -> list[dict]:
        a = t.audit_events
        with self.engine.connect() as conn:
            query = sa.select(a).order_by(a.c.seq)
            for column, value in where.items():
                query = query.where(a.c[column] == value)
            return [dict(r) for r in conn.execute(query).mappings()]

    def copy_rows(self, name: str) -> list[dict]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(sa.select(t.copies).where(
                t.copies.c.recording_id == self.recordings[name], t.copies.c.deleting_at.is_(None))).mappings()]

    def add_call(self, name: str, *, agent: str, team: str | None, number: str = NUMBER, tenant: str = "acme",
                 tiers: tuple[str, ...] = ("production",), started_ago_h: int = 1,
                 restricted: bool = False) -> uuid.UUID:
        rid, keys = uuid.uuid4(), self.services.keys
        number_hash = keys.number_hash(tenant, number)
        started = datetime.now(timezone.utc) - timedelta(hours=started_ago_h)
        with self.engine.begin() as conn:
            caller = keys.caller_key(conn, tenant=tenant, number_hash=number_hash)
            conn.execute(t.recordings.insert().values(
                id=rid, tenant_id=tenant, external_id=f"call-{name}", started_at=started, direction="inbound",
                caller_number_sealed=keys.seal_number(caller, tenant=tenant, recording_id=rid, e164=number),
                caller_key_id=caller.id, number_hash=number_hash, agent_id=agent, team_id=team,
                duration_ms=AUDIO_SECONDS * 1000, audio_format="opus", channels=1, redactions=[[1000, 2000]],
                restricted=restricted, restricted_at=started if restricted else None, created_at=started,
                content_sha256="0" * 64))
        for tier in tiers:
            _, _, copy_id, _ = store_copy(self.engine, self.services.store, keys, self.bucket, opus_audio(),
                                          tier=tier, rid=rid, number_hash=number_hash,
                                          training_report="a model call" if tier == "training" else None)
            self.copies[f"{name}/{tier}"] = copy_id
        self.recordings[name] = rid
        return rid


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium, installed (as root, idempotently) when this machine lacks it."""
    if not CHROMIUM.exists():
        from deploy.local.servers import apt_install

        apt_install("chromium")
    return str(CHROMIUM)


# Package scope, not session: Playwright's sync API keeps an event loop running in the main
# thread while it is open, and the integration tests after these call asyncio.run().
@pytest.fixture(scope="package")
def browser(chromium: str):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def console(pg_engine, store, keys, scratch_bucket, storage_settings) -> Iterator[Console]:  # noqa: F811
    upgrade(pg_engine)
    now = datetime.now(timezone.utc)
    with pg_engine.begin() as conn:
        conn.execute(t.tenants.insert(), [dict(id="acme", name="Acme", created_at=now),
                                          dict(id="other", name="Other", created_at=now)])
        for spec in USERS:
            add_user(conn, **spec)
    services = Services(pg_engine, store, keys, storage=storage_settings, lifecycle=LifecycleSettings())
    settings = AccessSettings(jwt_secret=SECRET)
    with Server(create_app(services, settings)) as server:
        world = Console(server.url, pg_engine, services, settings, scratch_bucket)
        # Team t1: agents a1 and a2; team t2: agent a3; a restricted call of a1; another tenant's call.
        world.add_call("own", agent="a1", team="t1", tiers=("production", "monitoring", "training"), started_ago_h=1)
        world.add_call("teammate", agent="a2", team="t1", number=OTHER_NUMBER, started_ago_h=2)
        world.add_call("elsewhere", agent="a3", team="t2", number=OTHER_NUMBER, started_ago_h=3)
        world.add_call("restricted", agent="a1", team="t1", started_ago_h=4, restricted=True)
        world.add_call("other-tenant", agent="a1", team="t1", tenant="other", started_ago_h=5)
        yield world


@dataclass
class Tab:
    """A page in its own browser context, with every response and script error it saw."""

    page: object
    console: Console
    responses: list = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def goto(self, path: str) -> None:
        self.page.goto(self.console.url + path)

    def sign_in(self, user_id: str) -> None:
        self.goto("/console/")
        self.page.get_by_label("Access token").fill(self.console.token(user_id))
        self.page.get_by_role("button", name="Sign in").click()
        self.page.wait_for_url("**/console/search.html*")
        self.page.locator("#result-table").wait_for()

    def shot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def fetch(self, method: str, path: str, body: dict | None = None) -> int:
        """A request from the page with the signed-in user's own token: what forcing an action looks like."""
        return self.page.evaluate(
            """async ([method, path, body]) => {
                 const headers = {Authorization: `Bearer ${sessionStorage.getItem("callvault.token")}`};
                 if (body !== null) headers["Content-Type"] = "application/json";
                 const r = await fetch(path, {method, headers, body: body === null ? undefined : JSON.stringify(body)});
                 return r.status;
               }""", [method, path, body])

    def unlabelled(self) -> list[str]:
        """Controls without a label (or a name, for buttons): should be none on any page."""
        return self.page.evaluate("""() => [
            ...[...document.querySelectorAll("input, select, textarea")]
               .filter((e) => e.type !== "hidden" && e.labels.length === 0 && !e.getAttribute("aria-label")),
            ...[...document.querySelectorAll("button, a[href]")]
               .filter((e) => !e.textContent.trim() && !e.getAttribute("aria-label")),
            ...[...document.querySelectorAll("audio")].filter((e) => !e.getAttribute("aria-labelledby")),
          ].map((e) => e.outerHTML.slice(0, 120))""")


@pytest.fixture
def tab(browser, console: Console) -> Iterator[Tab]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    opened = Tab(page, console)
    page.on("response", lambda response: opened.responses.append(response))
    page.on("pageerror", lambda exc: opened.errors.append(str(exc)))
    page.on("console", lambda msg: opened.errors.append(msg.text)
            if "Content Security Policy" in msg.text else None)
    yield opened
    context.close()
    assert opened.errors == [], opened.errors
