"""The command line as a new user meets it (issue 19), on the real stack: one id for a call
everywhere, ``recordings list|show`` scoped by the policy, inputs checked where they enter,
files written to the output folder, and ``push`` saying what became of the call."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Iterator

import pytest
import sqlalchemy as sa

from access.identities import add_user
from core.errors import MalformedInput
from lifecycle import service as lifecycle_service
from storage.catalog import tables as t
from storage.catalog.db import UnitOfWork
from tests.audio_fixtures import sine_wav
from tests.support.cli import NUMBER, Cli, CliWorld, cli_world

pytestmark = pytest.mark.integration


@pytest.fixture
def world(minio, ledger_bucket, postgres_url, kafka_bootstrap, tmp_path) -> Iterator[CliWorld]:
    with cli_world(minio, ledger_bucket, postgres_url, kafka_bootstrap, tmp_path) as w:
        yield w


def ok(result, *words: str) -> str:
    assert result.exit_code == 0 and result.exception is None, result.output + repr(result.exception)
    for word in words:
        assert word in result.stdout, result.stdout
    return result.stdout


def refused(result, code: int, *words: str) -> str:
    assert isinstance(result.exception, SystemExit) and result.exit_code == code, result.output
    line = result.stderr.strip()
    assert line.startswith("error: ") and "\n" not in line, result.stderr
    for word in words:
        assert word in line, line
    return line


def test_one_id_for_a_call_everywhere(world: CliWorld) -> None:
    cli, ref, rid = world.cli, world.telephony_ref, str(world.recording_id)
    listed = ok(cli("recordings", "list", "--actor", "ic-1"), ref, rid, NUMBER, "production until")
    assert "1 recording " in listed
    ok(cli("recordings", "show", ref, "--actor", "ic-1"), rid, str(world.copy_id), "production", NUMBER)
    ok(cli("recordings", "show", rid, "--actor", "ic-1"), ref)  # the catalog id names the same call
    ok(cli("copies", "create", ref, "--tier", "complaint-extract", "--reason", "C-1", "--actor", "ic-1"),
       "created complaint-extract copy")
    ok(cli("holds", "set", "--recording", ref, "--reason", "LIT-1", "--actor", "ic-1"), "held 2")
    ok(cli("recordings", "show", ref, "--actor", "ic-1"), "held: LIT-1 (ic-1", "complaint-extract")
    ok(cli("holds", "release", "--recording", rid, "--actor", "ic-1"), "released 2")
    ok(cli("subjects", "erase", "--recording", ref, "--tenant", "acme", "--actor", "ic-1"),
       "erased 2 copies of 1 recordings")
    refused(cli("recordings", "show", ref, "--actor", "ic-1"), 1, f"recording {ref} not found")
    refused(cli("subjects", "erase", "--recording", "other/x-1", "--tenant", "acme", "--actor", "ic-1"), 2,
            "names tenant other, not --tenant acme")


def test_recordings_are_listed_as_the_policy_lets_the_actor_see_them(world: CliWorld) -> None:
    cli, ref = world.cli, world.telephony_ref
    with world.vault.engine.begin() as conn:
        add_user(conn, user_id="consultant-9", role="consultant", tenants=["acme"], agent_id="agent-9")
        add_user(conn, user_id="it-other", role="it", tenants=["other"])
    as_it = ok(cli("recordings", "list", "--actor", "it-1", "--tenant", "acme"), ref, "masked numbers")
    assert "612345678" not in as_it and "•• ••" in as_it
    shown = ok(cli("recordings", "show", ref, "--actor", "it-1"), "(masked)")
    assert "612345678" not in shown
    refused(cli("recordings", "list", "--actor", "it-1", "--number", NUMBER), 1, "break-glass")
    ok(cli("recordings", "list", "--actor", "consultant-9"), "no recordings match")
    ok(cli("recordings", "list", "--actor", "ic-1", "--agent", "agent-1", "--tier", "production",
           "--from", "2000-01-01", "--to", "2100-01-01T00:00:00Z"), ref)
    ok(cli("recordings", "list", "--actor", "ic-1", "--number", NUMBER), ref)
    ok(cli("recordings", "list", "--actor", "ic-1", "--team", "no-such-team"), "no recordings match")
    refused(cli("recordings", "list", "--actor", "it-other", "--tenant", "acme"), 1, "outside the user's tenants")
    refused(cli("recordings", "show", ref, "--actor", "consultant-9"), 1, "outside the consultant's scope")
    a = t.audit_events
    with world.vault.engine.connect() as conn:
        entries = list(conn.execute(sa.select(a.c.actor, a.c.action, a.c.outcome, a.c.detail)
                                    .where(a.c.action.like("recording:%")).order_by(a.c.seq)).mappings())
    assert [(e["actor"], e["action"], e["outcome"]) for e in entries][:3] == [
        ("it-1", "recording:search", "allowed"), ("it-1", "recording:metadata:view", "allowed"),
        ("it-1", "recording:search:number", "denied")]
    assert all(e["detail"]["via"] == "cli" for e in entries)
    assert NUMBER not in repr(entries) and "612345678" not in repr(entries)


def test_inputs_are_checked_where_they_enter(world: CliWorld) -> None:
    cli = world.cli
    refused(cli("tenants", "set-retention", "acme", "production", "-1", "--actor", "it-1"), 2,
            "months must be a positive whole number", "'-1'")
    refused(cli("users", "token", "ic-1", "--minutes", "-5"), 2, "'-5'")
    refused(cli("tenants", "add", "Bad Name!"), 2, "'Bad Name!' is not a tenant slug")
    with UnitOfWork(world.vault.engine) as uow, pytest.raises(MalformedInput, match="not a tenant slug"):
        lifecycle_service.add_tenant(uow, tenant="Bad Name!", name=None, now=world.vault.now)  # API, demo too
    ok(cli("tenants", "add", "acme-fr"), "tenant acme-fr added")
    refused(cli("users", "add", "u-1", "--role", "it", "--tenant", "nosuchtenant"), 1, "'nosuchtenant' does not exist")
    refused(cli("users", "add", "u-1", "--role", "manager", "--tenant", "acme", "--team", "nosuch/t1/manager"), 1,
            "'nosuch' does not exist")
    ok(cli("users", "add", "u-1", "--role", "it", "--tenant", "acme-fr", "--contract-end", "2030-01-31"),
       "user u-1 added")
    ok(cli("users", "add", "u-2", "--role", "it", "--tenant", "*"), "user u-2 added")
    assert len(ok(cli("users", "token", "u-1", "--minutes", "5")).strip().split(".")) == 3
    refused(cli("subjects", "restrict", NUMBER, "--tenant", "nosuch", "--actor", "ic-1"), 1, "'nosuch' does not exist")
    ok(cli("subjects", "object", "+33 6 99 88 77 66", "--tenant", "acme", "--actor", "ic-1"),
       "objection recorded for 1 number(s) of tenant acme", "erased 0 copies")
    refused(cli("holds", "set", "--recording", str(uuid.uuid4()), "--reason", "LIT-1", "--actor", "ic-1"), 1,
            "no live copy found")
    refused(cli("holds", "set", "--recording", world.telephony_ref, "--reason", " ", "--actor", "ic-1"), 2,
            "the reason is empty")


def test_reports_and_exports_go_to_the_output_folder(world: CliWorld, tmp_path, monkeypatch) -> None:
    here = tmp_path / "working-folder"
    here.mkdir()
    monkeypatch.chdir(here)
    out = ok(world.cli("lifecycle", "report"), "chart: ")
    chart = out.split("chart: ")[1].strip()
    assert chart.startswith(str(world.out_dir)) and chart.endswith(".html")
    exported = ok(world.cli("subjects", "export", NUMBER, "--tenant", "acme", "--actor", "ic-1"), "1 recordings -> ")
    archive = exported.split(" -> ")[1].strip()
    assert archive.startswith(str(world.out_dir)) and archive.endswith(".zip")
    assert sorted(p.suffix for p in world.out_dir.iterdir()) == [".html", ".zip"]
    assert list(here.iterdir()) == []  # nothing dropped in the working folder
    given = tmp_path / "reports" / "mine.html"
    ok(world.cli("lifecycle", "report", "--html", str(given)), str(given))
    assert given.is_file()


def test_push_waits_and_says_what_happened(pipeline, tmp_path) -> None:
    now = datetime.now(timezone.utc).replace(microsecond=0)
    with pipeline.engine.begin() as conn:
        add_user(conn, user_id="ic-1", role="internal-control", tenants=["acme"])
    cli = Cli({**pipeline.env, "CALLVAULT_LIFECYCLE_OUTPUT_DIR": str(tmp_path / "out")})
    wav = tmp_path / "call.wav"
    wav.write_bytes(sine_wav(2.0))
    started = (now - timedelta(minutes=3)).isoformat()

    def push(*extra: str):
        return cli("push", wav, "--tenant", "acme", "--agent", "a1", "--number", "06 12 34 56 78",
                   "--started-at", started, "--timeout", "90", *extra)

    ok(push("--recording-id", "tel-1", "--redact", "500-99999"),
       "stored acme/tel-1 as recording", "silenced 500-2000 ms", "production copy")
    ok(push("--recording-id", "tel-1", "--redact", "500-99999"), "duplicate: acme/tel-1 was already stored")
    refused(push("--recording-id", "tel-2", "--redact", "5000-6000"), 1,
            "acme/tel-2 was dead-lettered", "invalid_redaction", "start after the audio ends", "callvault dlq show")
    ok(cli("subjects", "object", "06 11 11 11 11", "--tenant", "acme", "--actor", "ic-1"), "objection recorded")
    ok(cli("push", wav, "--tenant", "acme", "--agent", "a1", "--number", "06 11 11 11 11", "--started-at", started,
           "--recording-id", "tel-3"), "suppressed: the caller of acme/tel-3 objected")
    refused(cli("push", wav, "--tenant", "nosuch", "--agent", "a1", "--started-at", started), 1,
            "tenant 'nosuch' does not exist")
    refused(cli("push", wav, "--tenant", "acme", "--agent", "a1", "--started-at",
                (now + timedelta(days=365)).isoformat()), 1, "ahead of now")
    assert ok(cli("push", wav, "--tenant", "acme", "--agent", "a1", "--started-at", started, "--recording-id",
                  "tel-4", "--no-wait")).strip() == "acme/tel-4"
    pipeline.stop_worker()
    refused(push("--recording-id", "tel-5", "--timeout", "3"), 1, "no outcome came within 3 s", "callvault worker")
    with pipeline.engine.connect() as conn:
        stored = dict(conn.execute(sa.select(t.recordings.c.external_id, t.recordings.c.redactions)).all())
    assert stored["tel-1"] == [[500, 2000]]  # cut at the end of the audio, as the schema says
    assert not {"tel-2", "tel-3", "tel-5"} & set(stored)
