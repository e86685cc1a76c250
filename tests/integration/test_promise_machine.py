"""Every path at once: a hypothesis state machine over the real services, on the real
PostgreSQL and MinIO, checking the promises of DESIGN.md after every step.

Rules are the real service calls: in-process ingest, a call delivered again (Kafka's at least
once, ``dlq replay``), copies, holds and releases, rectify, erase and object, restrict and lift,
set-retention, the sweeper with a moving clock, reconcile, and a catalog backup / restore with
pg_dump and pg_restore (followed by what an operator runs after a restore: ``storage
reconcile``, i.e. the ledger replay, then ``--repair``).

Invariants, after every step:
- every held copy decrypts (a held copy stays readable until released);
- nothing an erasure deleted is readable again, not even after a restore, and no erased
  recording is stored again, whatever is delivered again;
- an objection stands (the number's hashes on the suppression list), also after a restore;
- nothing past expiry is playable unless held (the policy refuses it);
- the audit trail verifies; reconcile finds nothing to repair, and reports as an incident exactly
  the held copies a restore could not bring back (made and held after the backup: their
  objects stay under legal hold, their rows are not in the backup).

Each example gets a catalog schema and buckets of its own. CI runs ``PROMISE_EXAMPLES``
examples (default 200) of up to ``PROMISE_STEPS`` steps (default 40); the soak runs more
(``bench/soak_promises``). Hypothesis prints the seed and the failing steps on failure.
"""

from __future__ import annotations

import os
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from access.policy import Target, User, decide
from access.subjects import erase, hashes, object_to_recording, rectify, restrict
from core.vocabulary import Action, Role
from ingest.service import ingest
from lifecycle.copies import create_copy
from lifecycle.erasures import replay_ledger
from lifecycle.exceptions import CopyNotAllowed, NotFound
from lifecycle.holds import release_hold, set_hold
from lifecycle.reconcile import reconcile
from lifecycle.retention import Bounds, set_retention
from lifecycle.settings import LifecycleSettings
from lifecycle.sweeper import sweep
from storage.audit import verify
from storage.catalog import tables as t
from tests.support import pgbackup
from tests.support.stack import empty_and_delete_bucket, unique
from tests.support.vault import IC, TENANT, Vault

pytestmark = pytest.mark.integration
NUMBERS = ["+33611111111", "+33622222222", "+33633333333"]
EXAMPLES = int(os.environ.get("PROMISE_EXAMPLES", "200"))
STEPS = int(os.environ.get("PROMISE_STEPS", "40"))
RESTORES_PER_EXAMPLE = 2  # a dump and a restore cost ~0.3 s each: enough to interleave, not to dominate
IC_USER = User("ic-1", Role.INTERNAL_CONTROL, frozenset({TENANT}))
STATS = {"examples": 0, "steps": 0, "longest": 0, "restores": 0, "replayed": 0, "erased": 0, "held_kept": 0}


class Promises(RuleBasedStateMachine):
    world: dict = {}

    def __init__(self) -> None:
        super().__init__()
        w = self.world
        base = unique("pm")
        schema = base.replace("-", "_")
        with w["admin"].begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        url = f"{w['postgres_url']}?options=-csearch_path%3D{schema}"
        from storage.catalog.migrate import upgrade

        upgrade(url)
        self.schema = schema
        storage = w["storage"].model_copy(update={
            "recordings_bucket": f"{base}-rec", "landing_bucket": f"{base}-land", "exports_bucket": f"{base}-exp",
            "ledger_prefix": f"{base}/"})
        self.v = Vault.build(storage, url, master=w["master"])
        self.erased: set[uuid.UUID] = set()      # deleted by an erasure: never readable again
        self.erased_recordings: set[uuid.UUID] = set()  # never stored again, whatever is delivered again
        self.objected: set[str] = set()  # numbers on the suppression list, also after a restore
        self.restricted: dict[str, bool] = {}  # numbers by their last restriction request: True, it stands
        self.retention: dict[str, int] = {}  # the tiers' retention as last set, also after a restore
        self.swept: set[uuid.UUID] = set()       # deleted by the sweeper: gone for good
        self.backup: Path | None = None
        self.restores = 0
        self.lost_held: set[str] = set()  # held copies made after the backup: their rows are not in it
        self.steps = 0
        STATS["examples"] += 1

    def teardown(self) -> None:
        STATS["steps"] += self.steps
        STATS["longest"] = max(STATS["longest"], self.steps)
        self.v.dispose()
        with self.world["admin"].begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{self.schema}" CASCADE'))
        s3 = self.v.store.client
        existing = {b["Name"] for b in s3.list_buckets()["Buckets"]}
        for bucket in (self.v.storage.recordings_bucket, self.v.storage.landing_bucket, self.v.storage.exports_bucket):
            if bucket in existing:
                empty_and_delete_bucket(s3, bucket)

    # -- helpers ---------------------------------------------------------------------------

    def _copies(self, *where) -> list:
        return self.v.rows(t.copies, *where)

    def _recordings(self) -> list:
        return self.v.rows(t.recordings)

    def _tick(self) -> None:
        self.steps += 1

    def _wall(self) -> datetime:
        """Reconcile's grace is about real object ages: the moving clock or now, whichever is later."""
        return max(self.v.now, datetime.now(timezone.utc))

    # -- rules -----------------------------------------------------------------------------

    @initialize(number=st.sampled_from(NUMBERS))
    def first_call(self, number):
        self.v.call(number)

    @rule(number=st.sampled_from(NUMBERS))
    def ingest(self, number):
        self._tick()
        self.v.call(number, stored=None)  # an objector's call is suppressed: both are fine here

    @precondition(lambda self: self.v.sent)
    @rule(pick=st.integers(0, 50))
    def deliver_again(self, pick):
        """Kafka delivers at least once, and ``dlq replay`` or a producer's retry send a call again."""
        self._tick()
        ingest(self.v.sent[pick % len(self.v.sent)], self.v.deps())

    @rule(pick=st.integers(0, 50), tier=st.sampled_from(["monitoring", "training", "complaint-extract"]))
    def copy(self, pick, tier):
        self._tick()
        recs = self._recordings()
        if not recs:
            return
        rec = recs[pick % len(recs)]
        try:
            with self.v.engine.begin() as conn:
                create_copy(conn, self.v.store, self.v.keys, recording_id=rec["id"], tier=tier, actor="coach-1",
                            now=self.v.now, reason="CPL-1" if tier == "complaint-extract" else "",
                            training_report="report" if tier == "training" else None)
        except (CopyNotAllowed, NotFound):
            pass  # every copy expired (awaiting the sweep): refusing is the promise

    @rule(pick=st.integers(0, 50))
    def hold(self, pick):
        self._tick()
        copies = self._copies(t.copies.c.hold == sa.false())
        if copies:
            with self.v.engine.begin() as conn:
                set_hold(conn, self.v.store, copy_ids=[copies[pick % len(copies)]["id"]], reason="case",
                         actor="ic-1", now=self.v.now, ledger=self.v.ledger)

    @rule(pick=st.integers(0, 50))
    def release(self, pick):
        self._tick()
        copies = self._copies(t.copies.c.hold == sa.true())
        if copies:
            with self.v.engine.begin() as conn:
                release_hold(conn, self.v.store, copy_ids=[copies[pick % len(copies)]["id"]], actor="ic-1",
                             now=self.v.now, ledger=self.v.ledger)

    @rule(pick=st.integers(0, 50), number=st.sampled_from(NUMBERS))
    def rectify_number(self, pick, number):
        self._tick()
        recs = self._recordings()
        if recs:
            with self.v.engine.begin() as conn:
                rectify(conn, self.v.keys, tenant=TENANT, recording_ids=[recs[pick % len(recs)]["id"]], actor=IC,
                        now=self.v.now, caller_number=number)

    @rule(number=st.sampled_from(NUMBERS), objection=st.booleans())
    def erase_number(self, number, objection):
        self._tick()
        fn = object_to_recording if objection else erase
        with self.v.engine.begin() as conn:
            report = fn(conn, self.v.store, self.v.keys, self.v.ledger, tenant=TENANT, numbers=[number], actor=IC,
                        now=self.v.now)
        self.erased |= {uuid.UUID(c["copy_id"]) for c in report.erased_copies}
        self.erased_recordings |= {uuid.UUID(r) for r in report.erased_recordings}
        if objection:
            self.objected.add(number)
        STATS["erased"] += len(report.erased_copies)
        STATS["held_kept"] += len(report.kept_copies)

    @rule(number=st.sampled_from(NUMBERS), lift=st.booleans())
    def restrict_number(self, number, lift):
        self._tick()
        with self.v.engine.begin() as conn:
            restrict(conn, self.v.keys, self.v.ledger, tenant=TENANT, numbers=[number], actor=IC, now=self.v.now, lift=lift)
        self.restricted[number] = not lift

    @rule(tier=st.sampled_from(["production", "monitoring", "training", "complaint-extract"]),
          months=st.integers(1, 36))
    def set_tier_retention(self, tier, months):
        self._tick()
        bounds = LifecycleSettings()
        months = max(bounds.min_months.get(tier, 1), min(months, bounds.max_months.get(tier, 36)))
        with self.v.engine.begin() as conn:
            set_retention(conn, tenant=TENANT, tier=tier, months=months,
                          bounds=Bounds(bounds.min_months, bounds.max_months), now=self.v.now, ledger=self.v.ledger)
        self.retention[tier] = months

    @rule(days=st.sampled_from([1, 15, 40, 100]))
    def sweep_later(self, days):
        self._tick()
        self.v.advance(timedelta(days=days))
        before = {c["id"] for c in self._copies()}
        sweep(self.v.engine, self.v.store, now=self.v.now)
        self.swept |= before - {c["id"] for c in self._copies()}

    @rule(settled=st.booleans())
    def restart_worker(self, settled):
        """A worker's start replays the ledger from where the last replay stopped: on a catalog that
        was not restored, nothing changes; its cursor moves on, so a backup taken later holds it.
        ``settled`` False: the production window, every entry of the last hour read again."""
        self._tick()
        report = replay_ledger(self.v.engine, self.v.store, self.v.keys, self.v.ledger, now=self.v.now,
                               **({"settle_seconds": 0} if settled else {}))
        changed = (report.replayed, report.holds_restored, report.rights, report.retention_restored,
                   report.users_revoked)
        assert changed == (0, 0, None, 0, 0), f"a replay changed a live catalog: {report.summary()}"

    @precondition(lambda self: self.backup is None)
    @rule()
    def take_backup(self):
        self._tick()
        self.backup = pgbackup.dump(self.v.url, self.world["tmp"] / f"{self.schema}.dump")

    @precondition(lambda self: self.backup is not None and self.restores < RESTORES_PER_EXAMPLE)
    @rule()
    def restore_backup(self):
        """An operator restores the catalog, then runs `storage reconcile` and `--repair`."""
        self._tick()
        self.restores += 1
        STATS["restores"] += 1
        held_before = {c["object_key"] for c in self._copies(t.copies.c.hold == sa.true())}
        self.v.engine.dispose()
        pgbackup.restore(self.v.url, self.backup)
        report = replay_ledger(self.v.engine, self.v.store, self.v.keys, self.v.ledger, now=self.v.now,
                               settle_seconds=0)
        STATS["replayed"] += report.replayed
        # Copies the sweeper deleted after the backup come back as rows whose object is gone:
        # the repair removes them (an expired copy must not be resurrected either).
        reconcile(self.v.engine, self.v.store, self.v.storage.recordings_bucket, repair=True,
                  grace=timedelta(0), now=self._wall())
        # A copy made and held after the backup has no row in it: its object stays, under legal
        # hold, and reconcile reports it as an incident (recover it from a later backup).
        self.lost_held |= held_before - {c["object_key"] for c in self._copies()}

    # -- invariants --------------------------------------------------------------------------

    @invariant()
    def held_copies_are_readable(self):
        for c in self._copies(t.copies.c.hold == sa.true()):
            assert self.v.readable(c["id"]), f"held copy {c['id']} ({c['tier']}) is unreadable"

    @invariant()
    def erased_and_swept_stay_gone(self):
        for copy_id in self.erased | self.swept:
            assert not self.v.readable(copy_id), f"copy {copy_id} was deleted but reads again"

    @invariant()
    def an_erased_recording_is_never_stored_again(self):
        again = self.erased_recordings & {r["id"] for r in self._recordings()}
        assert not again, f"erased recordings stored again: {sorted(map(str, again))}"

    @invariant()
    def an_objection_stands(self):
        suppressed = {r["number_hash"] for r in self.v.rows(t.suppressions)}
        for number in self.objected:
            assert set(hashes(self.v.keys, TENANT, [number])) <= suppressed, f"the objection of {number} is lost"

    @invariant()
    def a_restriction_stands_until_lifted(self):
        """Every recording of a restricted number is restricted: those stored, rectified onto it or
        restored since too."""
        recs = self._recordings()
        for number, on in self.restricted.items():
            if on:
                mine = set(hashes(self.v.keys, TENANT, [number]))
                loose = [r["id"] for r in recs if r["number_hash"] in mine and not r["restricted"]]
                assert not loose, f"recordings of restricted {number} not restricted: {loose}"

    @invariant()
    def retention_stays_as_last_set(self):
        held = {r["tier"]: r["months"] for r in self.v.rows(t.tenant_retention, t.tenant_retention.c.tenant_id == TENANT)}
        assert {tier: held.get(tier) for tier in self.retention} == self.retention

    @invariant()
    def expired_is_unplayable_unless_held(self):
        recs = {r["id"]: r for r in self._recordings()}
        for c in self._copies(t.copies.c.expires_at <= self.v.now):
            rec = recs[c["recording_id"]]
            target = Target(tenant=TENANT, tier=c["tier"], agent_id=rec["agent_id"], team_id=rec["team_id"],
                            restricted=rec["restricted"], recording_id=str(rec["id"]), expires_at=c["expires_at"],
                            held=c["hold"])
            assert decide(IC_USER, Action.STREAM, target, now=self.v.now).allowed == c["hold"]

    @invariant()
    def audit_verifies_and_reconcile_is_clean(self):
        with self.v.engine.connect() as conn:
            result = verify(conn)
        assert result.ok, result.problem
        report = reconcile(self.v.engine, self.v.store, self.v.storage.recordings_bucket, repair=False,
                           grace=timedelta(0), now=self._wall())
        assert not (report.orphan_objects or report.dangling_rows or report.held_missing), report.summary()
        # A copy made again under the same key since (an extract of the same reference) hides the
        # lost one while it lives: its row is there. Once it is swept or erased, the held version
        # it was written over is the key's newest again, still held, and reported again.
        assert set(report.held_orphans) == self.lost_held - {c["object_key"] for c in self._copies()}, \
            report.summary()


@pytest.mark.timeout(1800)
def test_every_promise_holds_on_every_path(storage_settings, postgres_url, tmp_path) -> None:
    admin = sa.create_engine(postgres_url)
    Promises.world = {"admin": admin, "postgres_url": postgres_url, "storage": storage_settings,
                      "master": os.urandom(32), "tmp": tmp_path}
    for key in STATS:
        STATS[key] = 0
    try:
        run_state_machine_as_test(Promises, settings=settings(
            max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None,
            suppress_health_check=list(HealthCheck), print_blob=True))
    finally:
        admin.dispose()
        print(f"\npromise machine: {STATS}")
    assert STATS["examples"] >= min(EXAMPLES, 10)
