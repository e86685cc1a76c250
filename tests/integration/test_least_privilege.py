"""Least privilege (issue 16): IT and numbers, break-glass tiers, other tenants' ids, signed
links, numbers out of URLs, keyset pages. On the API test world (``tests.support.world``).
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest

from access.api.deps import stream_signature
from access.api.views.subjects import sign as export_signature
from access.tokens import LinkPurpose, link_key
from tests.support.world import NUMBER, SECRET, names

pytestmark = pytest.mark.integration


def grant(world, recording: str, tiers: list[str], ticket: str = "INC-7"):
    response = world.post("/break-glass", "it-1", json={"ticket": ticket, "minutes": 30, "tiers": tiers,
                                                        "recording_id": str(world.recordings[recording])})
    assert response.status_code == 201, response.text
    return response.json()


# --- 1. IT cannot filter by number without break-glass ---------------------------------------

def test_it_number_search_is_refused_403_and_audited_denied(world):
    refused = world.post("/recordings/search", "it-1", json={"number": "06 12 34 56 78"})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    assert "break-glass" in refused.json()["error"]["message"]
    denied = world.audit_rows(actor="it-1", action="recording:search:number")
    assert [(r["outcome"], r["detail"]["has_number_filter"]) for r in denied] == [("denied", True)]
    assert "612345678" not in str(denied)
    # Without a number IT still searches metadata, masked.
    plain = world.get("/recordings", "it-1")
    assert plain.status_code == 200 and all(i["numbers_masked"] for i in plain.json()["items"])


def test_it_number_search_under_a_grant_sees_the_granted_recordings_only(world):
    grant(world, "own", ["production"])
    found = world.post("/recordings/search", "it-1", json={"number": NUMBER})
    assert found.status_code == 200, found.text
    assert names(world, found) == {"own"}  # "elsewhere"/"teammate" have another number; none other granted
    assert found.json()["items"][0]["numbers_masked"]
    # A number of a recording not granted finds nothing, rather than telling whether it called.
    assert names(world, world.post("/recordings/search", "it-1", json={"number": "+33698765432"})) == set()
    allowed = world.audit_rows(actor="it-1", action="recording:search:number", outcome="allowed")
    assert len(allowed) == 2 and allowed[0]["detail"]["tickets"] == ["INC-7"]


# --- 2. a grant names a recording and its tiers ----------------------------------------------

def test_a_break_glass_grant_opens_only_its_tiers(world):
    grant(world, "own", ["production", "training"])
    assert world.get(f"/copies/{world.copies['own/production']}/audio", "it-1").status_code == 200
    assert world.get(f"/copies/{world.copies['own/training']}/audio", "it-1").status_code == 200
    shut = world.get(f"/copies/{world.copies['own/monitoring']}/audio", "it-1")
    assert shut.status_code == 403 and "does not open monitoring" in shut.json()["error"]["message"]
    assert world.post(f"/copies/{world.copies['own/monitoring']}/stream-link", "it-1").status_code == 403
    # A later grant adds a tier, with its own ticket in the audit.
    grant(world, "own", ["monitoring"], ticket="INC-8")
    assert world.get(f"/copies/{world.copies['own/monitoring']}/audio", "it-1").status_code == 200
    streams = world.audit_rows(actor="it-1", action="recording:audio:stream", outcome="allowed")
    assert [s["reason"] for s in streams] == ["INC-7", "INC-7", "INC-8"]


@pytest.mark.parametrize("body", [
    {"ticket": "INC-1", "minutes": 5, "tiers": ["production"]},                      # no recording
    {"ticket": "INC-1", "minutes": 5, "tiers": [], "recording_id": str(uuid.uuid4())},  # no tier
    {"ticket": "INC-1", "minutes": 5, "tiers": ["gold"], "recording_id": str(uuid.uuid4())},
])
def test_a_grant_without_a_recording_or_tiers_is_refused(world, body):
    assert world.post("/break-glass", "it-1", json=body).status_code == 422


# --- 4. another tenant's recording answers as a missing one ----------------------------------

def _routes(rid: str, cid: str) -> list[tuple[str, str, dict]]:
    return [
        ("GET", f"/recordings/{rid}", {}),
        ("GET", f"/console/api/recordings/{rid}", {}),
        ("POST", f"/recordings/{rid}/copies", {"json": {"tier": "complaint-extract", "reason": "C-1"}}),
        ("POST", f"/recordings/{rid}/copies", {"json": {"tier": "monitoring"}}),
        ("POST", f"/recordings/{rid}/hold", {"json": {"reason": "LIT-1"}}),
        ("DELETE", f"/recordings/{rid}/hold", {}),
        ("GET", f"/copies/{cid}/audio", {}),
        ("POST", f"/copies/{cid}/stream-link", {}),
        ("GET", f"/copies/{cid}/export", {}),
        ("POST", f"/copies/{cid}/hold", {"json": {"reason": "LIT-1"}}),
        ("DELETE", f"/copies/{cid}/hold", {}),
    ]


@pytest.mark.parametrize("user", ["control-1", "manager-1", "it-1", "consultant-1"])
def test_another_tenants_ids_answer_byte_for_byte_like_missing_ones(world, user):
    theirs = _routes(str(world.recordings["other-tenant"]), str(world.copies["other-tenant/production"]))
    missing = _routes(str(uuid.uuid4()), str(uuid.uuid4()))
    for (method, path, kw), (_, ghost, gkw) in zip(theirs, missing):
        a = world.client.request(method, path, headers=world.auth(user), **kw)
        b = world.client.request(method, ghost, headers=world.auth(user), **gkw)
        assert (a.status_code, a.content) == (b.status_code, b.content), (user, method, path)
        assert a.status_code == 404, (user, method, path, a.text)
    if user == "it-1":
        for rid in (world.recordings["other-tenant"], uuid.uuid4()):
            bg = world.post("/break-glass", "it-1", json={"ticket": "I", "minutes": 5, "tiers": ["production"],
                                                          "recording_id": str(rid)})
            assert (bg.status_code, bg.json()) == (404, {"error": {
                "code": "not_found", "message": "recording not found",
                "hint": "it does not exist, or no longer (expired or erased)"}})


# --- 5. links: a key per purpose, derived ----------------------------------------------------

def _stream_link(world, user: str = "control-1") -> tuple[str, dict]:
    issued = world.post(f"/copies/{world.copies['own/production']}/stream-link", user).json()["url"]
    parts = urlsplit(issued)
    return parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()}


def test_a_stream_link_signed_with_the_raw_secret_or_the_export_key_is_refused(world):
    path, query = _stream_link(world)
    assert world.client.get(path, params=query).status_code == 200
    cid, expires = world.copies["own/production"], int(query["expires"])
    raw = hmac.new(SECRET.get_secret_value().encode(), f"callvault:stream\x00{cid}\x00control-1\x00{expires}".encode(),
                   hashlib.sha256).hexdigest()
    as_export = stream_signature(link_key(world.settings, LinkPurpose.EXPORT), cid, "control-1", expires)
    genuine = stream_signature(link_key(world.settings, LinkPurpose.STREAM), cid, "control-1", expires)
    assert genuine == query["sig"] and len({raw, as_export, genuine}) == 3
    for sig in (raw, as_export):
        forged = world.client.get(path, params={**query, "sig": sig})
        assert forged.status_code == 401 and forged.json()["error"]["code"] == "unauthenticated"


def test_an_export_link_signed_with_the_raw_secret_or_the_stream_key_is_refused(world):
    request_id, expires = str(uuid.uuid4()), 2**33
    path = f"/exports/acme/{request_id}.zip"

    def fetch(key: bytes):
        sig = export_signature(key, "acme", request_id, "control-1", expires)
        return world.client.get(path, params={"user": "control-1", "expires": expires, "sig": sig})

    assert fetch(link_key(world.settings, LinkPurpose.EXPORT)).status_code == 404  # signature passes; no such export
    for key in (SECRET.get_secret_value().encode(), link_key(world.settings, LinkPurpose.STREAM)):
        forged = fetch(key)
        assert forged.status_code == 401 and forged.json()["error"]["code"] == "unauthenticated"


# --- 6. numbers never in a URL ---------------------------------------------------------------

def test_get_search_refuses_a_number_and_names_the_post_route(world):
    for value in ("+33612345678", ""):
        refused = world.get("/recordings", "control-1", params={"number": value})
        assert refused.status_code == 400, refused.text
        assert "POST /recordings/search" in refused.json()["error"]["message"]
        assert "612345678" not in refused.text
    assert world.post("/recordings/search", "control-1", json={"number": NUMBER}).status_code == 200


# --- 7. keyset pages -------------------------------------------------------------------------

def test_search_pages_by_an_opaque_cursor_through_every_visible_recording(world):
    seen, cursor, pages = [], None, 0
    while True:
        body = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        page = world.post("/recordings/search", "control-group", json=body).json()
        seen += [i["id"] for i in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    rec = world.recordings
    assert seen == [str(rec[n]) for n in ("own", "teammate", "elsewhere", "other-tenant")] and pages == 4
    # The same pages through GET (no number), and a recording stored meanwhile does not shift them.
    first = world.get("/recordings", "control-1", params={"limit": 2}).json()
    world.add_call("newest", agent="a1", team="t1", started_ago_h=0)
    second = world.get("/recordings", "control-1", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [i["id"] for i in second["items"]] == [str(rec["elsewhere"])]


@pytest.mark.parametrize("params, status", [({"cursor": "not-a-cursor"}, 400), ({"cursor": "W10"}, 400),
                                            ({"limit": 201}, 422), ({"limit": 0}, 422), ({"offset": 5}, 200)])
def test_bad_cursors_and_page_sizes_are_refused(world, params, status):
    response = world.get("/recordings", "control-1", params=params)
    assert response.status_code == status, response.text
    if status == 200:  # an offset is no longer a parameter: ignored, the first page
        assert names(world, response) == {"own", "teammate", "elsewhere"}


# A cursor of the first keyset version (id ascending): refused by name, never misread.
OLD_CURSOR = "WyIyMDI2LTAxLTAxVDAwOjAwOjAwKzAwOjAwIiwiMDAwMDAwMDAtMDAwMC0wMDAwLTAwMDAtMDAwMDAwMDAwMDAxIl0"


def test_a_cursor_of_the_older_order_is_refused_with_what_to_do(world):
    refused = world.get("/recordings", "control-1", params={"cursor": OLD_CURSOR})
    assert refused.status_code == 400, refused.text
    assert "older version" in refused.json()["error"]["message"] and "first page" in refused.text
