"""The console in a real browser: Debian's Chromium driven by Playwright, against the app served
by uvicorn on a free loopback port, over real PostgreSQL + MinIO, with playable Ogg/Opus audio.

Chromium comes from Debian's packages and is installed here if missing (never Playwright's
own browser download). Each test gets a fresh world (schema, bucket, users, calls), a fresh
server and a fresh browser context (so an empty sessionStorage).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import pytest

from testbed.audio import encode, sine_wav
from tests.support.server import served
from tests.support.world import World, build_world

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
AUDIO_SECONDS = 20


@lru_cache(maxsize=1)
def opus_audio() -> bytes:
    """A 20 s, 440 Hz tone in Ogg/Opus, encoded by the real ffmpeg: something a browser plays."""
    return encode(sine_wav(AUDIO_SECONDS, rate=8000), "opus")


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
def console(pg_engine, store, keys, scratch_bucket, storage_settings) -> Iterator[World]:
    """The test world (with a restricted call of a1's) whose every copy is ``opus_audio()``, served."""
    world = build_world(pg_engine, store, keys, scratch_bucket, storage_settings, sound=opus_audio(),
                        duration_ms=AUDIO_SECONDS * 1000, restricted_call=True)
    with served(world):
        yield world


@dataclass
class Tab:
    """A page in its own browser context, with every response and script error it saw."""

    page: object
    console: World
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
def tab(browser, console: World) -> Iterator[Tab]:
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
