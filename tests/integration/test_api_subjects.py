"""Data-subject requests through the API: internal control only, export by a short-lived link."""

from __future__ import annotations

import io
import json
import zipfile
from urllib.parse import parse_qs, urlparse

import pytest

from tests.support.world import NUMBER, OTHER_NUMBER

pytestmark = pytest.mark.integration


def test_only_internal_control_of_the_tenant_may_run_requests(world):
    body = {"tenant": "acme", "numbers": ["06 12 34 56 78"]}
    for user in ("consultant-1", "manager-1", "coach-1", "it-1"):
        assert world.post("/subjects/restrict", user, json=body).status_code == 403
    assert world.post("/subjects/restrict", "control-1", json={**body, "tenant": "other"}).status_code == 403
    denied = world.audit_rows(action="subject:restrict", outcome="denied")
    assert len(denied) == 5
    ok = world.post("/subjects/restrict", "control-1", json=body)
    assert ok.status_code == 200 and ok.json() == {"recordings": 1}
    assert world.post("/subjects/lift", "control-1", json=body).json() == {"recordings": 1}
    bad = world.post("/subjects/erase", "control-1", json={"tenant": "acme", "numbers": ["06 CALL NOW"]})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_number"


def test_export_link_downloads_the_zip_then_expires_and_cannot_be_forged(world):
    made = world.post("/subjects/export", "control-1", json={"tenant": "acme", "numbers": ["+33 6 12 34 56 78"]})
    assert made.status_code == 200, made.text
    out = made.json()
    assert out["recordings"] == 1 and out["download_url"].startswith(f"/exports/acme/{out['request_id']}.zip?")
    got = world.client.get(out["download_url"])  # no bearer: the link is the credential, for minutes
    assert got.status_code == 200 and got.headers["content-type"] == "application/zip"
    zf = zipfile.ZipFile(io.BytesIO(got.content))
    audio = [n for n in zf.namelist() if n.startswith("audio/")]
    assert len(audio) == 1 and zf.read(audio[0]) == world.audio["own"]
    manifest = json.loads(zf.read("manifest.json"))
    assert {c["tier"] for c in manifest["copies"]} == {"production", "monitoring", "training", "complaint-extract"}
    assert len(world.audit_rows(action="subject:export:download")) == 1
    query = parse_qs(urlparse(out["download_url"]).query)
    forged = out["download_url"].replace(f"user={query['user'][0]}", "user=it-1")
    assert world.client.get(forged).status_code == 401
    expired = out["download_url"].replace(f"expires={query['expires'][0]}", "expires=1")
    assert world.client.get(expired).status_code == 401


def test_erase_through_the_api_lists_erased_and_kept(world):
    rid = world.recordings["own"]
    assert world.post(f"/recordings/{rid}/hold", "control-1", json={"reason": "case K-1"}).status_code == 200
    out = world.post("/subjects/erase", "control-1", json={"tenant": "acme", "numbers": [NUMBER]}).json()
    assert out["erased_copies"] == [] and {k["hold_reason"] for k in out["kept_copies"]} == {"case K-1"}
    assert out["keys_destroyed"] == 1
    other = world.post("/subjects/erase", "control-1", json={"tenant": "acme", "numbers": [OTHER_NUMBER]}).json()
    assert len(other["erased_recordings"]) == 2 and other["kept_copies"] == []
    assert world.get(f"/recordings/{world.recordings['teammate']}", "control-1").status_code == 404
