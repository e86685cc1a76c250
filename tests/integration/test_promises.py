"""The side paths that used to break the promises (issue 13), each walked exactly, on the
real PostgreSQL and MinIO: a hold survives rectify-then-erase and a racing erasure; an
erasure survives a pg_dump / pg_restore of the catalog, and a master-key rotation makes old
backups' keys useless; the ledger cannot be deleted; the catalog keeps no number in clear."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import threading
import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa
from botocore.exceptions import ClientError
from pydantic import SecretStr

from access.subjects import erase, erase_recordings, hashes, object_to_recording, rectify, restrict
from core.phone import number_forms
from ingest.schema import build_message
from ingest.service import Outcome, ingest
from lifecycle.holds import release_hold, set_hold
from storage.audit import verify
from storage.catalog import tables as t
from storage.exceptions import KeyDestroyedError
from storage.keys import KeyRing
from testbed.audio import sine_wav
from testbed.pipeline import service_env
from tests.support import pgbackup
from tests.support.vault import IC, TENANT, Vault

pytestmark = pytest.mark.integration
A, B = "+33611111111", "+33622222222"


@pytest.fixture
def vault(storage_settings, pg_schema_url):
    v = Vault.build(storage_settings, pg_schema_url)
    yield v
    v.dispose()


@pytest.fixture(params=["postgres", "sqlite"])
def any_vault(request, storage_settings, tmp_path):
    """A vault on PostgreSQL or on the embedded SQLite default."""
    if request.param == "postgres":
        url = request.getfixturevalue("pg_schema_url")
    else:
        from storage.catalog.migrate import upgrade

        url = f"sqlite:///{tmp_path / 'catalog.sqlite3'}"
        upgrade(url)
    v = Vault.build(storage_settings, url)
    yield v
    v.dispose()


def _erase(v: Vault, number: str):
    with v.engine.begin() as conn:
        return erase(conn, v.store, v.keys, v.ledger, tenant=TENANT, numbers=[number], actor=IC, now=v.now)


def _hold(v: Vault, copy_id) -> None:
    with v.engine.begin() as conn:
        set_hold(conn, v.store, copy_ids=[copy_id], reason="case 12", actor="ic-1", now=v.now)


def test_a_hold_survives_rectify_then_erase(vault: Vault) -> None:
    """Hold the production copy of a call from A; rectify A to B; erase A: the held copy stays
    readable. Erasing B then keeps and lists it; after the release, erasing B removes it."""
    rid, copy_id = vault.call(A)
    _hold(vault, copy_id)
    with vault.engine.begin() as conn:
        rectify(conn, vault.keys, tenant=TENANT, recording_ids=[rid], actor=IC, now=vault.now, caller_number=B)
    report = _erase(vault, A)
    assert (report.kept_copies, report.erased_copies, report.erased_recordings) == ([], [], [])
    assert report.keys_destroyed == 1  # A's key went; it wrapped nothing any more
    assert vault.readable(copy_id)

    report = _erase(vault, B)
    assert [k["copy_id"] for k in report.kept_copies] == [str(copy_id)] and report.erased_copies == []
    assert vault.readable(copy_id)
    with vault.engine.connect() as conn:  # the number of the kept recording moved with its copy
        assert vault.keys.open_number(conn, vault.rows(t.recordings)[0]) == B

    with vault.engine.begin() as conn:
        release_hold(conn, vault.store, copy_ids=[copy_id], actor="ic-1", now=vault.now)
    report = _erase(vault, B)
    assert [c["copy_id"] for c in report.erased_copies] == [str(copy_id)]
    assert not vault.readable(copy_id) and vault.rows(t.recordings) == []


def test_rectify_moves_a_copy_held_after_an_erasure_too(vault: Vault) -> None:
    """A copy kept under the hold key (its caller erased) moves to the rectified number's key."""
    _, copy_id = vault.call(A)
    _hold(vault, copy_id)
    _erase(vault, A)
    [rec] = vault.rows(t.recordings)
    with vault.engine.begin() as conn:
        rectify(conn, vault.keys, tenant=TENANT, recording_ids=[rec["id"]], actor=IC, now=vault.now, caller_number=B)
    [copy] = vault.rows(t.copies)
    [key] = vault.rows(t.caller_keys, t.caller_keys.c.id == copy["caller_key_id"])
    assert key["purpose"] == "caller" and key["number_hash"] == vault.keys.number_hash(TENANT, B)
    assert vault.readable(copy_id)


def test_a_hold_committed_while_an_erasure_runs_is_refused_not_lost(vault: Vault) -> None:
    """The erasure locks and marks the copies it deletes: a concurrent hold waits, then finds
    the copy gone (and says so) instead of holding a copy whose object is being deleted."""
    _, copy_id = vault.call(A)
    started, release = threading.Event(), threading.Event()
    outcome: dict = {}

    def slow_erasure() -> None:
        from storage import erasure

        real_execute = erasure.execute

        def paused(*args, **kwargs):
            started.set()
            release.wait(10)
            return real_execute(*args, **kwargs)

        erasure.execute = paused
        try:
            outcome["report"] = _erase(vault, A)
        finally:
            erasure.execute = real_execute

    worker = threading.Thread(target=slow_erasure)
    worker.start()
    assert started.wait(10)

    def hold() -> None:
        try:
            with vault.engine.begin() as conn:
                outcome["hold"] = set_hold(conn, vault.store, copy_ids=[copy_id], reason="late", actor="ic-2",
                                           now=vault.now)
        except Exception as exc:  # noqa: BLE001 - the outcome is asserted below
            outcome["hold_error"] = exc

    holder = threading.Thread(target=hold)
    holder.start()
    holder.join(1.0)
    assert holder.is_alive(), "the hold must wait for the erasure's lock"
    release.set()
    worker.join(20)
    holder.join(20)
    assert [c["copy_id"] for c in outcome["report"].erased_copies] == [str(copy_id)]
    assert "hold" not in outcome or not outcome["hold"].changed
    assert vault.rows(t.copies) == []


def _cli(vault: Vault, *args: str, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**service_env(vault.storage, vault.url), **(extra_env or {})}
    return subprocess.run([sys.executable, "-m", "callvault.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def test_pg_restore_after_an_erasure_then_reconcile_erases_again(vault: Vault, tmp_path) -> None:
    """pg_dump before an erasure, pg_restore after it, then `callvault storage reconcile`: the
    erased number's audio is unreadable and its rows are gone; its held copy stays readable;
    another caller is untouched. The backup itself holds no number in clear."""
    erased = [vault.call(A) for _ in range(2)]
    held_rid, held_copy = vault.call(A)
    other_rid, other_copy = vault.call(B)
    _hold(vault, held_copy)
    backup = pgbackup.dump(vault.url, tmp_path / "catalog.dump")
    text = pgbackup.as_sql(backup)
    assert "COPY" in text and str(held_rid) in text  # the rows are in it
    assert A not in text and A[1:] not in text and B not in text  # numbers are sealed, never in clear

    report = _erase(vault, A)
    assert len(report.erased_copies) == 2 and [k["copy_id"] for k in report.kept_copies] == [str(held_copy)]
    vault.engine.dispose()
    pgbackup.restore(vault.url, backup)
    # The restore revived the rows and the wrapped caller key of A:
    assert len(vault.rows(t.copies)) == 4
    assert vault.rows(t.caller_keys, t.caller_keys.c.wrapped_key.is_not(None),
                      t.caller_keys.c.number_hash == vault.keys.number_hash(TENANT, A))

    done = _cli(vault, "storage", "reconcile")
    assert "1 of 1 entries applied again" in done.stdout, done.stdout + done.stderr
    assert {c["id"] for c in vault.rows(t.copies)} == {held_copy, other_copy}
    assert {r["id"] for r in vault.rows(t.recordings)} == {held_rid, other_rid}
    for rid, copy_id in erased:
        assert not vault.readable(copy_id) and vault.rows(t.recordings, t.recordings.c.id == rid) == []
    assert vault.rows(t.caller_keys, t.caller_keys.c.wrapped_key.is_not(None), t.caller_keys.c.purpose == "caller",
                      t.caller_keys.c.number_hash == vault.keys.number_hash(TENANT, A)) == []
    assert vault.readable(held_copy) and vault.readable(other_copy)
    with vault.engine.connect() as conn:
        assert verify(conn).ok
        replays = conn.execute(sa.select(t.audit_events).where(
            t.audit_events.c.action == "subject:erase:replay")).mappings().all()
    assert len(replays) == 1 and replays[0]["detail"]["copies_deleted"] == 2
    again = _cli(vault, "storage", "reconcile")  # idempotent: nothing more to apply
    assert "all already applied" in again.stdout and again.returncode == 0, again.stdout + again.stderr
    # The backup predates the erasure, so what it reached came back from the ledger too: the
    # erased calls delivered again are still refused, the held one is still a duplicate.
    outcomes = [ingest(raw, vault.deps()).outcome for raw in vault.sent[:3]]
    assert outcomes == [Outcome.ERASED_ON_ARRIVAL, Outcome.ERASED_ON_ARRIVAL, Outcome.DUPLICATE]
    assert {r["id"] for r in vault.rows(t.recordings)} == {held_rid, other_rid}


def test_objections_and_restrictions_made_after_a_backup_survive_its_restore(vault: Vault, tmp_path) -> None:
    """pg_dump, then B objects and A's calls are restricted (C's restricted, then lifted), pg_restore,
    `callvault storage reconcile`: B's calls are refused again, A's recording is restricted
    again, C's is not (restricted, then lifted: as it was); audited; a second reconcile changes
    nothing."""
    C = "+33633333333"
    a_rid, _ = vault.call(A)
    c_rid, _ = vault.call(C)
    vault.call(B)
    backup = pgbackup.dump(vault.url, tmp_path / "catalog.dump")
    with vault.engine.begin() as conn:
        object_to_recording(conn, vault.store, vault.keys, vault.ledger, tenant=TENANT, numbers=[B], actor=IC,
                            now=vault.now)
        restrict(conn, vault.keys, vault.ledger, tenant=TENANT, numbers=[A, C], actor=IC, now=vault.now)
        restrict(conn, vault.keys, vault.ledger, tenant=TENANT, numbers=[C], actor=IC, now=vault.now, lift=True)
    vault.engine.dispose()
    pgbackup.restore(vault.url, backup)
    assert vault.rows(t.suppressions) == [] and not any(r["restricted"] for r in vault.rows(t.recordings))

    done = _cli(vault, "storage", "reconcile")
    b_hashes = hashes(vault.keys, TENANT, [B])
    assert (f"re-applied from the journal: {len(b_hashes)} suppressed number hashes, 1 recordings restricted, "
            "0 lifted") in done.stdout, done.stdout + done.stderr  # C's, restricted and lifted since: as it was
    assert {s["number_hash"] for s in vault.rows(t.suppressions)} == set(b_hashes)
    restricted = {r["id"]: r["restricted"] for r in vault.rows(t.recordings)}
    assert restricted[a_rid] and not restricted[c_rid]
    # A's restriction stands again (C's, lifted, does not): A's next call is restricted as it is stored.
    assert {r["number_hash"] for r in vault.rows(t.restrictions)} == set(hashes(vault.keys, TENANT, [A]))
    a_later, _ = vault.call(A)
    c_later, _ = vault.call(C)
    assert _restricted(vault)[a_later] and not _restricted(vault)[c_later]
    result = ingest(_message(vault, B, vault.now - timedelta(seconds=10)), vault.deps())
    assert result.outcome == Outcome.SUPPRESSED
    with vault.engine.connect() as conn:
        assert verify(conn).ok
        replays = conn.execute(sa.select(t.audit_events).where(
            t.audit_events.c.action == "subject:rights:replay")).mappings().all()
    assert [r["detail"] for r in replays] == [{"suppressed_number_hashes": len(b_hashes), "recordings_restricted": 1,
                                               "recordings_lifted": 0}]
    again = _cli(vault, "storage", "reconcile")
    assert "re-applied" not in again.stdout and again.returncode == 0, again.stdout + again.stderr


def test_a_retention_change_and_a_revocation_made_after_a_backup_survive_its_restore(vault: Vault, tmp_path) -> None:
    """pg_dump, then `tenants set-retention` shortens production to 1 month and `users revoke`
    revokes a manager, pg_restore, `callvault storage reconcile`: the override and the copies'
    expiries are the shortened ones again, the manager is revoked again (their token refused);
    both audited; a second reconcile changes nothing. The ledger holds no user id in clear."""
    from access.identities import add_user, load_user
    from lifecycle.tiers import add_months

    rid, copy_id = vault.call(A)
    with vault.engine.begin() as conn:
        add_user(conn, user_id="manager-9", role="manager", tenants=[TENANT], teams=[(TENANT, "team-1", "manager")])
        add_user(conn, user_id="ic-1", role="internal-control", tenants=[TENANT])
    backup = pgbackup.dump(vault.url, tmp_path / "catalog.dump")
    for args in (("tenants", "set-retention", TENANT, "production", "1", "--actor", "ic-1"),
                 ("users", "revoke", "manager-9")):
        done = _cli(vault, *args)
        assert done.returncode == 0, done.stdout + done.stderr
    vault.engine.dispose()
    pgbackup.restore(vault.url, backup)
    with vault.engine.connect() as conn:
        assert not load_user(conn, "manager-9").revoked  # the backup's state: let back in, until the replay

    done = _cli(vault, "storage", "reconcile")
    assert "1 tier retentions and 1 user revocations re-applied from the journal" in done.stdout, \
        done.stdout + done.stderr
    started = vault.rows(t.recordings)[0]["started_at"]
    assert vault.rows(t.copies, t.copies.c.id == copy_id)[0]["expires_at"] == add_months(started, 1)
    assert [(r["tier"], r["months"]) for r in vault.rows(t.tenant_retention)] == [("production", 1)]
    with vault.engine.connect() as conn:
        assert load_user(conn, "manager-9").revoked
        actions = conn.execute(sa.select(t.audit_events.c.action).where(
            t.audit_events.c.action.like("%:replay"))).scalars().all()
        assert verify(conn).ok
    assert sorted(actions) == ["tenant:retention:replay", "user:revoke:replay"]
    again = _cli(vault, "storage", "reconcile")
    assert "re-applied" not in again.stdout and again.returncode == 0, again.stdout + again.stderr
    journal = b"".join(vault.store.get(vault.storage.ledger_bucket, o.key)
                       for o in vault.store.list(vault.storage.ledger_bucket, vault.storage.ledger_prefix))
    assert b"manager-9" not in journal and vault.keys.user_hash("manager-9").encode() in journal


def test_a_replay_reads_the_ledger_from_where_the_last_one_stopped(vault: Vault, tmp_path) -> None:
    """The worker's start does not read the whole ledger: each replay starts after the entries the
    last one read and settled (a young entry is read again: its request may still be committing).
    A restored backup brings back its own older position: the erasure made since is read, and
    applied again."""
    from lifecycle.erasures import replay_ledger

    def replay(**kw):
        return replay_ledger(vault.engine, vault.store, vault.keys, vault.ledger, now=vault.now, **kw)

    vault.call(A)
    b_rid, b_copy = vault.call(B)
    _erase(vault, A)
    assert [replay().entries, replay().entries] == [1, 1]  # younger than an hour: read again
    assert [replay(settle_seconds=0).entries, replay(settle_seconds=0).entries] == [1, 0]
    backup = pgbackup.dump(vault.url, tmp_path / "catalog.dump")
    _erase(vault, B)
    assert (replay(settle_seconds=0).entries, vault.readable(b_copy)) == (1, False)
    vault.engine.dispose()
    pgbackup.restore(vault.url, backup)
    assert vault.rows(t.recordings, t.recordings.c.id == b_rid)  # B's call is back, its key too
    again = replay(settle_seconds=0)
    assert (again.entries, again.replayed, again.recordings_deleted) == (1, 1, 1)  # B's erasure only
    assert not vault.readable(b_copy) and not vault.rows(t.recordings, t.recordings.c.id == b_rid)


def _message(vault: Vault, number: str | None, started_at, external_id: str | None = None) -> bytes:
    return build_message(recording_id=external_id or f"tel-{uuid.uuid4().hex[:12]}", tenant=TENANT,
                         started_at=started_at, caller_number=number, agent_id="agent-1", team_id="team-1",
                         audio=sine_wav(0.5)).to_bytes()


def test_an_erasure_reaches_the_calls_that_arrive_after_it(any_vault: Vault) -> None:
    """Kafka delivers at least once and a call may still be on its way when its caller is erased:
    a stored call delivered again after its erasure, and a call of the erased number that started
    before the erasure, are refused (``erased-on-arrival``: nothing stored, no row, no key); a call that
    started after it is stored; another caller is untouched."""
    rid, copy_id = any_vault.call(A)
    delivered_again = any_vault.sent[-1]
    on_its_way = _message(any_vault, A, any_vault.now - timedelta(minutes=1))
    late_other = _message(any_vault, B, any_vault.now - timedelta(minutes=1))
    report = _erase(any_vault, A)
    assert report.erased_recordings == [str(rid)] and not any_vault.readable(copy_id)
    keys_before = any_vault.rows(t.caller_keys)
    for raw in (delivered_again, on_its_way):
        result = ingest(raw, any_vault.deps())
        assert (result.outcome, result.copy_id) == (Outcome.ERASED_ON_ARRIVAL, None)
    assert any_vault.rows(t.recordings) == [] and any_vault.rows(t.caller_keys) == keys_before  # no fresh key either
    assert ingest(late_other, any_vault.deps()).outcome == Outcome.STORED
    any_vault.advance(timedelta(minutes=5))
    new_rid, new_copy = any_vault.call(A, started_at=any_vault.now - timedelta(seconds=30))  # after the erasure
    assert any_vault.readable(new_copy) and new_rid != rid


def test_an_erasure_committed_while_a_call_is_processed_wins(any_vault: Vault, monkeypatch) -> None:
    """The erasure commits between the call's checks and its write (its audio being processed):
    the write sees it and stores nothing."""
    from ingest import service

    any_vault.call(A)
    process = service.audio.process

    def erased_meanwhile(*args, **kwargs):
        _erase(any_vault, A)
        return process(*args, **kwargs)

    monkeypatch.setattr(service.audio, "process", erased_meanwhile)
    result = ingest(_message(any_vault, A, any_vault.now - timedelta(minutes=1)), any_vault.deps())
    assert (result.outcome, result.copy_id) == (Outcome.ERASED_ON_ARRIVAL, None)
    assert any_vault.rows(t.recordings) == [] and any_vault.rows(t.copies) == []
    assert any_vault.rows(t.caller_keys, t.caller_keys.c.wrapped_key.is_not(None)) == []
    assert list(any_vault.store.list(any_vault.storage.recordings_bucket)) == []


def test_a_withheld_call_erased_by_its_id_is_not_stored_again(any_vault: Vault) -> None:
    raw = _message(any_vault, None, any_vault.now - timedelta(minutes=2))
    stored = ingest(raw, any_vault.deps())
    with any_vault.engine.begin() as conn:
        report = erase_recordings(conn, any_vault.store, any_vault.keys, any_vault.ledger, tenant=TENANT,
                                  recording_ids=[stored.recording_id], actor=IC, now=any_vault.now)
    assert report.erased_recordings == [str(stored.recording_id)]
    assert ingest(raw, any_vault.deps()).outcome == Outcome.ERASED_ON_ARRIVAL
    assert any_vault.rows(t.recordings) == []


def _restrict(v: Vault, number: str, *, lift: bool = False) -> int:
    with v.engine.begin() as conn:
        return restrict(conn, v.keys, v.ledger, tenant=TENANT, numbers=[number], actor=IC, now=v.now, lift=lift)


def _restricted(v: Vault) -> dict:
    return {r["id"]: r["restricted"] for r in v.rows(t.recordings)}


def test_a_restriction_reaches_the_calls_and_rectifications_that_come_after_it(any_vault: Vault) -> None:
    """A restriction marks every recording of the number until lifted: also a call stored after it
    and a recording rectified onto the number (audited). Rectified off it, a recording stays
    restricted: only the lift of the number whose restriction it is ends it. After the lift, the
    number's calls are not restricted."""
    v = any_vault
    assert _restrict(v, A) == 0  # no recording yet: the restriction stands all the same
    a_rid, _ = v.call(A)
    b_rid, _ = v.call(B)
    assert _restricted(v) == {a_rid: True, b_rid: False}
    with v.engine.begin() as conn:
        rectify(conn, v.keys, tenant=TENANT, recording_ids=[b_rid], actor=IC, now=v.now, caller_number=A)
        detail = conn.execute(sa.select(t.audit_events.c.detail).where(
            t.audit_events.c.action == "subject:rectify", t.audit_events.c.target_id == str(b_rid))).scalar_one()
    assert _restricted(v) == {a_rid: True, b_rid: True}
    assert (detail["before"]["restricted"], detail["after"]["restricted"]) == (False, True)
    with v.engine.begin() as conn:
        rectify(conn, v.keys, tenant=TENANT, recording_ids=[b_rid], actor=IC, now=v.now, caller_number=B)
    assert _restricted(v) == {a_rid: True, b_rid: True}  # off the number: still restricted
    assert _restrict(v, B, lift=True) == 0  # B's now, but A's restriction: B's lift does not end it
    assert _restricted(v) == {a_rid: True, b_rid: True}
    assert _restrict(v, A, lift=True) == 2  # A's lift does, wherever the recording went
    assert v.rows(t.restrictions) == [] and _restricted(v) == {a_rid: False, b_rid: False}
    later, _ = v.call(A)
    assert not _restricted(v)[later]


class _RestrictedWhileRead:
    """The ledger, but a live restriction of ``number`` commits right after the replay has read the
    subject journal (and before it locks the number)."""

    def __init__(self, vault: Vault, number: str) -> None:
        self.vault, self.number, self.done = vault, number, False

    def __getattr__(self, name):
        return getattr(self.vault.ledger, name)

    def subject_events(self, cursor=None):
        yield from self.vault.ledger.subject_events(cursor)
        if not self.done:
            self.done = True
            _restrict(self.vault, self.number)


def test_a_replay_never_undoes_a_restriction_made_while_it_reads(any_vault: Vault) -> None:
    """A is restricted, then lifted; a worker starts and replays (the lift is the last request it
    reads); a new restriction of A commits meanwhile. The replay locks A, reads the journal's tail
    again and leaves A restricted: its row, its recording."""
    from lifecycle.erasures import replay_ledger

    v = any_vault
    rid, _ = v.call(A)
    _restrict(v, A)
    _restrict(v, A, lift=True)
    replay_ledger(v.engine, v.store, v.keys, _RestrictedWhileRead(v, A), now=v.now)
    assert {r["number_hash"] for r in v.rows(t.restrictions)} == set(hashes(v.keys, TENANT, [A]))
    assert _restricted(v) == {rid: True}


def test_a_restriction_racing_a_call_being_stored_reaches_it(vault: Vault, monkeypatch) -> None:
    """PostgreSQL: the restriction of A commits while a call of A is being written (its row
    inserted, its object being stored). The restriction waits for the call's transaction, so its
    UPDATE sees the recording: restricted, whichever commits first."""
    from ingest import service

    put = service.put_encrypted
    racing: list[threading.Thread] = []

    def restriction_meanwhile(*args, **kwargs):
        thread = threading.Thread(target=_restrict, args=(vault, A))
        thread.start()
        thread.join(1.0)
        racing.append(thread)
        return put(*args, **kwargs)

    monkeypatch.setattr(service, "put_encrypted", restriction_meanwhile)
    result = ingest(_message(vault, A, vault.now - timedelta(minutes=1)), vault.deps())
    assert result.outcome == Outcome.STORED
    assert racing[0].is_alive()  # it waited for the call's transaction
    racing[0].join(30)
    assert _restricted(vault) == {result.recording_id: True}


def test_rotating_the_master_key_makes_an_old_backup_useless(vault: Vault, tmp_path) -> None:
    _, copy_id = vault.call(A)
    old_backup = pgbackup.dump(vault.url, tmp_path / "old.dump")
    refused = _cli(vault, "keys", "rotate-master")
    assert refused.returncode == 1 and "hash-key" in refused.stderr  # hashes must be pinned first
    hash_key = _cli(vault, "keys", "hash-key").stdout.strip()
    new_master = SecretStr(base64.b64encode(os.urandom(32)).decode())
    rotated_env = {"CALLVAULT_STORAGE_MASTER_KEY": new_master.get_secret_value(),
                   "CALLVAULT_STORAGE_MASTER_KEY_VERSION": "2", "CALLVAULT_STORAGE_NUMBER_HASH_KEY": hash_key,
                   "CALLVAULT_STORAGE_RETIRED_MASTER_KEYS":
                       f'{{"1": "{vault.storage.master_key.get_secret_value()}"}}'}
    done = _cli(vault, "keys", "rotate-master", extra_env=rotated_env)
    assert done.returncode == 0 and "1 caller keys re-wrapped" in done.stdout, done.stdout + done.stderr
    # The old master destroyed: only version 2 and the pinned hash key remain.
    after = KeyRing(base64.b64decode(new_master.get_secret_value()), master_version="2",
                    number_hash_key=base64.b64decode(hash_key))
    assert after.number_hash(TENANT, A) == vault.keys.number_hash(TENANT, A)  # lookups by number survive
    vault.keys = after
    assert vault.readable(copy_id)
    vault.engine.dispose()
    pgbackup.restore(vault.url, old_backup)
    with vault.engine.connect() as conn, pytest.raises(KeyDestroyedError, match="version '1'"):
        [copy] = conn.execute(sa.select(t.copies)).mappings().all()
        after.key_by_id(conn, copy["caller_key_id"])
    assert not vault.readable(copy_id)


def test_the_ledger_cannot_be_deleted_and_holds_no_number(vault: Vault) -> None:
    vault.call(A)
    _erase(vault, A)
    [(name, entry)] = list(vault.ledger.entries())
    raw = vault.store.get(vault.ledger.bucket, name)
    assert A.encode() not in raw and A[1:].encode() not in raw
    # every form the number may be stored under (E.164 and kept as given), none of them in clear
    assert entry.number_hashes == [vault.keys.number_hash(TENANT, form) for form in number_forms(A)]
    assert vault.keys.number_hash(TENANT, A) in entry.number_hashes and len(entry.key_ids) == 1
    version = vault.store.client.head_object(Bucket=vault.ledger.bucket, Key=name)["VersionId"]
    with pytest.raises(ClientError):
        vault.store.client.delete_object(Bucket=vault.ledger.bucket, Key=name, VersionId=version)
    retention = vault.store.client.get_object_retention(Bucket=vault.ledger.bucket, Key=name)["Retention"]
    assert retention["Mode"] == "COMPLIANCE"
    assert retention["RetainUntilDate"] > vault.now + timedelta(hours=23)


def test_the_worker_replays_the_ledger_when_it_starts(pipeline, tmp_path) -> None:
    """A restored catalog served by a worker that just started: the erased caller is gone
    before anything else, with no reconcile run by hand and no call pushed."""
    import time
    from datetime import datetime, timezone

    from ingest.producer import Call
    from storage.ledger import ErasureLedger
    from testbed.audio import sine_wav

    now = datetime.now(timezone.utc)
    pipeline.push(Call(audio=sine_wav(1.0), tenant=TENANT, agent_id="a1", caller_number=A,
                       started_at=now - timedelta(minutes=1), recording_id="erased-later"))
    [event] = pipeline.wait_for(lambda e: e.get("type") == "stored", count=1)
    url = pipeline.env["CALLVAULT_CATALOG_URL"]
    backup = pgbackup.dump(url, tmp_path / "catalog.dump")
    keys = KeyRing.from_settings(pipeline.storage)
    with pipeline.engine.begin() as conn:
        erase(conn, pipeline.store, keys, ErasureLedger.from_settings(pipeline.store, pipeline.storage),
              tenant=TENANT, numbers=[A], actor=IC, now=now)
    pipeline.stop_worker()
    pipeline.engine.dispose()
    pgbackup.restore(url, backup)
    assert pipeline.count(t.recordings) == 1  # revived by the restore
    pipeline.start_worker()
    deadline = time.monotonic() + 60
    while pipeline.count(t.recordings) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert pipeline.count(t.recordings) == 0, pipeline.worker_log()
    with pipeline.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(t.caller_keys).where(
            t.caller_keys.c.wrapped_key.is_not(None), t.caller_keys.c.purpose == "caller")).scalar() == 0
    assert event["copy_id"]
