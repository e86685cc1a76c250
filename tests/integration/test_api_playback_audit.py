"""Playback's audit around its overlapped first read (``access.api.views.audio``), on real
MinIO + PostgreSQL.

The first window's GET runs on a reader thread while the decision's entry is appended and
committed; no byte leaves before that entry is committed, a read that fails after it is audited
``failed`` with its error, and a destroyed key (found before the GET) is one ``failed`` entry.
"""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from access.api import create_app
from access.api.deps import link_key, stream_signature
from access.api.views import audio as audio_view
from access.tokens import LinkPurpose
from storage import audit
from storage.catalog import tables as t

pytestmark = pytest.mark.integration

STREAM = "recording:audio:stream"


def _entries(world, copy_id) -> list[dict]:
    return world.audit_rows(action=STREAM, target_id=str(copy_id))


def test_a_read_failing_after_the_decision_committed_is_audited_failed_with_its_error(world):
    """Overlapped (one range at a time in the process): the decision's entry is committed while the
    GET runs, so the failure is a second entry naming the error."""
    world.add_call("gone", agent="a1", team="t1")
    copy_id, row = world.copies["gone/production"], world.copy_rows("gone")[0]
    world.services.store.delete(row["bucket"], row["object_key"])  # every version: nothing to read
    response = world.get(f"/copies/{copy_id}/audio", "consultant-1", headers={"Range": "bytes=10-99"})
    assert response.status_code == 404 and response.json()["error"]["code"] == "object_not_found"
    entries = _entries(world, copy_id)
    assert [e["outcome"] for e in entries] == ["allowed", "failed"]
    assert entries[1]["detail"] == {**entries[0]["detail"], "error": "object_not_found"}
    assert (entries[1]["detail"]["start"], entries[1]["detail"]["end"]) == (10, 99)
    assert entries[1]["actor"] == "consultant-1" and entries[1]["tenant_id"] == "acme"


def test_a_failed_read_when_the_process_is_busy_is_one_failed_entry(world, monkeypatch):
    """Past ``OVERLAP_UP_TO`` ranges at once the window is read before the entry is written: one
    entry, ``failed``, and the same answer."""
    monkeypatch.setattr(audio_view, "OVERLAP_UP_TO", 0)
    world.add_call("gone", agent="a1", team="t1")
    copy_id, row = world.copies["gone/production"], world.copy_rows("gone")[0]
    world.services.store.delete(row["bucket"], row["object_key"])
    response = world.get(f"/copies/{copy_id}/audio", "consultant-1", headers={"Range": "bytes=10-99"})
    assert response.status_code == 404 and response.json()["error"]["code"] == "object_not_found"
    assert [(e["outcome"], e["detail"]["error"]) for e in _entries(world, copy_id)] == [
        ("failed", "object_not_found")]
    played = world.get(f"/copies/{world.copies['own/production']}/audio", "consultant-1",
                       headers={"Range": "bytes=5-20"})
    assert played.status_code == 206 and played.content == world.audio["own"][5:21]
    assert [e["outcome"] for e in _entries(world, world.copies["own/production"])] == ["allowed"]


def _erased_copy(world, monkeypatch) -> tuple:
    """A copy whose caller key is destroyed, and the list of the object store's GETs from now on."""
    world.add_call("erased", agent="a1", team="t1")
    copy_id, row = world.copies["erased/production"], world.copy_rows("erased")[0]
    with world.engine.begin() as conn:
        assert world.services.keys.destroy_ids(conn, [row["caller_key_id"]], now=datetime.now(timezone.utc)) == 1
    gets: list = []
    real_get = world.services.store.get
    monkeypatch.setattr(world.services.store, "get", lambda *a, **kw: gets.append(a) or real_get(*a, **kw))
    return copy_id, gets


@pytest.mark.parametrize("overlap_up_to", [0, 2])
def test_a_destroyed_key_is_one_failed_entry_and_no_get(world, monkeypatch, overlap_up_to):
    monkeypatch.setattr(audio_view, "OVERLAP_UP_TO", overlap_up_to)
    copy_id, gets = _erased_copy(world, monkeypatch)
    response = world.get(f"/copies/{copy_id}/audio", "consultant-1", headers={"Range": "bytes=0-9"})
    assert response.status_code == 410 and response.json()["error"]["code"] == "key_destroyed"
    entries = _entries(world, copy_id)
    assert [(e["outcome"], e["detail"]["error"]) for e in entries] == [("failed", "key_destroyed")]
    assert gets == []


def test_no_audio_byte_leaves_before_its_entry_is_committed(world, monkeypatch):
    """The append is held back until the GET has started (so the bytes are ready first); the body's
    first byte is checked, from another connection, against the committed trail."""
    copy_id = world.copies["own/production"]
    get_started = threading.Event()
    overlapped: list[bool] = []
    real_get, real_write = world.services.store.get, audit._write

    def get(*args, **kwargs):
        get_started.set()
        return real_get(*args, **kwargs)

    def write(conn, entries):
        if any(e["action"] == STREAM for e in entries):
            overlapped.append(get_started.wait(timeout=10))  # ordering, not timing: did the GET start first?
        return real_write(conn, entries)

    monkeypatch.setattr(world.services.store, "get", get)
    monkeypatch.setattr(audit, "_write", write)
    committed_at_first_byte: list[list[str]] = []
    app = world.client.app

    async def watching(scope, receive, send):
        async def watch(message):
            if message["type"] == "http.response.body" and message.get("body") and not committed_at_first_byte:
                with world.engine.connect() as conn:
                    committed_at_first_byte.append(list(conn.execute(
                        sa.select(t.audit_events.c.outcome).where(t.audit_events.c.action == STREAM,
                                                                  t.audit_events.c.target_id == str(copy_id))
                    ).scalars()))
            await send(message)
        await app(scope, receive, watch)

    response = TestClient(watching).get(f"/copies/{copy_id}/audio",
                                        headers={**world.auth("consultant-1"), "Range": "bytes=100-4099"})
    assert response.status_code == 206 and response.content == world.audio["own"][100:4100]
    assert overlapped == [True]
    assert committed_at_first_byte == [["allowed"]]


def test_a_link_naming_an_unknown_user_is_an_invalid_stream_link(world):
    copy_id = world.copies["own/production"]
    expires = int(datetime.now(timezone.utc).timestamp()) + 60
    sig = stream_signature(link_key(world.settings, LinkPurpose.STREAM), copy_id, "nobody", expires)
    query = urlencode({"user": "nobody", "expires": expires, "sig": sig})
    response = world.client.get(f"/copies/{copy_id}/audio?{query}")
    assert response.status_code == 401 and response.json()["error"]["message"] == "invalid stream link"
    assert _entries(world, copy_id) == []


def test_a_multi_window_span_is_audited_once_and_read_window_by_window(world):
    world.add_call("long", agent="a1", team="t1", size=600 * 1024 + 13)
    copy_id, audio = world.copies["long/production"], world.audio["long"]
    start, end = 1000, 520 * 1024  # three windows: the first read before the answer, two while streaming
    part = world.get(f"/copies/{copy_id}/audio", "consultant-1", headers={"Range": f"bytes={start}-{end}"})
    assert part.status_code == 206 and part.content == audio[start:end + 1]
    empty = world.get(f"/copies/{copy_id}/audio", "consultant-1", headers={"Range": "bytes=-0"})
    assert empty.status_code == 416
    assert [(e["outcome"], e["detail"]["start"]) for e in _entries(world, copy_id)] == [
        ("allowed", start), ("failed", None)]


def test_ranges_past_playback_threads_wait_their_turn_and_each_is_played_and_audited(world, monkeypatch):
    """``playback_threads=1``: six listeners at once are played one at a time, every one in full."""
    copy_id, audio = world.copies["own/production"], world.audio["own"]
    inside, most = [0], [0]
    guard = threading.Lock()
    real_play = audio_view._play

    def play(*args):
        with guard:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        try:
            return real_play(*args)
        finally:
            with guard:
                inside[0] -= 1

    monkeypatch.setattr(audio_view, "_play", play)
    client = TestClient(create_app(world.services, world.settings.model_copy(update={"playback_threads": 1})))
    start = threading.Barrier(6)
    answers: dict[int, tuple[int, bytes]] = {}

    def listen(i: int) -> None:
        start.wait(timeout=30)
        response = client.get(f"/copies/{copy_id}/audio",
                              headers={**world.auth("consultant-1"), "Range": f"bytes={i * 100}-{i * 100 + 99}"})
        answers[i] = (response.status_code, response.content)

    with client:
        threads = [threading.Thread(target=listen, args=(i,)) for i in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert answers == {i: (206, audio[i * 100:i * 100 + 100]) for i in range(6)}
    assert most == [1]
    entries = _entries(world, copy_id)
    assert sorted(e["detail"]["start"] for e in entries if e["outcome"] == "allowed") == [i * 100 for i in range(6)]


def test_an_empty_copy_is_played_and_its_listen_audited(world):
    world.add_call("silent", agent="a1", team="t1", size=0)
    copy_id = world.copies["silent/production"]
    response = world.get(f"/copies/{copy_id}/audio", "consultant-1")
    assert response.status_code == 200 and response.content == b""
    assert [(e["outcome"], e["detail"]["total"]) for e in _entries(world, copy_id)] == [("allowed", 0)]


def test_a_head_of_an_erased_copy_is_410_like_its_get_and_reads_nothing(world, monkeypatch):
    copy_id, gets = _erased_copy(world, monkeypatch)
    response = world.client.head(f"/copies/{copy_id}/audio", headers=world.auth("consultant-1"))
    assert response.status_code == 410 and gets == []
    assert [(e["outcome"], e["detail"]["error"], e["detail"]["head"]) for e in _entries(world, copy_id)] == [
        ("failed", "key_destroyed", True)]
