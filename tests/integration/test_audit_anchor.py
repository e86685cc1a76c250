"""The audit trail anchored outside the catalog, on PostgreSQL and MinIO.

`verify` with the signed anchors catches (a) an edited entry, (b) a deleted one, (c) a reordered
pair, (d) a cut tail and (e) a chain recomputed from an edited entry onwards by someone with full
database access but without the anchor key; (d) and (e) fool the chain alone, which each test
shows first. Also: tenant scoping of ``GET /audit``, the server clock, the append lock not held
across a unit of work, old (version 1) entries, the migration's backfill, the CLI and the export.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import os
import threading
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from storage import audit
from storage.anchors import Anchor, AuditAnchors
from storage.audit import append, entry_hash, verify
from storage.catalog import tables as t
from storage.catalog.db import UnitOfWork
from storage.catalog.migrate import upgrade
from tests.support.catalog import NOW

pytestmark = pytest.mark.integration
KEY = base64.b64encode(b"k" * 32).decode()


@pytest.fixture
def anchors(store, storage_settings) -> AuditAnchors:
    # Retention of one day in the shared test ledger bucket (the settings insist on >= 366).
    return AuditAnchors(store, storage_settings.ledger_bucket, storage_settings.ledger_prefix,
                        base64.b64decode(KEY), retention_days=1)


def add(engine, n: int, start: int = 0, tenant: str | None = "acme") -> None:
    with engine.begin() as conn:
        for i in range(start, start + n):
            append(conn, tenant=tenant, actor=f"user-{i}", role="manager", action="recording:audio:stream",
                   target_type="copy", target_id=f"copy-{i}", outcome="allowed" if i % 2 else "denied",
                   reason="in scope", detail={"range": [0, 1000 * i]})


def seqs(engine) -> list[int]:
    with engine.connect() as conn:
        return conn.execute(sa.select(t.audit_events.c.seq).order_by(t.audit_events.c.seq)).scalars().all()


def check(engine, anchors=None):
    with engine.connect() as conn:
        return verify(conn, anchors)


@pytest.fixture
def trail(pg_engine, anchors):
    """8 entries; the first 6 anchored."""
    upgrade(pg_engine)
    add(pg_engine, 6)
    assert anchors.write(pg_engine).count == 6
    add(pg_engine, 2, start=6)
    result = check(pg_engine, anchors)
    assert result.ok and result.entries == 8 and result.anchors == 1
    assert result.anchored_seq == seqs(pg_engine)[5] and result.unanchored == 2
    return pg_engine


def rehash_from(conn, first_seq: int) -> None:
    """What an attacker with the database but not the key does: recompute every hash from one entry on."""
    rows = conn.execute(sa.select(t.audit_events).order_by(t.audit_events.c.seq)).mappings().all()
    prev = None
    for row in rows:
        row = dict(row)
        if row["seq"] >= first_seq:
            new = entry_hash(prev, audit._entry(row))
            conn.execute(t.audit_events.update().where(t.audit_events.c.seq == row["seq"])
                         .values(prev_hash=prev, hash=new))
            prev = new
        else:
            prev = row["hash"]


# -- the five tamperings ---------------------------------------------------------------------------

def test_a_edited_entry(trail, anchors):
    s = seqs(trail)
    with trail.begin() as conn:
        conn.execute(t.audit_events.update().where(t.audit_events.c.seq == s[2]).values(outcome="allowed"))
    result = check(trail, anchors)
    assert not result.ok and result.first_bad_seq == s[2] and "edited" in result.problem


def test_b_deleted_entry(trail, anchors):
    s = seqs(trail)
    with trail.begin() as conn:
        conn.execute(t.audit_events.delete().where(t.audit_events.c.seq == s[3]))
    result = check(trail, anchors)
    assert not result.ok and result.first_bad_seq == s[4] and "deleted or reordered" in result.problem


def test_b_deleted_entry_and_chain_rewritten(trail, anchors):
    s = seqs(trail)
    with trail.begin() as conn:
        conn.execute(t.audit_events.delete().where(t.audit_events.c.seq == s[3]))
        rehash_from(conn, s[4])
    assert check(trail).ok  # the chain alone is fooled
    result = check(trail, anchors)
    assert not result.ok and result.first_bad_seq == s[5] and "rewritten" in result.problem


def test_c_reordered_pair(trail, anchors):
    s = seqs(trail)
    with trail.begin() as conn:
        rows = {r["seq"]: dict(r) for r in conn.execute(sa.select(t.audit_events)).mappings()}
        a, b = rows[s[1]], rows[s[2]]
        conn.execute(t.audit_events.delete().where(t.audit_events.c.seq.in_([s[1], s[2]])))
        conn.execute(t.audit_events.insert(), [{**b, "seq": s[1]}, {**a, "seq": s[2]}])
    result = check(trail, anchors)
    assert not result.ok and result.first_bad_seq == s[1] and "deleted or reordered" in result.problem


def test_d_truncated_tail(trail, anchors):
    s = seqs(trail)
    assert anchors.write(trail).seq == s[7]  # all 8 anchored
    with trail.begin() as conn:
        conn.execute(t.audit_events.delete().where(t.audit_events.c.seq >= s[5]))
    assert check(trail).ok and check(trail).entries == 5  # the chain alone is fooled
    result = check(trail, anchors)
    assert not result.ok and "newest entries were cut" in result.problem and result.first_bad_seq == s[5]


def test_d_truncated_tail_then_new_entries(trail, anchors):
    s = seqs(trail)
    with trail.begin() as conn:
        conn.execute(t.audit_events.delete().where(t.audit_events.c.seq >= s[4]))
    add(trail, 3, start=20)  # the tail grows again past the anchored seq
    assert check(trail).ok
    result = check(trail, anchors)
    assert not result.ok and result.first_bad_seq == s[5] and "missing" in result.problem


def test_e_chain_recomputed_from_an_edited_entry(trail, anchors):
    s = seqs(trail)
    with trail.begin() as conn:
        conn.execute(t.audit_events.update().where(t.audit_events.c.seq == s[2])
                     .values(outcome="allowed", reason="nothing to see"))
        rehash_from(conn, s[2])
    assert check(trail).ok  # the chain alone is fooled
    result = check(trail, anchors)
    assert not result.ok and result.first_bad_seq == s[5] and "rewritten" in result.problem
    assert "from the first entry" in result.problem


def test_e_a_forged_anchor_is_refused(trail, anchors, store):
    """Recomputing the chain and writing a matching anchor needs the key: a wrong key is seen."""
    s = seqs(trail)
    with trail.begin() as conn:
        conn.execute(t.audit_events.update().where(t.audit_events.c.seq == s[6]).values(outcome="allowed"))
        rehash_from(conn, s[6])
    forger = AuditAnchors(store, anchors.bucket, anchors.prefix[:-len("audit-anchor/")], os.urandom(32),
                          retention_days=1)
    forger.write(trail)
    result = check(trail, anchors)
    assert not result.ok and "not signed with the anchor key" in result.problem


def test_an_anchor_hidden_behind_a_delete_marker_still_counts(trail, anchors, store):
    s = seqs(trail)
    name = f"{anchors.prefix}{s[5]:020d}.json"
    store.client.delete_object(Bucket=anchors.bucket, Key=name)  # allowed under object lock: a marker
    assert not list(store.list(anchors.bucket, anchors.prefix))
    with trail.begin() as conn:
        conn.execute(t.audit_events.delete().where(t.audit_events.c.seq >= s[4]))
    result = check(trail, anchors)
    assert not result.ok and "cut" in result.problem


def test_anchor_payload_is_signed_and_locked(trail, anchors, store):
    s = seqs(trail)
    name = f"{anchors.prefix}{s[5]:020d}.json"
    body = json.loads(store.get(anchors.bucket, name))
    assert body["seq"] == s[5] and body["count"] == 6 and set(body) == {"v", "seq", "hash", "count", "at", "sig"}
    expected = hmac.new(base64.b64decode(KEY), Anchor(**{k: body[k] for k in ("seq", "hash", "count", "at", "v")})
                        .payload(), hashlib.sha256).hexdigest()
    assert body["sig"] == expected
    head = store.client.head_object(Bucket=anchors.bucket, Key=name)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert anchors.write(trail) is not None and anchors.write(trail) is None  # nothing new: nothing written


# -- versions, clock, lock ---------------------------------------------------------------------------

def test_version_1_entries_still_verify_and_a_downgraded_entry_does_not(pg_engine, anchors):
    upgrade(pg_engine)
    old = {"at": NOW, "actor": "u", "role": "it", "action": "x", "target_type": "tenant", "target_id": "acme",
           "outcome": "done", "reason": None, "detail": None, "chain": 1, "tenant_id": None}
    with pg_engine.begin() as conn:  # as written before migration 0005: the hash covers no tenant
        conn.execute(t.audit_events.insert().values(**old, prev_hash=None, hash=entry_hash(None, audit._entry(old))))
        conn.execute(t.audit_events.update().values(tenant_id="acme"))  # the backfill: not hashed in v1
    add(pg_engine, 2)
    assert check(pg_engine).ok
    s = seqs(pg_engine)
    with pg_engine.begin() as conn:
        conn.execute(t.audit_events.update().where(t.audit_events.c.seq == s[1]).values(chain=1, tenant_id="other"))
    result = check(pg_engine)
    assert not result.ok and result.first_bad_seq == s[1]


def test_entries_take_the_server_clock_and_keep_a_simulated_time_in_detail(pg_engine):
    upgrade(pg_engine)
    before = datetime.now(timezone.utc)
    with pg_engine.begin() as conn:
        append(conn, tenant="acme", actor="sweeper", role="system", action="delete", target_type="copy",
               target_id="c", outcome="done", at=NOW + timedelta(days=400))
    with pg_engine.connect() as conn:
        row = conn.execute(sa.select(t.audit_events)).mappings().one()
    assert before - timedelta(seconds=1) <= row["at"] <= datetime.now(timezone.utc)
    assert row["detail"] == {"as_of": (NOW + timedelta(days=400)).isoformat()}
    assert row["tenant_id"] == "acme" and row["chain"] == 2


def test_a_unit_of_work_holds_no_append_lock_until_it_commits(pg_engine):
    """An erasure collects its entries, then does object-store I/O: meanwhile others append freely."""
    upgrade(pg_engine)
    with UnitOfWork(pg_engine) as uow:
        append(uow.conn, tenant="acme", actor="ic", role="internal-control", action="subject:erase",
               target_type="tenant", target_id="acme", outcome="allowed")
        done = threading.Event()

        def other_request() -> None:
            with pg_engine.begin() as conn:
                conn.execute(sa.text("SET LOCAL lock_timeout = '3s'"))
                append(conn, tenant="other", actor="m", role="manager", action="search", target_type="tenant",
                       target_id="other", outcome="allowed")
            done.set()

        th = threading.Thread(target=other_request)
        th.start()
        th.join(10)
        assert done.is_set()  # not blocked by the open unit of work
        with pg_engine.connect() as conn:  # nothing of the unit written yet
            assert conn.execute(sa.select(t.audit_events.c.actor)).scalars().all() == ["m"]
        uow.commit()
    with pg_engine.connect() as conn:
        assert conn.execute(sa.select(t.audit_events.c.actor).order_by("seq")).scalars().all() == ["m", "ic"]
    assert check(pg_engine).ok


def test_a_rolled_back_unit_of_work_leaves_no_entry(pg_engine):
    upgrade(pg_engine)
    with pytest.raises(RuntimeError):
        with UnitOfWork(pg_engine) as uow:
            append(uow.conn, tenant="acme", actor="ic", role="internal-control", action="subject:erase",
                   target_type="tenant", target_id="acme", outcome="done")
            raise RuntimeError("the erasure failed")
    with UnitOfWork(pg_engine) as uow:  # the pooled connection carries nothing over
        uow.commit()
    assert seqs(pg_engine) == []


def test_a_commit_anchors_when_asked(pg_engine, anchors):
    upgrade(pg_engine)
    add(pg_engine, 1)
    assert anchors.write(pg_engine) is not None
    with UnitOfWork(pg_engine, anchors=anchors) as uow:
        append(uow.conn, tenant="acme", actor="ic", role="internal-control", action="subject:export",
               target_type="subject", target_id="abc", outcome="done", anchor=True)
        uow.commit()
    result = check(pg_engine, anchors)
    assert result.ok and result.anchors == 2 and result.unanchored == 0


# -- the migration's backfill -------------------------------------------------------------------------

def test_migration_backfills_the_tenant_and_old_entries_verify(pg_engine, keys):
    from tests.support.catalog import new_recording

    upgrade(pg_engine, "0004")
    old_entry = audit._entry
    with pg_engine.begin() as conn:
        conn.execute(t.tenants.insert().values(id="acme", name="Acme", created_at=NOW))
        rid, _ = new_recording(conn, keys)
        prev = None
        for target_type, target_id, detail in (("recording", str(rid), None), ("tenant", "acme", None),
                                               ("subject", "ab12", {"tenant": "acme"}), ("user", "u1", None)):
            row = {"at": NOW, "actor": "a", "role": "it", "action": "x", "target_type": target_type,
                   "target_id": target_id, "outcome": "done", "reason": None, "detail": detail}
            digest = entry_hash(prev, old_entry(row))  # version 1: no chain key in the row
            conn.execute(sa.text(
                "INSERT INTO audit_events (at, actor, role, action, target_type, target_id, outcome, detail, "
                "prev_hash, hash) VALUES (:at, 'a', 'it', 'x', :tt, :ti, 'done', CAST(:d AS JSON), :p, :h)"),
                {"at": NOW, "tt": target_type, "ti": target_id, "d": json.dumps(detail), "p": prev, "h": digest})
            prev = digest
    upgrade(pg_engine)
    with pg_engine.connect() as conn:
        got = conn.execute(sa.select(t.audit_events.c.target_type, t.audit_events.c.tenant_id,
                                     t.audit_events.c.chain).order_by("seq")).all()
    assert got == [("recording", "acme", 1), ("tenant", "acme", 1), ("subject", "acme", 1), ("user", None, 1)]
    add(pg_engine, 2)
    assert check(pg_engine).ok and check(pg_engine).entries == 6


# -- the CLI and the export -----------------------------------------------------------------------

def _cli(monkeypatch, engine, store, keys, storage_settings, anchors):
    import callvault.bootstrap as bootstrap
    from lifecycle.deps import Services
    from callvault.cli import app
    from lifecycle.settings import LifecycleSettings

    svc = Services(engine, store, keys, storage=storage_settings, lifecycle=LifecycleSettings(), anchors=anchors)
    monkeypatch.setattr(bootstrap, "services", lambda: svc)
    return lambda *args: CliRunner().invoke(app, list(args))


def test_cli_verify_reports_the_first_problem_without_a_traceback(trail, anchors, monkeypatch, store, keys,
                                                                   storage_settings):
    run = _cli(monkeypatch, trail, store, keys, storage_settings, anchors)
    ok = run("audit", "verify")
    assert ok.exit_code == 0 and "audit trail intact: 8 entries" in ok.output and "1 signed anchors" in ok.output
    s = seqs(trail)
    with trail.begin() as conn:
        conn.execute(t.audit_events.update().where(t.audit_events.c.seq == s[0]).values(actor="someone-else"))
        rehash_from(conn, s[0])
    bad = run("audit", "verify")
    assert bad.exit_code == 1 and "Traceback" not in bad.output and isinstance(bad.exception, SystemExit)
    assert f"audit trail broken at entry seq={s[5]}" in bad.output and "rewritten" in bad.output


def test_cli_anchor_and_sweep_anchor(pg_engine, anchors, monkeypatch, store, keys, storage_settings):
    upgrade(pg_engine)
    add(pg_engine, 3)
    run = _cli(monkeypatch, pg_engine, store, keys, storage_settings, anchors)
    out = run("audit", "anchor")
    assert out.exit_code == 0 and "anchored" in out.output and "(3 entries)" in out.output
    add(pg_engine, 1, start=3)
    swept = run("lifecycle", "sweep", "--now", "2030-01-01T00:00:00+0000")
    assert swept.exit_code == 0, swept.output
    result = check(pg_engine, anchors)
    assert result.ok and result.anchors == 2 and result.unanchored == 0


def test_export_is_json_lines_of_the_period(pg_engine, monkeypatch, store, keys, storage_settings, anchors,
                                            tmp_path):
    upgrade(pg_engine)
    add(pg_engine, 3)
    add(pg_engine, 2, start=3, tenant="other")
    today = datetime.now(timezone.utc).date()
    buf = io.StringIO()
    with pg_engine.connect() as conn:
        assert audit.export_jsonl(conn, buf, start=NOW - timedelta(days=400), end=NOW - timedelta(days=300)) == 0
        n = audit.export_jsonl(conn, buf, start=datetime.now(timezone.utc) - timedelta(hours=1),
                               end=datetime.now(timezone.utc) + timedelta(hours=1), tenants=frozenset({"other"}))
    lines = [json.loads(x) for x in buf.getvalue().splitlines()]
    assert n == 2 and [x["tenant_id"] for x in lines] == ["other", "other"]
    assert {"seq", "at", "actor", "action", "hash", "prev_hash"} <= set(lines[0])
    run = _cli(monkeypatch, pg_engine, store, keys, storage_settings, anchors)
    out = tmp_path / "audit.jsonl"
    res = run("audit", "export", "--from", str(today), "--to", str(today + timedelta(days=1)), "--out", str(out))
    assert res.exit_code == 0, res.output
    assert len(out.read_text().splitlines()) == 5
    assert run("audit", "export", "--from", str(today), "--to", str(today)).exit_code != 0


# -- tenant scoping of GET /audit ------------------------------------------------------------------------

def test_get_audit_shows_a_tenant_user_only_their_tenants_entries(pg_engine, store, keys, scratch_bucket,
                                                                  storage_settings):
    from tests.support.world import build_world

    world = build_world(pg_engine, store, keys, scratch_bucket, storage_settings)
    with world.client:
        other = world.recordings["other-tenant"]
        assert world.get(f"/recordings/{other}", "control-group").status_code == 200
        assert world.get(f"/recordings/{world.recordings['own']}", "control-1").status_code == 200

        def every(user: str) -> list[dict]:
            entries, after = [], 0
            while True:
                page = world.get("/audit", user, params={"after_seq": after, "limit": 2}).json()
                entries += page["entries"]
                if page["next_after_seq"] is None:
                    return entries
                after = page["next_after_seq"]

        with pg_engine.connect() as conn:
            about_other = conn.execute(sa.select(sa.func.count()).select_from(t.audit_events).where(
                t.audit_events.c.tenant_id == "other")).scalar()
        assert about_other >= 1  # the group user's view of the other tenant's recording
        mine = every("control-1")
        assert mine and {e["tenant_id"] for e in mine} == {"acme"}
        assert not any(str(other) in e["target_id"] for e in mine)
        group = every("control-group")
        assert {"acme", "other", None} <= {e["tenant_id"] for e in group}
        assert world.get("/audit", "control-1", params={"limit": 501}).status_code == 422
        verified = world.get("/audit/verify", "control-1").json()
        assert verified["ok"] and verified["entries"] > len(mine)  # verification covers every entry


# -- sweeps and erasures: tenant, server clock, anchored at once ---------------------------------------

def _acme(engine) -> None:
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(t.tenants.insert().values(id="acme", name="Acme", created_at=NOW))


def test_a_sweep_as_of_a_simulated_time_stamps_the_real_clock_and_anchors(pg_engine, store, keys, scratch_bucket,
                                                                        anchors):
    from lifecycle.sweeper import sweep
    from tests.support.catalog import store_copy

    _acme(pg_engine)
    rid, _, copy_id, _ = store_copy(pg_engine, store, keys, scratch_bucket, b"audio")
    simulated = NOW + timedelta(days=365)
    started = datetime.now(timezone.utc)
    report = sweep(pg_engine, store, now=simulated, anchors=anchors)
    assert report.deleted_copies == 1 and report.deleted_recordings == 1
    with pg_engine.connect() as conn:
        rows = conn.execute(sa.select(t.audit_events).where(t.audit_events.c.actor == "sweeper")
                            .order_by(t.audit_events.c.seq)).mappings().all()
    assert [(r["target_type"], r["target_id"], r["tenant_id"]) for r in rows] == [
        ("copy", str(copy_id), "acme"), ("recording", str(rid), "acme")]
    assert all(started - timedelta(seconds=1) <= r["at"] <= datetime.now(timezone.utc) for r in rows)
    assert all(r["detail"]["as_of"] == simulated.isoformat() for r in rows)
    result = check(pg_engine, anchors)
    assert result.ok and result.anchored_seq == rows[-1]["seq"] and result.unanchored == 0


def test_an_erasure_appends_at_commit_and_anchors_right_after(pg_engine, store, keys, scratch_bucket, anchors,
                                                            ledger):
    from access.subjects import Actor, erase_recordings
    from tests.support.catalog import store_copy

    _acme(pg_engine)
    rid, _, _, _ = store_copy(pg_engine, store, keys, scratch_bucket, b"audio")
    assert anchors.write(pg_engine) is None and not anchors.due()  # just anchored: the interval has not passed
    with UnitOfWork(pg_engine, anchors=anchors) as uow:
        erase_recordings(uow.conn, store, keys, ledger, tenant="acme", recording_ids=[rid], actor=Actor("ic-1"),
                         now=datetime.now(timezone.utc))
        with pg_engine.connect() as conn:  # collected, not yet appended: no lock held during the shredding
            assert conn.execute(sa.select(sa.func.count()).select_from(t.audit_events)).scalar() == 0
        uow.commit()
    with pg_engine.connect() as conn:
        row = conn.execute(sa.select(t.audit_events)).mappings().one()
    assert (row["action"], row["tenant_id"], row["target_id"]) == ("subject:erase", "acme", str(rid))
    result = check(pg_engine, anchors)
    assert result.ok and result.anchored_seq == row["seq"]
