"""Every real number is kept (issue 19): a number libphonenumber cannot validate goes through the
real Kafka, worker, MinIO and PostgreSQL like any other, and the API's search and data-subject
requests given that exact string find it, export it, restrict it and erase it.

"+33 7 00 00 00 01" is a possible French mobile in a range not allocated: it is kept in E.164.
"4012" is an internal extension: it is kept as given ("raw:4012"), apart from any E.164 number.
"""

from __future__ import annotations

import io
import json
import zipfile
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from pydantic import SecretStr

from access.api import create_app
from access.identities import add_user
from access.settings import AccessSettings
from access.tokens import issue_token
from ingest.producer import Call
from lifecycle.deps import Services
from lifecycle.settings import LifecycleSettings
from storage.catalog import tables as t
from storage.keys import KeyRing
from testbed.audio import sine_wav

pytestmark = pytest.mark.integration

UNALLOCATED, EXTENSION, KNOWN = "+33 7 00 00 00 01", "4012", "06 12 34 56 78"
CALLS = {"unallocated": UNALLOCATED, "extension-1": EXTENSION, "extension-2": " 40-12 ", "known": KNOWN}


def _api(pipeline) -> tuple[TestClient, dict[str, str]]:
    keys = KeyRing.from_settings(pipeline.storage)
    with pipeline.engine.begin() as conn:
        add_user(conn, user_id="ic-1", role="internal-control", tenants=["acme"])
    services = Services(pipeline.engine, pipeline.store, keys, storage=pipeline.storage,
                        lifecycle=LifecycleSettings())
    settings = AccessSettings(jwt_secret=SecretStr("k" * 40))
    return TestClient(create_app(services, settings)), {"Authorization": f"Bearer {issue_token('ic-1', settings)}"}


def _found(client, auth, number: str) -> set[str]:
    answer = client.post("/recordings/search", headers=auth, json={"number": number})
    assert answer.status_code == 200, answer.text
    return {item["external_id"] for item in answer.json()["items"]}


def test_numbers_libphonenumber_cannot_validate_are_stored_and_found_by_that_exact_string(pipeline):
    now = datetime.now(timezone.utc)
    pipeline.push(*(Call(audio=sine_wav(1.0), tenant="acme", agent_id="a1", caller_number=number,
                         started_at=now - timedelta(minutes=2), recording_id=name) for name, number in CALLS.items()))
    stored = pipeline.wait_for(lambda e: e.get("type") == "stored", count=len(CALLS))
    assert sorted(e["external_id"] for e in stored) == sorted(CALLS)
    assert not [e for e in pipeline.seen if e.get("type") == "dead-letter"]
    keys = KeyRing.from_settings(pipeline.storage)
    with pipeline.engine.connect() as conn:
        rows = {r["external_id"]: r for r in conn.execute(sa.select(t.recordings)).mappings()}
        assert {name: keys.open_number(conn, row) for name, row in rows.items()} == {
            "unallocated": "+33700000001", "extension-1": "raw:4012", "extension-2": "raw:4012",
            "known": "+33612345678"}
    assert rows["extension-1"]["number_hash"] == rows["extension-2"]["number_hash"] != rows["known"]["number_hash"]
    # Nothing echoes the number: not the events, not the worker's log.
    assert "700000001" not in json.dumps(pipeline.seen, default=str)
    assert "700000001" not in pipeline.log_path.read_text(errors="replace")

    client, auth = _api(pipeline)
    with client:
        assert _found(client, auth, UNALLOCATED) == {"unallocated"}
        assert _found(client, auth, "07 00 00 00 01") == {"unallocated"}  # any usual format of it
        assert _found(client, auth, EXTENSION) == {"extension-1", "extension-2"}
        assert _found(client, auth, "+4012") == set()  # another string: another number
        shown = client.post("/recordings/search", headers=auth, json={"number": EXTENSION}).json()["items"]
        assert {item["caller_number"] for item in shown} == {"raw:4012"}

        restricted = client.post("/subjects/restrict", headers=auth, json={"tenant": "acme", "numbers": [EXTENSION]})
        assert restricted.status_code == 200 and restricted.json() == {"recordings": 2}
        exported = client.post("/subjects/export", headers=auth, json={"tenant": "acme", "numbers": [UNALLOCATED]})
        assert exported.status_code == 200 and exported.json()["recordings"] == 1
        archive = zipfile.ZipFile(io.BytesIO(client.get(exported.json()["download_url"]).content))
        assert len([n for n in archive.namelist() if n.startswith("audio/")]) == 1

        erased = client.post("/subjects/erase", headers=auth, json={"tenant": "acme", "numbers": [EXTENSION]})
        assert erased.status_code == 200, erased.text
        assert sorted(erased.json()["erased_recordings"]) == sorted(str(rows[n]["id"]) for n in ("extension-1",
                                                                                                  "extension-2"))
        objected = client.post("/subjects/object", headers=auth, json={"tenant": "acme", "numbers": [UNALLOCATED]})
        assert objected.status_code == 200, objected.text
        assert objected.json()["erased_recordings"] == [str(rows["unallocated"]["id"])]
        assert _found(client, auth, EXTENSION) == set() and _found(client, auth, UNALLOCATED) == set()
    with pipeline.engine.connect() as conn:
        assert conn.execute(sa.select(t.recordings.c.external_id)).scalars().all() == ["known"]

    # The objection holds for the next call from that number, whatever its format.
    pipeline.push(Call(audio=sine_wav(1.0), tenant="acme", agent_id="a1", caller_number="0700000001",
                       started_at=now - timedelta(minutes=1), recording_id="unallocated-again"))
    again = pipeline.wait_for(lambda e: e.get("external_id") == "unallocated-again", count=1)
    assert again[0]["type"] == "suppressed"
