"""The HTTP front door (issue 18), driven with the real `curl` against a real `callvault api`,
a real worker, Kafka, MinIO, PostgreSQL and ffmpeg: a good call is stored and playable, a bad
one dead-lettered and seen through its status URL, a replay is idempotent, and a telephony
token can neither search, play, nor push for another tenant, each attempt refused and audited.
"""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from pydub import AudioSegment

from ingest.service import recording_uuid
from storage.catalog import tables as t
from testbed.audio import sine_wav
from tests.support.front_doors import curl, push_headers

pytestmark = pytest.mark.integration
STARTED = (datetime.now(timezone.utc) - timedelta(minutes=3)).astimezone(timezone(timedelta(hours=1)))
NUMBER = "06 12 34 56 78"


def push(doors, path, recording_id: str, *, token_of: str = "pbx-acme", **headers) -> "Reply":  # noqa: F821
    args = push_headers(doors.tokens[token_of], recording_id=recording_id, started_at=STARTED.isoformat(),
                        **headers)
    return curl(*args, "--data-binary", f"@{path}", f"{doors.api.url}/v1/recordings")


def audit_rows(doors, actor: str) -> list[dict]:
    with doors.pipeline.engine.connect() as conn:
        rows = conn.execute(sa.select(t.audit_events).where(t.audit_events.c.actor == actor)
                            .order_by(t.audit_events.c.seq)).mappings().all()
    return [dict(r) for r in rows]


def test_a_pushed_call_is_stored_playable_and_a_replay_is_idempotent(front_doors, tmp_path):
    doors = front_doors
    wav = tmp_path / "call.wav"
    wav.write_bytes(sine_wav(6.0, freqs=(440.0,)))
    accepted = push(doors, wav, "pbx-1700000000.1", number=NUMBER, redactions="1000-2500")
    assert accepted.status == 202, accepted.body
    body = accepted.json
    assert body == {"recording_id": "pbx-1700000000.1", "tenant": "acme", "status": "queued",
                    "status_url": "/v1/recordings/pbx-1700000000.1/status?tenant=acme", "replay": False}
    stored = doors.wait_status("pbx-1700000000.1", "stored")
    assert stored["reason"] is None and "612345678" not in str(stored)

    # Playable, by internal control (the telephony principal itself plays nothing).
    rid = recording_uuid("acme", "pbx-1700000000.1")
    ic = ["-H", f"Authorization: Bearer {doors.tokens['ic-acme']}"]
    detail = curl(*ic, f"{doors.api.url}/recordings/{rid}")
    assert detail.status == 200 and detail.json["redactions"] == [{"start_ms": 1000, "end_ms": 2500}]
    copy_id = detail.json["copies"][0]["id"]
    audio = curl(*ic, f"{doors.api.url}/copies/{copy_id}/audio")
    assert audio.status == 200 and audio.body[:4] == b"OggS"
    decoded = AudioSegment.from_file(io.BytesIO(audio.body))
    assert abs(len(decoded) - 6000) < 100 and decoded[1100:2400].rms < 0.01 * decoded[3000:4000].rms
    assert list(doors.pipeline.store.list(doors.pipeline.storage.landing_bucket)) == []  # landing object gone

    # The same call again: 202, nothing sent twice; other audio under the same id: 409.
    again = push(doors, wav, "pbx-1700000000.1", number=NUMBER, redactions="1000-2500")
    assert again.status == 202 and again.json["replay"] and again.json["status"] == "stored"
    other = tmp_path / "other.wav"
    other.write_bytes(sine_wav(6.0, freqs=(660.0,)))
    conflict = push(doors, other, "pbx-1700000000.1", number=NUMBER, redactions="1000-2500")
    assert conflict.status == 409 and conflict.json["error"]["code"] == "recording_conflict"
    assert doors.pipeline.count(t.recordings) == 1
    assert list(doors.pipeline.store.list(doors.pipeline.storage.landing_bucket)) == []
    pushes = [(r["outcome"], r["reason"], (r["detail"] or {}).get("replay")) for r in audit_rows(doors, "pbx-acme")
              if r["action"] == "recording:ingest:push"]
    assert pushes == [("allowed", "telephony may recording:ingest:push", False),
                      ("allowed", "telephony may recording:ingest:push", True), ("failed", "recording_conflict", None)]


def test_a_bad_call_is_dead_lettered_and_told_by_its_status_url(front_doors, tmp_path):
    doors = front_doors
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not audio at all " * 400)
    accepted = push(doors, junk, "pbx-bad-1", number=NUMBER)
    assert accepted.status == 202, accepted.body
    status = doors.wait_status("pbx-bad-1", "dead-lettered")
    assert status["reason"] == "undecodable_audio" and "612345678" not in str(status)
    assert doors.pipeline.count(t.recordings) == 0

    # Bad metadata is refused at once (the schema's rules), naming fields, never values.
    wav = tmp_path / "call.wav"
    wav.write_bytes(sine_wav(2.0))
    refused = push(doors, wav, "pbx-bad-2", number="06 12 CALL", redaction="1000-2000")
    assert refused.status == 422, refused.body
    text = refused.body.decode()
    assert "caller_number" in text and "redaction" in text and "06 12" not in text
    naive = curl(*push_headers(doors.tokens["pbx-acme"], recording_id="pbx-bad-3", started_at="2026-11-20T10:00:00"),
                 "--data-binary", f"@{wav}", f"{doors.api.url}/v1/recordings")
    assert naive.status == 422 and "started_at" in naive.body.decode()
    too_big = tmp_path / "big.wav"
    too_big.write_bytes(b"\0" * (6 * 1024 * 1024 + 1))
    assert push(doors, too_big, "pbx-bad-4").status == 413
    # A corrected call under the id of a dead-lettered one is taken.
    fixed = push(doors, wav, "pbx-bad-1", number=NUMBER)
    assert fixed.status == 202 and not fixed.json["replay"]
    assert doors.wait_status("pbx-bad-1", "stored")["status"] == "stored"
    assert doors.status("pbx-never-pushed").status == 404
    # A tenant no catalog could store (a NUL byte, found by schemathesis): refused as input, not a 500.
    nul = doors.status("pbx-never-pushed", tenant="ac%00me")
    assert nul.status == 422 and nul.json["error"]["code"], nul.body


def test_a_telephony_token_pushes_for_its_tenant_and_does_nothing_else(front_doors, tmp_path):
    doors = front_doors
    wav = tmp_path / "call.wav"
    wav.write_bytes(sine_wav(2.0))
    assert push(doors, wav, "pbx-own", number=NUMBER).status == 202
    doors.wait_status("pbx-own", "stored")
    rid = recording_uuid("acme", "pbx-own")
    with doors.pipeline.engine.connect() as conn:
        copy_id = conn.execute(sa.select(t.copies.c.id).where(t.copies.c.recording_id == rid)).scalar_one()
    bearer = ["-H", f"Authorization: Bearer {doors.tokens['pbx-acme']}"]
    search = curl(*bearer, f"{doors.api.url}/recordings")
    by_number = curl(*bearer, "-H", "Content-Type: application/json", "--data", '{"number": "0612345678"}',
                     f"{doors.api.url}/recordings/search")
    detail = curl(*bearer, f"{doors.api.url}/recordings/{rid}")
    play = curl(*bearer, f"{doors.api.url}/copies/{copy_id}/audio")
    elsewhere = push(doors, wav, "pbx-theirs", number=NUMBER, tenant="globex")
    nowhere = push(doors, wav, "pbx-nowhere", number=NUMBER, tenant="initech")
    theirs = doors.status("pbx-own", tenant="globex")
    assert (search.status, by_number.status) == (403, 403)
    assert (detail.status, play.status) == (404, 403)  # may not see it at all; may not play it
    assert elsewhere.status == nowhere.status == theirs.status == 404  # another tenant's looks missing
    assert elsewhere.body == nowhere.body  # existing or not: byte for byte alike
    denied = [(r["action"], r["tenant_id"]) for r in audit_rows(doors, "pbx-acme") if r["outcome"] == "denied"]
    assert denied == [("recording:search", "acme"), ("recording:search:number", "acme"),
                      ("recording:metadata:view", "acme"), ("recording:audio:stream", "acme"),
                      ("recording:ingest:push", "globex"), ("recording:ingest:push", "initech"),
                      ("recording:ingest:status", "globex")]
    with doors.pipeline.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(t.pushes).where(
            t.pushes.c.tenant_id != "acme")).scalar() == 0
    # Nothing of the refused pushes reached a topic or the landing bucket.
    assert list(doors.pipeline.store.list(doors.pipeline.storage.landing_bucket)) == []


def test_an_upload_cut_short_queues_nothing_and_logs_no_traceback(front_doors, tmp_path):
    """A PBX whose connection drops mid-upload: nothing is queued, the landing bucket keeps nothing,
    and the API logs a client that went away, not an "unexpected" error with a traceback."""
    import socket
    import time

    doors = front_doors
    body = sine_wav(4.0)
    head = "".join(f"{line}\r\n" for line in (
        "POST /v1/recordings HTTP/1.1", "Host: callvault", f"Authorization: Bearer {doors.tokens['pbx-acme']}",
        "Content-Type: audio/wav", "Callvault-Recording-Id: pbx-cut-1", f"Callvault-Started-At: {STARTED.isoformat()}",
        "Callvault-Agent-Id: a1", f"Content-Length: {len(body)}")) + "\r\n"
    with socket.create_connection(("127.0.0.1", doors.api.port)) as sock:
        sock.sendall(head.encode() + body[: len(body) // 2])
        time.sleep(0.5)
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(10)
        sock.recv(1000)
    time.sleep(1.0)
    status = curl("-H", f"Authorization: Bearer {doors.tokens['pbx-acme']}",
                  f"{doors.api.url}/v1/recordings/pbx-cut-1/status?tenant=acme")
    assert status.status == 404, status.body
    assert list(doors.pipeline.store.list(doors.pipeline.storage.landing_bucket)) == []
    log = doors.api.log()
    assert "client went away" in log and "Traceback" not in log and "unexpected" not in log, log
