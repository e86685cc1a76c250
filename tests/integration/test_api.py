"""The HTTP API on real MinIO + PostgreSQL, through httpx (FastAPI's TestClient).

Who sees what per role, HTTP Range playback checked byte for byte against the decrypted
audio, revocation and contract end with unexpired tokens, IT break-glass, restriction,
copies, holds, and the audit trail every decision lands in (and that still verifies).
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import date, datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient

from access.api import create_app
from access.api.ranges import ByteRange, Unsatisfiable, parse_range
from access.api.streaming import windows
from access.identities import add_user, revoke_user
from access.tokens import issue_token
from storage.copies import read_copy
from tests.support.catalog import FRAME
from tests.support.world import NUMBER, names

pytestmark = pytest.mark.integration


def tiers_of(response, name_id: uuid.UUID) -> set[str]:
    item = next(i for i in response.json()["items"] if i["id"] == str(name_id))
    return {c["tier"] for c in item["copies"]}


# --- operations and authentication -------------------------------------------------------------

def test_healthz_and_metrics_need_no_token(world):
    assert world.get("/healthz", None).json() == {"status": "ok", "catalog": "ok"}
    world.get("/recordings", "control-1")
    text = world.get("/metrics", None).text
    assert 'callvault_api_requests_total{method="GET",route="/recordings",status="200"} 1.0' in text
    assert 'callvault_api_decisions_total{action="recording:search",outcome="allowed"}' in text


@pytest.mark.parametrize("headers, code", [
    ({}, "unauthenticated"),
    ({"Authorization": "Bearer not-a-jwt"}, "unauthenticated"),
    ({"Authorization": "Basic dXNlcjpwYXNz"}, "unauthenticated"),
])
def test_requests_without_a_valid_token_are_401_json(world, headers, code):
    response = world.client.get("/recordings", headers=headers)
    assert response.status_code == 401 and response.json()["error"]["code"] == code


def test_expired_tokens_and_unknown_users_are_401(world):
    expired = issue_token("control-1", world.settings, now=datetime.now(timezone.utc) - timedelta(hours=2),
                          ttl=timedelta(minutes=5))
    ghost = issue_token("nobody", world.settings)
    for token in (expired, ghost):
        response = world.client.get("/recordings", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, response.text


def test_a_revoked_user_is_refused_at_once_even_with_an_unexpired_token(world):
    headers = world.auth("consultant-1")
    assert world.client.get("/recordings", headers=headers).status_code == 200
    with world.engine.begin() as conn:
        revoke_user(conn, "consultant-1", keys=None, ledger=None)
    response = world.client.get("/recordings", headers=headers)
    assert response.status_code == 403 and response.json()["error"]["message"] == "account revoked"
    stream = world.client.get(f"/copies/{world.copies['own/production']}/audio", headers=headers)
    assert stream.status_code == 403
    denied = world.audit_rows(actor="consultant-1", outcome="denied")
    assert [r["target_id"] for r in denied] == ["GET /recordings", "GET /copies/{copy_id}/audio"]
    assert all(r["action"] == "api:request" and r["reason"] == "account revoked" for r in denied)


def test_a_refused_user_is_told_so_before_any_complaint_about_the_parameters(world):
    """Views that load their user themselves (search, playback) admit the user before a 422: a
    revoked user learns nothing about the API's schema, and the refusal is audited as usual."""
    ghost = {"Authorization": f"Bearer {issue_token('nobody', world.settings)}"}
    assert world.client.get("/recordings?limit=0", headers=ghost).status_code == 401
    headers = world.auth("consultant-1")
    bad = [("/recordings?limit=0", "GET /recordings"), ("/copies/not-a-uuid/audio", "GET /copies/{copy_id}/audio")]
    for url, _ in bad:
        response = world.client.get(url, headers=headers)
        assert response.status_code == 422 and response.json()["error"]["code"] == "validation_error"
    with world.engine.begin() as conn:
        revoke_user(conn, "consultant-1", keys=None, ledger=None)
    for url, _ in bad:
        response = world.client.get(url, headers=headers)
        assert response.status_code == 403 and response.json()["error"]["message"] == "account revoked", url
    denied = world.audit_rows(actor="consultant-1", outcome="denied")
    assert [r["target_id"] for r in denied] == [route for _, route in bad]


def test_a_user_past_their_contract_end_is_refused(world):
    with world.engine.begin() as conn:
        add_user(conn, user_id="leaver", role="consultant", tenants=["acme"], agent_id="a1",
                 contract_end=date.today() - timedelta(days=1))
    response = world.get(f"/copies/{world.copies['own/production']}/audio", "leaver")
    assert response.status_code == 403 and "contract ended" in response.json()["error"]["message"]
    assert world.audit_rows(actor="leaver")[-1]["outcome"] == "denied"


# --- search and detail -------------------------------------------------------------------------

def test_search_shows_each_role_only_what_it_may_see(world):
    rec = world.recordings
    consultant = world.get("/recordings", "consultant-1")
    assert names(world, consultant) == {"own"}
    assert tiers_of(consultant, rec["own"]) == {"production", "training"}  # not the monitoring copy
    manager = world.get("/recordings", "manager-1")
    assert names(world, manager) == {"own", "teammate"}
    assert tiers_of(manager, rec["own"]) == {"production", "monitoring", "training"}
    coach = world.get("/recordings", "coach-1")
    assert names(world, coach) == {"own", "teammate"} and tiers_of(coach, rec["own"]) == {"production", "training"}
    control = world.get("/recordings", "control-1").json()["items"]
    assert [i["id"] for i in control] == [str(rec[n]) for n in ("own", "teammate", "elsewhere")]  # newest first
    assert control[0]["caller_number"] == NUMBER and not control[0]["numbers_masked"]
    group = world.get("/recordings", "control-group")
    assert names(world, group) == {"own", "teammate", "elsewhere", "other-tenant"}
    it = world.get("/recordings", "it-1").json()["items"]
    assert len(it) == 3 and all(i["numbers_masked"] for i in it)
    assert it[0]["caller_number"] == "+33 6 •• •• •• 78" and NUMBER not in json.dumps(it)


def test_search_filters_by_number_in_any_format_agent_team_tier_tenant_and_time(world):
    rec = world.recordings
    by_number = world.post("/recordings/search", "control-group", json={"number": "06 12 34 56 78"})
    assert names(world, by_number) == {"own", "other-tenant"}
    assert names(world, world.post("/recordings/search", "control-1", json={"number": "0612345678"})) == {"own"}
    assert names(world, world.post("/recordings/search", "control-1", json={"number": "0612345678",
                                                                           "tier": "monitoring"})) == {"own"}
    assert names(world, world.get("/recordings", "control-1", params={"agent": "a2"})) == {"teammate"}
    assert names(world, world.get("/recordings", "control-1", params={"team": "t2"})) == {"elsewhere"}
    assert names(world, world.get("/recordings", "control-1", params={"tier": "monitoring"})) == {"own"}
    assert names(world, world.get("/recordings", "control-group", params={"tenant": "other"})) == {"other-tenant"}
    assert names(world, world.get("/recordings", "control-1", params={"tenant": "other"})) == set()
    since = (datetime.now(timezone.utc) - timedelta(hours=2, minutes=30)).isoformat()
    assert names(world, world.get("/recordings", "control-1", params={"from": since})) == {"own", "teammate"}
    page = world.get("/recordings", "control-1", params={"limit": 2}).json()
    assert [i["id"] for i in page["items"]] == [str(rec["own"]), str(rec["teammate"])] and page["next_cursor"]
    last = world.get("/recordings", "control-1", params={"limit": 2, "cursor": page["next_cursor"]}).json()
    assert [i["id"] for i in last["items"]] == [str(rec["elsewhere"])] and last["next_cursor"] is None
    bad = world.post("/recordings/search", "control-1", json={"number": "06 CALL NOW"})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_number"


def test_one_audit_entry_per_search_and_never_the_number(world, caplog):
    caplog.set_level(logging.DEBUG)
    world.post("/recordings/search", "consultant-1", json={"number": "06 12 34 56 78", "tier": "production"})
    world.post("/recordings/search", "consultant-1", json={"number": "06 12 CALL"})
    searches = world.audit_rows(action="recording:search:number")
    assert len(searches) == 1
    entry = searches[0]
    assert entry["outcome"] == "allowed" and entry["detail"]["has_number_filter"] is True
    assert entry["detail"]["tier"] == "production" and entry["detail"]["results"] == 1
    trail = json.dumps([{k: v for k, v in r.items()} for r in world.audit_rows()], default=str)
    logs = "\n".join(r.getMessage() for r in caplog.records)
    for text in (trail, logs):
        assert "612345678" not in text and "12 34 56" not in text and "06 12" not in text


def test_recording_detail_for_the_visible_and_404_for_the_rest(world):
    rec = world.recordings
    own = world.get(f"/recordings/{rec['own']}", "consultant-1")
    assert own.status_code == 200, own.text
    body = own.json()
    assert {c["tier"] for c in body["copies"]} == {"production", "training"}
    assert body["redactions"] == [{"start_ms": 1000, "end_ms": 2000}] and body["restricted"] is False
    assert body["retained_until"] is not None and body["held"] is False
    hidden = world.get(f"/recordings/{rec['elsewhere']}", "consultant-1")
    assert hidden.status_code == 404 and hidden.json()["error"]["code"] == "not_found"
    assert world.get(f"/recordings/{uuid.uuid4()}", "control-1").status_code == 404
    views = world.audit_rows(action="recording:metadata:view")
    assert [(v["actor"], v["outcome"], v["target_id"]) for v in views] == [
        ("consultant-1", "allowed", str(rec["own"])), ("consultant-1", "denied", str(rec["elsewhere"]))]
    it = world.get(f"/recordings/{rec['own']}", "it-1").json()
    assert it["numbers_masked"] and it["caller_number"] == "+33 6 •• •• •• 78"


# --- audio and HTTP Range ----------------------------------------------------------------------

def test_range_requests_return_the_exact_bytes_with_correct_headers(world):
    copy_id = world.copies["own/production"]
    with world.engine.connect() as conn:
        full = read_copy(conn, world.services.store, world.services.keys, copy_id)
    total = len(full)
    url = f"/copies/{copy_id}/audio"

    whole = world.get(url, "consultant-1")
    assert whole.status_code == 200 and whole.content == full
    assert whole.headers["accept-ranges"] == "bytes" and whole.headers["content-length"] == str(total)
    assert whole.headers["content-type"] == "audio/ogg" and "content-range" not in whole.headers

    cases = {
        "bytes=0-99": (0, 99),
        f"bytes={FRAME - 5}-{3 * FRAME + 7}": (FRAME - 5, 3 * FRAME + 7),  # crosses three frame boundaries
        "bytes=5000-": (5000, total - 1),
        "bytes=-500": (total - 500, total - 1),  # suffix
        f"bytes=100-{total + 1000}": (100, total - 1),  # end clamped
        f"bytes=-{total * 2}": (0, total - 1),  # suffix longer than the audio
    }
    for header, (start, end) in cases.items():
        part = world.get(url, "consultant-1", headers={"Range": header})
        assert part.status_code == 206, (header, part.text)
        assert part.headers["content-range"] == f"bytes {start}-{end}/{total}", header
        assert part.headers["content-length"] == str(end - start + 1)
        assert part.content == full[start:end + 1], header

    for header in (f"bytes={total}-", f"bytes={total + 5}-{total + 9}", "bytes=-0"):
        refused = world.get(url, "consultant-1", headers={"Range": header})
        assert refused.status_code == 416, header
        assert refused.headers["content-range"] == f"bytes */{total}"
        assert refused.json()["error"]["code"] == "range_not_satisfiable"
    for ignored in ("bytes=0-9,20-29", "items=0-5", "bytes=9-2", "bytes=abc"):
        response = world.get(url, "consultant-1", headers={"Range": ignored})
        assert response.status_code == 200 and response.content == full, ignored

    streams = world.audit_rows(action="recording:audio:stream", actor="consultant-1")
    allowed = [(r["detail"]["start"], r["detail"]["end"]) for r in streams if r["outcome"] == "allowed"]
    assert allowed[:1 + len(cases)] == [(0, total - 1), *cases.values()]
    assert [r["outcome"] for r in streams].count("failed") == 3  # the 416s


def test_head_answers_a_gets_headers_without_audio_after_the_same_decision(world):
    """Players and ``curl -I`` ask with HEAD first: a GET's status and headers, no body, no object
    read; the decision audited like a listen, marked ``head``; refused as a GET is."""
    copy_id = world.copies["own/production"]
    url = f"/copies/{copy_id}/audio"
    whole = world.get(url, "consultant-1")
    total = len(whole.content)
    head = world.client.head(url, headers=world.auth("consultant-1"))
    assert (head.status_code, head.content) == (200, b"")
    for name in ("content-type", "content-length", "accept-ranges", "etag", "cache-control"):
        assert head.headers[name] == whole.headers[name], name
    part = world.client.head(url, headers={**world.auth("consultant-1"), "Range": "bytes=10-19"})
    assert (part.status_code, part.headers["content-range"], part.headers["content-length"]) == (
        206, f"bytes 10-19/{total}", "10")
    refused = world.client.head(url, headers={**world.auth("consultant-1"), "Range": f"bytes={total}-"})
    assert (refused.status_code, refused.headers["content-range"]) == (416, f"bytes */{total}")
    other = world.client.head(f"/copies/{world.copies['teammate/production']}/audio", headers=world.auth("consultant-1"))
    assert other.status_code == world.get(f"/copies/{world.copies['teammate/production']}/audio",
                                          "consultant-1").status_code == 403
    assert world.client.head(url).status_code == 401
    heads = [r for r in world.audit_rows(action="recording:audio:stream", actor="consultant-1")
             if (r["detail"] or {}).get("head")]
    assert [(r["outcome"], r["detail"]["start"], r["detail"]["end"]) for r in heads] == [
        ("allowed", 0, total - 1), ("allowed", 10, 19), ("failed", None, None)]


def test_curl_head_over_real_http_gets_the_headers_and_returns(world):
    """``curl -I`` against uvicorn: the status line and the length of the audio, and curl does not
    wait for a body that never comes."""
    import subprocess

    from tests.support.server import served

    with served(world):
        url = f"{world.url}/copies/{world.copies['own/production']}/audio"
        done = subprocess.run(["curl", "-sS", "-I", "--max-time", "10", "-H",
                               f"Authorization: {world.auth('consultant-1')['Authorization']}", url],
                              capture_output=True, text=True, timeout=30)
        whole = world.get(f"/copies/{world.copies['own/production']}/audio", "consultant-1")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.lower().splitlines()
    assert lines[0].startswith("http/1.1 200"), done.stdout
    assert f"content-length: {len(whole.content)}" in [line.strip() for line in lines], done.stdout


def test_long_audio_streams_in_windows_and_seeks_across_them(world):
    rid = world.add_call("long", agent="a1", team="t1", size=600 * 1024 + 13)
    copy_id = world.copies["long/production"]
    audio = world.audio["long"]
    assert list(windows(10, 600 * 1024 + 12))[:2] == [(10, 256 * 1024 - 1), (256 * 1024, 512 * 1024 - 1)]
    whole = world.get(f"/copies/{copy_id}/audio", "consultant-1")
    assert whole.status_code == 200 and whole.content == audio
    start, end = 256 * 1024 - 100, 512 * 1024 + 100  # three windows
    part = world.get(f"/copies/{copy_id}/audio", "consultant-1", headers={"Range": f"bytes={start}-{end}"})
    assert part.status_code == 206 and part.content == audio[start:end + 1]
    assert rid


def test_stream_denied_is_403_json_and_audited(world):
    copy_id = world.copies["own/monitoring"]
    response = world.get(f"/copies/{copy_id}/audio", "consultant-1")
    assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"
    entry = world.audit_rows(action="recording:audio:stream")[-1]
    assert (entry["actor"], entry["role"], entry["outcome"], entry["target_id"]) == (
        "consultant-1", "consultant", "denied", str(copy_id))
    assert "monitoring" in entry["reason"]
    assert world.get(f"/copies/{copy_id}/audio", "manager-1").status_code == 200
    assert world.get(f"/copies/{uuid.uuid4()}/audio", "manager-1").status_code == 404


def test_an_expired_stream_link_says_expired_and_a_partial_one_says_incomplete(world):
    copy_id = world.copies["own/production"]
    url = world.post(f"/copies/{copy_id}/stream-link", "consultant-1").json()["url"]
    assert world.client.get(url, headers={"Range": "bytes=0-9"}).status_code == 206
    later = TestClient(create_app(world.services, world.settings,
                                  clock=lambda: datetime.now(timezone.utc) + timedelta(hours=1)))
    expired = later.get(url)
    assert expired.status_code == 401 and expired.json()["error"]["message"] == "stream link expired"
    assert "ask for a new one" in expired.json()["error"]["hint"]
    partial = world.client.get(url.split("&", 1)[0])  # what an unquoted URL in a shell sends
    assert partial.status_code == 401 and partial.json()["error"]["message"] == "incomplete stream link"
    forged = world.client.get(url.replace("sig=", "sig=0"))
    assert forged.status_code == 401 and forged.json()["error"]["message"] == "invalid stream link"


def test_it_plays_audio_only_after_break_glass_and_the_ticket_is_audited(world):
    rid, copy_id = world.recordings["own"], world.copies["own/production"]
    assert world.get(f"/copies/{copy_id}/audio", "it-1").status_code == 403
    prod = ["production"]
    longest = world.settings.break_glass_max_minutes
    stated = world.client.get("/openapi.json").json()["components"]["schemas"]["BreakGlassRequest"]
    assert stated["properties"]["minutes"]["maximum"] == longest  # the schema states what the handler enforces
    for minutes in (longest + 1, 10_000, 1_000_000, 0, -5):
        too_long = world.post("/break-glass", "it-1", json={"ticket": "INC-42", "minutes": minutes,
                                                            "recording_id": str(rid), "tiers": prod})
        assert too_long.status_code == 422, (minutes, too_long.text)
        assert too_long.json()["error"]["fields"][0]["loc"] == ["body", "minutes"]
    beyond = world.post("/break-glass", "it-1", json={"ticket": "INC-42", "minutes": longest + 1,
                                                      "recording_id": str(rid), "tiers": prod})
    assert f"less than or equal to {longest}" in beyond.json()["error"]["fields"][0]["msg"]
    assert world.post("/break-glass", "consultant-1", json={"ticket": "INC-42", "minutes": 5, "recording_id": str(rid),
                                                            "tiers": prod}).status_code == 403
    assert world.post("/break-glass", "it-1", json={"ticket": "INC-42", "minutes": 5, "tiers": prod,
                                                     "recording_id": str(uuid.uuid4())}).status_code == 404
    grant = world.post("/break-glass", "it-1", json={"ticket": "INC-42", "minutes": 30, "recording_id": str(rid),
                                                     "tiers": prod})
    assert grant.status_code == 201, grant.text
    assert grant.json()["ticket"] == "INC-42" and grant.json()["recording_id"] == str(rid)
    assert grant.json()["tiers"] == ["production"]
    played = world.get(f"/copies/{copy_id}/audio", "it-1", headers={"Range": "bytes=0-9"})
    assert played.status_code == 206 and played.content == world.audio["own"][:10]
    # The grant covers that recording only.
    assert world.get(f"/copies/{world.copies['teammate/production']}/audio", "it-1").status_code == 403
    streams = world.audit_rows(action="recording:audio:stream", actor="it-1")
    assert [r["outcome"] for r in streams] == ["denied", "allowed", "denied"]
    assert streams[1]["reason"] == "INC-42" and streams[1]["detail"]["ticket"] == "INC-42"
    assert (streams[1]["detail"]["start"], streams[1]["detail"]["end"]) == (0, 9)
    glass = world.audit_rows(action="recording:break-glass:open")
    assert [(g["actor"], g["outcome"]) for g in glass] == [("consultant-1", "denied"), ("it-1", "allowed")]


def test_a_restricted_recording_is_playable_by_internal_control_only(world):
    world.add_call("restricted", agent="a1", team="t1", restricted=True)
    copy_id = world.copies["restricted/production"]
    for user in ("consultant-1", "manager-1", "coach-1"):
        response = world.get(f"/copies/{copy_id}/audio", user)
        assert response.status_code == 403 and "restricted" in response.json()["error"]["message"], user
    assert world.get(f"/copies/{copy_id}/audio", "control-1").content == world.audio["restricted"]
    detail = world.get(f"/recordings/{world.recordings['restricted']}", "consultant-1").json()
    assert detail["restricted"] is True  # metadata stays visible; the audio does not


def test_export_is_an_attachment_for_internal_control_audited_apart_from_streams(world):
    copy_id = world.copies["own/production"]
    assert world.get(f"/copies/{copy_id}/export", "manager-1").status_code == 403
    export = world.get(f"/copies/{copy_id}/export", "control-1")
    assert export.status_code == 200 and export.content == world.audio["own"]
    assert export.headers["content-disposition"].startswith("attachment;")
    rows = world.audit_rows(action="recording:audio:export")
    assert [(r["actor"], r["outcome"]) for r in rows] == [("manager-1", "denied"), ("control-1", "allowed")]
    assert not world.audit_rows(action="recording:audio:stream")


# --- copies, holds, report, audit --------------------------------------------------------------

def test_coach_creates_a_training_copy_while_a_consultant_is_refused(world):
    rid = world.recordings["teammate"]
    refused = world.post(f"/recordings/{rid}/copies", "consultant-1",
                         json={"tier": "training", "training_report": "good call"})
    assert refused.status_code == 403
    denied = world.audit_rows(action="copy:training:create")
    assert [(d["actor"], d["outcome"]) for d in denied] == [("consultant-1", "denied")]
    no_report = world.post(f"/recordings/{rid}/copies", "coach-1", json={"tier": "training"})
    assert no_report.status_code == 422 and no_report.json()["error"]["code"] == "copy_not_allowed"
    made = world.post(f"/recordings/{rid}/copies", "coach-1",
                      json={"tier": "training", "training_report": "clear, empathetic"})
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["tier"] == "training" and body["created"] is True
    copy_id = body["copy_id"]
    assert world.get(f"/copies/{copy_id}/audio", "coach-1").content == world.audio["teammate"]
    again = world.post(f"/recordings/{rid}/copies", "coach-1",
                       json={"tier": "training", "training_report": "clear, empathetic"})
    assert again.status_code == 200 and again.json()["copy_id"] == copy_id and again.json()["created"] is False
    assert world.post(f"/recordings/{rid}/copies", "manager-1", json={"tier": "monitoring"}).status_code == 201
    assert world.post(f"/recordings/{rid}/copies", "manager-1",
                      json={"tier": "complaint-extract", "reason": "C-1"}).status_code == 403
    extract = world.post(f"/recordings/{rid}/copies", "control-1", json={"tier": "complaint-extract", "reason": "C-1"})
    assert extract.status_code == 201
    assert world.post(f"/recordings/{uuid.uuid4()}/copies", "control-1",
                      json={"tier": "monitoring"}).status_code == 404
    assert [r["outcome"] for r in world.audit_rows(action="copy:create")] == ["done"] * 3  # lifecycle's own entries


def test_holds_are_set_and_released_by_internal_control_only(world):
    copy_id, rid = world.copies["own/production"], world.recordings["own"]
    assert world.post(f"/copies/{copy_id}/hold", "manager-1", json={"reason": "LIT-7"}).status_code == 403
    assert world.post(f"/copies/{copy_id}/hold", "control-1", json={"reason": "   "}).status_code == 422
    held = world.post(f"/copies/{copy_id}/hold", "control-1", json={"reason": "LIT-7"})
    assert held.status_code == 200 and held.json()["changed"] == [str(copy_id)]
    detail = world.get(f"/recordings/{rid}", "control-1").json()
    production = next(c for c in detail["copies"] if c["tier"] == "production")
    assert production["hold"] and production["hold_reason"] == "LIT-7" and production["hold_actor"] == "control-1"
    everything = world.post(f"/recordings/{rid}/hold", "control-1", json={"reason": "LIT-8"}).json()
    assert everything["unchanged"] == [str(copy_id)] and len(everything["changed"]) == 2
    assert world.delete(f"/copies/{copy_id}/hold", "consultant-1").status_code == 403
    released = world.delete(f"/recordings/{rid}/hold", "control-1", params={"reason": "case closed"})
    assert released.status_code == 200 and len(released.json()["changed"]) == 3
    assert world.delete(f"/copies/{copy_id}/hold", "control-1").json()["unchanged"] == [str(copy_id)]
    assert world.post(f"/copies/{uuid.uuid4()}/hold", "control-1", json={"reason": "x"}).status_code == 404
    decisions = [(r["action"], r["actor"], r["outcome"]) for r in world.audit_rows(target_type="copy")
                 if r["action"].startswith("copy:hold")]
    assert ("copy:hold:set", "manager-1", "denied") in decisions
    assert ("copy:hold:release", "consultant-1", "denied") in decisions
    # lifecycle's own entries for the three copies it held: the same name, outcome "done"
    assert [r["outcome"] for r in world.audit_rows(action="copy:hold:set") if r["actor"] == "control-1"
            and r["outcome"] != "allowed"] == ["done"] * 3


def test_lifecycle_report_for_internal_control_and_it(world):
    report = world.get("/lifecycle/report", "control-1")
    assert report.status_code == 200
    rows = {(r["tenant"], r["tier"]): r for r in report.json()["rows"]}
    assert rows[("acme", "production")]["copies"] == 3 and ("other", "production") not in rows
    assert set(rows[("acme", "production")]["expiring"]) == {"7", "30", "90"}
    assert world.get("/lifecycle/report", "it-1").status_code == 200
    assert world.get("/lifecycle/report", "manager-1").status_code == 403
    entries = world.audit_rows(action="lifecycle:report:view")
    assert [e["outcome"] for e in entries] == ["allowed", "allowed", "denied"]


def test_audit_is_read_and_verified_by_internal_control_after_everything(world):
    world.get("/recordings", "consultant-1")
    world.get(f"/copies/{world.copies['own/production']}/audio", "consultant-1", headers={"Range": "bytes=1-2"})
    world.post(f"/copies/{world.copies['own/production']}/hold", "control-1", json={"reason": "LIT-9"})
    world.delete(f"/copies/{world.copies['own/production']}/hold", "control-1")
    assert world.get("/audit", "consultant-1").status_code == 403
    assert world.get("/audit/verify", "it-1").status_code == 403
    page = world.get("/audit", "control-1", params={"limit": 5})
    assert page.status_code == 200
    assert [e["seq"] for e in page.json()["entries"]] == sorted(e["seq"] for e in page.json()["entries"])
    after = page.json()["next_after_seq"]
    rest = world.get("/audit", "control-1", params={"after_seq": after, "limit": 500}).json()
    assert rest["entries"][0]["seq"] > after and rest["next_after_seq"] is None
    assert rest["entries"][-1]["action"] == "audit:read"  # the previous page's read, audited
    # Newest first, page by page back to the start: the same entries in reverse.
    everything = page.json()["entries"] + rest["entries"]
    newest, before = [], None
    while True:
        params = {"newest_first": True, "limit": 4, **({"before_seq": before} if before else {})}
        back = world.get("/audit", "control-1", params=params).json()
        newest += back["entries"]
        assert back["next_after_seq"] is None
        if back["next_before_seq"] is None:
            break
        before = back["next_before_seq"]
    assert [e["seq"] for e in newest][len(newest) - len(everything):] == [e["seq"] for e in reversed(everything)]
    assert [e["seq"] for e in newest] == sorted((e["seq"] for e in newest), reverse=True)
    # Who touched one copy: its stream and its hold and release, nothing about other targets.
    own = str(world.copies["own/production"])
    about = world.get("/audit", "control-1", params={"target_type": "copy", "target_id": own}).json()["entries"]
    assert {e["target_id"] for e in about} == {own}
    assert [e["action"] for e in about] == ["recording:audio:stream", "copy:hold:set", "copy:hold:set",
                                            "copy:hold:release", "copy:hold:release"]
    assert world.get("/audit", "control-1", params={"target_id": own}).status_code == 422
    verified = world.get("/audit/verify", "control-1").json()
    assert verified["ok"] is True and verified["entries"] >= 10
    assert world.audit_rows()[-1]["detail"] == {"ok": True, "entries": verified["entries"]}


# --- errors ------------------------------------------------------------------------------------

def test_a_string_too_long_is_told_in_characters(world):
    copy_id, rid = world.copies["own/production"], world.recordings["own"]
    answers = [
        world.client.delete(f"/copies/{copy_id}/hold", params={"reason": "x" * 600}, headers=world.auth("control-1")),
        world.post(f"/copies/{copy_id}/hold", "control-1", json={"reason": "x" * 600}),
        world.post(f"/recordings/{rid}/copies", "control-1", json={"tier": "complaint-extract", "reason": "x" * 600}),
        world.get("/recordings", "control-1", params={"agent": "a" * 101}),
        world.post("/recordings/search", "control-1", json={"number": "1" * 65}),
        world.post("/subjects/erase", "control-1", json={"tenant": "acme", "numbers": ["1"]}),
    ]
    for answer in answers:
        assert answer.status_code == 422, answer.text
        field = answer.json()["error"]["fields"][0]
        assert field["type"] in ("string_too_long", "string_too_short"), field
        assert field["msg"].endswith(" characters") and "items" not in field["msg"], field
    too_many = world.post("/subjects/erase", "control-1", json={"tenant": "acme", "numbers": ["0612345678"] * 101})
    assert "at most 100 items" in too_many.json()["error"]["fields"][0]["msg"]  # a list does count items



def test_errors_are_json_with_a_stable_code(world):
    assert world.get("/copies/not-a-uuid/audio", "control-1").json()["error"]["code"] == "validation_error"
    assert world.get("/nowhere", "control-1").json()["error"]["code"] == "not_found"
    assert world.client.put("/healthz").json()["error"]["code"] == "method_not_allowed"
    bad_tier = world.post(f"/recordings/{world.recordings['own']}/copies", "control-1", json={"tier": "gold"})
    assert bad_tier.status_code == 422 and bad_tier.json()["error"]["fields"][0]["loc"] == ["body", "tier"]
    nul = world.get("/recordings", "control-1", params={"agent": "a\x00"})
    assert nul.status_code == 422
    naive = world.get("/recordings", "control-1", params={"from": "2026-01-01T00:00:00"})
    assert naive.status_code == 200
    ancient = world.get("/recordings", "control-1", params={"from": "0001-01-01T00:00:00+01:00"})
    assert ancient.status_code == 422 and "outside the supported dates" in ancient.json()["error"]["message"]


def test_openapi_documents_every_operation_with_models(world):
    schema = world.client.get("/openapi.json").json()
    assert {"/recordings", "/copies/{copy_id}/audio", "/break-glass", "/audit/verify"} <= set(schema["paths"])
    assert "HTTPBearer" in schema["components"]["securitySchemes"]
    assert schema["paths"]["/recordings"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/SearchResult"}


# --- Range parsing, pure -----------------------------------------------------------------------

@pytest.mark.parametrize("header, expected", [
    (None, None), ("bytes=0-0", ByteRange(0, 0)), ("bytes=10-", ByteRange(10, 99)), ("bytes=-1", ByteRange(99, 99)),
    ("bytes=90-1000", ByteRange(90, 99)), ("bytes=5-2", None), ("bytes=1-2,4-5", None), ("lines=1-2", None),
    ("bytes=-", None), ("bytes= 3 - 4 ", ByteRange(3, 4)), ("BYTES=1-1", ByteRange(1, 1)),
    ("bytes=0-" + "9" * 40, ByteRange(0, 99)),
])
def test_parse_range(header, expected):
    assert parse_range(header, 100) == expected


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=-0", "bytes=" + "9" * 40 + "-"])
def test_parse_range_unsatisfiable(header):
    with pytest.raises(Unsatisfiable):
        parse_range(header, 100)


def test_if_range_with_another_validator_gets_everything():
    assert parse_range("bytes=0-1", 100, if_range='"old"', etag='"new"') is None
    assert parse_range("bytes=0-1", 100, if_range='"new"', etag='"new"') == ByteRange(0, 1)
