"""The CLI's ``--actor`` is a registered user whose role the policy allows for the command
(issue 16): unknown, revoked or not allowed is one line on stderr and exit code 1, no
traceback; every decision is audited with the OS user who ran the command."""

from __future__ import annotations

import base64
import getpass
import os
import subprocess
import sys
import uuid
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from access.identities import add_user, revoke_user
from storage.catalog import tables as t
from testbed.pipeline import service_env

pytestmark = pytest.mark.integration


@pytest.fixture
def cli(storage_settings, pg_schema_url):
    from storage.admin import init_buckets

    storage = storage_settings.model_copy(update={"master_key": SecretStr(base64.b64encode(os.urandom(32)).decode())})
    init_buckets(storage, say=lambda _m: None)
    engine = sa.create_engine(pg_schema_url)
    now = datetime.now(timezone.utc)
    with engine.begin() as conn:
        conn.execute(t.tenants.insert(), [dict(id="acme", name="Acme", created_at=now),
                                          dict(id="other", name="Other", created_at=now)])
        add_user(conn, user_id="control-1", role="internal-control", tenants=["acme"])
        add_user(conn, user_id="it-1", role="it", tenants=["acme"])
        add_user(conn, user_id="gone", role="internal-control", tenants=["acme"])
        add_user(conn, user_id="consultant-1", role="consultant", tenants=["acme"], agent_id="a1")
        revoke_user(conn, "gone", keys=None, ledger=None)
    env = service_env(storage, pg_schema_url)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "callvault.cli", *args], env=env, capture_output=True,
                              text=True, timeout=120)

    run.engine = engine  # type: ignore[attr-defined]
    yield run
    engine.dispose()


def _entries(engine, action: str) -> list[dict]:
    a = t.audit_events
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(a).where(a.c.action == action).order_by(a.c.seq)).mappings()]


def _refused(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_subject_requests_need_a_registered_active_internal_control_user_of_the_tenant(cli):
    number = "+33612345678"
    _refused(cli("subjects", "restrict", number, "--tenant", "acme", "--actor", "nobody"),
             "'nobody' is not a registered user")
    _refused(cli("subjects", "restrict", number, "--tenant", "acme", "--actor", "gone"), "account revoked")
    _refused(cli("subjects", "restrict", number, "--tenant", "acme", "--actor", "it-1"),
             "(it) may not subject:request:run")
    _refused(cli("subjects", "restrict", number, "--tenant", "other", "--actor", "control-1"),
             "tenant other is outside the user's tenants")
    done = cli("subjects", "restrict", number, "--tenant", "acme", "--actor", "control-1")
    assert done.returncode == 0 and "restricted 0 recordings" in done.stdout, done.stderr
    entries = _entries(cli.engine, "subject:request:run")
    assert [(e["actor"], e["role"], e["outcome"]) for e in entries] == [
        ("nobody", "unknown", "denied"), ("gone", "internal-control", "denied"), ("it-1", "it", "denied"),
        ("control-1", "internal-control", "denied"), ("control-1", "internal-control", "allowed")]
    assert all(e["detail"] == {"os_user": getpass.getuser(), "via": "cli"} for e in entries)
    assert number not in repr(entries) and "612345678" not in repr(entries)


def test_copies_holds_retention_and_dead_letters_check_the_role(cli):
    rid = str(uuid.uuid4())
    _refused(cli("copies", "create", rid, "--tier", "complaint-extract", "--reason", "C-1",
                 "--actor", "consultant-1"), "(consultant) may not copy:extract:create")
    # Allowed by role: the service then says the recording does not exist.
    missing = cli("copies", "create", rid, "--tier", "complaint-extract", "--reason", "C-1", "--actor", "control-1")
    assert missing.returncode == 1 and "Traceback" not in missing.stderr and "not" in missing.stderr
    _refused(cli("holds", "set", "--recording", rid, "--reason", "LIT-1", "--actor", "it-1"),
             "(it) may not copy:hold:set")
    _refused(cli("tenants", "set-retention", "acme", "training", "6", "--dry-run", "--actor", "consultant-1"),
             "may not tenant:retention:set")
    preview = cli("tenants", "set-retention", "acme", "training", "6", "--dry-run", "--actor", "it-1")
    assert preview.returncode == 0 and preview.stdout.startswith("dry run"), preview.stderr
    _refused(cli("dlq", "purge", "--older-than", "30", "--actor", "control-1"),
             "(internal-control) may not ingest:dead-letters:manage")
    retention = _entries(cli.engine, "tenant:retention:set")
    assert [(e["actor"], e["outcome"]) for e in retention] == [("consultant-1", "denied"), ("it-1", "allowed")]
    assert retention[1]["detail"]["os_user"] == getpass.getuser()


def test_copy_and_hold_commands_are_decided_on_the_copies_they_touch(cli):
    from tests.support.catalog import caller_key, copy_row, recording_row

    with cli.engine.begin() as conn:
        key_id = caller_key(conn, "b" * 64, tenant="other")
        rec = recording_row(tenant="other", number_hash="b" * 64, key_id=key_id)
        conn.execute(t.recordings.insert().values(**rec))
        copy = copy_row(rec["id"], key_id)
        conn.execute(t.copies.insert().values(**copy))
    _refused(cli("holds", "set", "--copy", str(copy["id"]), "--reason", "LIT-1", "--actor", "control-1"),
             "tenant other is outside the user's tenants")
    _refused(cli("copies", "create", str(rec["id"]), "--tier", "complaint-extract", "--reason", "C-1",
                 "--actor", "control-1"), "tenant other is outside the user's tenants")
    with cli.engine.connect() as conn:
        held = conn.execute(sa.select(t.copies.c.hold).where(t.copies.c.id == copy["id"])).scalar()
        copies = conn.execute(sa.select(sa.func.count()).select_from(t.copies)).scalar()
    assert held is False and copies == 1  # nothing was done
    assert [(e["target_id"], e["outcome"]) for e in _entries(cli.engine, "copy:hold:set")] == [
        (str(copy["id"]), "denied")]


def test_a_tenant_scoped_it_user_cannot_act_on_every_tenants_dead_letters(cli) -> None:
    """Without --tenant, `dlq replay` and `dlq purge` act on every tenant: group-level users only."""
    from access.exceptions import Forbidden
    from access.operators import authorise
    from core.vocabulary import Action

    now = datetime.now(timezone.utc)
    with pytest.raises(Forbidden, match="group-level users only"):
        authorise(cli.engine, "it-1", Action.DLQ_MANAGE, now=now, target_type="dead-letters", target_id="*/*")
    assert authorise(cli.engine, "it-1", Action.DLQ_MANAGE, now=now, tenant="acme", target_type="dead-letters",
                     target_id="*/acme").id == "it-1"
    with pytest.raises(Forbidden, match="outside the user's tenants"):
        authorise(cli.engine, "it-1", Action.DLQ_MANAGE, now=now, tenant="other", target_type="dead-letters",
                  target_id="*/other")
    denied = [e for e in _entries(cli.engine, Action.DLQ_MANAGE.value) if e["outcome"] == "denied"]
    assert [e["tenant_id"] for e in denied] == [None, "other"]
