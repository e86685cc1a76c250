"""Signed stream links (``POST /copies/{id}/stream-link``), over real HTTP without a browser:
what an <audio> element relies on, and what a forged, stale or misused link gets."""

from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import parse_qs, urlencode, urlparse

import httpx
import pytest
import sqlalchemy as sa

from access.identities import revoke_user
from storage.catalog import tables as t
from storage.copies import read_copy

pytestmark = pytest.mark.integration


@pytest.fixture
def http(console):
    with httpx.Client(base_url=console.url, timeout=30) as client:
        yield client


def link(console, http, user: str, copy: str) -> httpx.Response:
    return http.post(f"/copies/{console.copies[copy]}/stream-link",
                     headers={"Authorization": f"Bearer {console.token(user)}"})


def with_query(url: str, **changes) -> str:
    parsed = urlparse(url)
    query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
    return f"{parsed.path}?{urlencode({**query, **changes})}"


def test_a_link_streams_ranges_without_a_bearer_and_each_range_is_audited(console, http):
    made = link(console, http, "consultant-1", "own/production")
    assert made.status_code == 200, made.text
    body = made.json()
    ttl = datetime.fromisoformat(body["expires_at"]) - datetime.now(timezone.utc)
    assert 0 < ttl.total_seconds() <= console.settings.stream_url_ttl_seconds
    copy_id = console.copies["own/production"]
    with console.engine.connect() as conn:
        full = read_copy(conn, console.services.store, console.services.keys, copy_id)
    part = http.get(body["url"], headers={"Range": "bytes=100-4099"})
    assert part.status_code == 206 and part.content == full[100:4100]
    assert part.headers["content-range"] == f"bytes 100-4099/{len(full)}"
    assert http.get(body["url"]).content == full
    rows = console.audit_rows(action="recording:audio:stream", actor="consultant-1")
    assert [r["outcome"] for r in rows] == ["allowed"] * 3
    assert "stream_link_expires" in rows[0]["detail"]  # the link itself
    assert [(r["detail"]["start"], r["detail"]["via"]) for r in rows[1:]] == [(100, "stream-link"), (0, "stream-link")]


def test_a_forged_stale_or_misused_link_is_401(console, http):
    url = link(console, http, "consultant-1", "own/production").json()["url"]
    assert http.get(url).status_code == 200
    other_copy = url.replace(str(console.copies["own/production"]), str(console.copies["own/training"]))
    sig = parse_qs(urlparse(url).query)["sig"][0]
    for bad in (with_query(url, user="manager-1"), with_query(url, expires="1"), other_copy,
                with_query(url, sig="0" * 64), with_query(url, sig=sig.upper()),
                f"{urlparse(url).path}?sig={sig}"):
        response = http.get(bad)
        assert response.status_code == 401, bad
        assert response.json()["error"]["code"] == "unauthenticated"


def test_the_policy_still_rules_on_every_request_made_with_a_link(console, http):
    url = link(console, http, "consultant-1", "own/production").json()["url"]
    with console.engine.begin() as conn:
        conn.execute(t.recordings.update().where(t.recordings.c.id == console.recordings["own"])
                     .values(restricted=True))
    refused = http.get(url)
    assert refused.status_code == 403 and "restricted" in refused.json()["error"]["message"]
    with console.engine.begin() as conn:
        conn.execute(t.recordings.update().where(t.recordings.c.id == console.recordings["own"])
                     .values(restricted=False))
        revoke_user(conn, "consultant-1", keys=None, ledger=None)
    revoked = http.get(url)
    assert revoked.status_code == 403 and revoked.json()["error"]["message"] == "account revoked"
    denied = console.audit_rows(actor="consultant-1", outcome="denied")
    assert [(d["action"], d["target_id"]) for d in denied] == [
        ("recording:audio:stream", str(console.copies["own/production"])),
        ("api:request", "GET /copies/{copy_id}/audio")]


def test_no_link_for_what_the_user_may_not_play(console, http):
    assert link(console, http, "consultant-1", "own/monitoring").status_code == 403
    assert link(console, http, "consultant-1", "teammate/production").status_code == 403
    assert link(console, http, "it-1", "own/production").status_code == 403  # no break-glass
    assert link(console, http, "control-1", "restricted/production").status_code == 200
    assert http.post(f"/copies/{console.copies['own/production']}/stream-link").status_code == 401
    denied = [(r["actor"], r["action"]) for r in console.audit_rows(outcome="denied")]
    assert denied == [("consultant-1", "recording:audio:stream")] * 2 + [("it-1", "recording:audio:stream")]
    with console.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(t.break_glass)).scalar() == 0
