"""Replay of the ledger: an erasure, and a legal hold, survive a catalog restore.

Run by ``callvault storage reconcile`` and by the worker before it ingests anything. Each
ledger entry is applied again in its own transaction (``storage.erasure.replay``); on a
catalog that already reflects it (the usual case) nothing changes and nothing is written.
An entry that did change something (keys destroyed again, rows deleted again, held copies
re-wrapped) leaves one PII-free audit entry, so an operator sees the restore was caught.

Before anything else the worker must have replayed: a call ingested into a restored catalog
would otherwise be wrapped by a caller key the replay is about to destroy.

A replay reads each journal from where the last one on this catalog stopped (``ledger_cursors``,
in the catalog, so a restored backup brings back its own older position and the replay after
the restore reads exactly what was journalled since), not from its first entry: the worker's
start does not grow with the ledger's years. Entries younger than ``SETTLE_SECONDS`` are read
again by the next replay. An entry's key carries its writer's clock, so the hosts that journal
(workers, API, CLI) must agree on the time within that hour (NTP does to milliseconds): an entry
written by a host running more than an hour behind could sort before a cursor already saved and
be missed by the replay after a restore.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from core.vocabulary import AuditAction
from storage import erasure, rights
from storage.audit import append_many, copy_tenants, sole_tenant
from storage.catalog import tables as t
from storage.keys import KeyRing
from storage.ledger import Cursor, ErasureLedger, PolicyEvent
from storage.objectstore import ObjectStore
from storage.rights import RightsReplay

from . import retention

SETTLE_SECONDS = 3600.0  # a request's catalog transaction has long committed (or failed) after this


@dataclass
class ReplayReport:
    entries: int = 0
    replayed: int = 0
    keys_destroyed: int = 0
    copies_deleted: int = 0
    recordings_deleted: int = 0
    held_rewrapped: int = 0
    holds_restored: int = 0
    rights: RightsReplay | None = None  # objections and restrictions re-applied, if any
    retention_restored: int = 0  # (tenant, tier) retentions set back to their last journalled value
    users_revoked: int = 0  # users revoked again

    def _rights(self) -> str:
        r = self.rights
        return (f"; objections and restrictions re-applied from the journal: {r.suppressed} suppressed number "
                f"hashes, {r.restricted} recordings restricted, {r.lifted} lifted" if r else "")

    def _policy(self) -> str:
        return (f"; {self.retention_restored} tier retentions and {self.users_revoked} user revocations re-applied "
                "from the journal" if self.retention_restored or self.users_revoked else "")

    def summary(self) -> str:
        holds = f"; {self.holds_restored} hold states re-applied from the journal" if self.holds_restored else ""
        holds += self._rights() + self._policy()
        if not self.replayed:
            return f"erasure ledger: {self.entries} entries, all already applied{holds}"
        return (f"erasure ledger: {self.replayed} of {self.entries} entries applied again (catalog restored?): "
                f"{self.keys_destroyed} keys destroyed, {self.copies_deleted} copies and "
                f"{self.recordings_deleted} recordings deleted, {self.held_rewrapped} held copies kept readable{holds}")


def replay_ledger(engine: sa.Engine, store: ObjectStore, keys: KeyRing, ledger: ErasureLedger, *, now: datetime,
                  say: Callable[[str], None] = lambda _m: None,
                  settle_seconds: float = SETTLE_SECONDS) -> ReplayReport:
    """Every journal from where the last replay on this catalog stopped (``ledger_cursors``): a
    catalog restored from a backup starts where that backup's last replay did. ``settle_seconds``:
    entries younger than this are read again next time (their request may still be committing)."""
    report = _replay(engine, store, keys, ledger, now=now, settle_seconds=settle_seconds)
    say(report.summary())
    return report


def _replay(engine: sa.Engine, store: ObjectStore, keys: KeyRing, ledger: ErasureLedger, *, now: datetime,
            settle_seconds: float) -> ReplayReport:
    report = ReplayReport()
    with engine.connect() as conn:
        cursor = _cursor(conn, settled_ns=time.time_ns() - int(settle_seconds * 1e9))
    with engine.begin() as conn:  # holds first: an erasure replayed next must see them
        restored = erasure.restore_holds(conn, ledger.hold_states(cursor), now=now)
        if restored:
            report.holds_restored = len(restored)
            tenants = copy_tenants(conn, restored)
            append_many(conn, [{
                "tenant": tenants.get(str(copy_id)),
                "actor": "erasure-ledger", "role": "system", "action": AuditAction.COPY_HOLD_REPLAY, "target_type": "copy",
                "target_id": str(copy_id), "outcome": "done", "at": now,
                "reason": "hold state re-applied from the journal after a catalog restore"} for copy_id in restored])
    for name, entry in ledger.entries(cursor):
        report.entries += 1
        with engine.begin() as conn:
            applied = erasure.replay(conn, store, keys, entry, now=now)
            if applied is None:
                continue
            report.replayed += 1
            report.keys_destroyed += len(applied.key_ids)
            report.copies_deleted += len(applied.doomed)
            report.recordings_deleted += len(applied.doomed_recordings)
            report.held_rewrapped += len(applied.held)
            append_many(conn, [{
                "tenant": entry.tenant,
                "actor": "erasure-ledger", "role": "system", "action": AuditAction.SUBJECT_ERASE_REPLAY,
                "target_type": "ledger-entry", "target_id": name.rsplit("/", 1)[-1], "outcome": "done", "at": now,
                "reason": "erasure applied again after a catalog restore",
                "detail": {"tenant": entry.tenant, "keys_destroyed": len(applied.key_ids),
                           "copies_deleted": len(applied.doomed),
                           "recordings_deleted": len(applied.doomed_recordings),
                           "held_copies_kept": len(applied.held)}}])
    _reapply_rights(engine, ledger, cursor, report, now=now)
    _reapply_policy(engine, keys, ledger, cursor, report, now=now)
    with engine.begin() as conn:
        _advance(conn, cursor, now=datetime.now(timezone.utc))
    return report


def _cursor(conn: sa.Connection, *, settled_ns: int) -> Cursor:
    c = t.ledger_cursors.c
    return Cursor(start=dict(conn.execute(sa.select(c.journal, c.last_key)).all()), settled_ns=settled_ns)


def _advance(conn: sa.Connection, cursor: Cursor, *, now: datetime) -> None:
    """The next replay starts after what this one read and settled (never moving a cursor back:
    a replay beside it, another worker's start, may have gone further)."""
    c = t.ledger_cursors.c
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    for journal, key in cursor.reached.items():
        insert = dialect.insert(t.ledger_cursors).values(journal=journal, last_key=key, updated_at=now)
        conn.execute(insert.on_conflict_do_update(
            index_elements=[c.journal], set_={"last_key": key, "updated_at": now},
            where=c.last_key < insert.excluded.last_key))


def _reapply_rights(engine: sa.Engine, ledger: ErasureLedger, cursor: Cursor, report: ReplayReport, *,
                    now: datetime) -> None:
    """Objections and restrictions made after the backup come back (``storage.rights``), audited."""
    with engine.begin() as conn:
        done = rights.reapply(conn, ledger, cursor)
        if not done.changed:
            return
        report.rights = done
        append_many(conn, [{
            "tenant": tenant, "actor": "erasure-ledger", "role": "system",
            "action": AuditAction.SUBJECT_RIGHTS_REPLAY, "target_type": "tenant", "target_id": tenant,
            "outcome": "done", "at": now, "reason": "objections and restrictions re-applied after a catalog restore",
            "detail": {"suppressed_number_hashes": done.suppressed, "recordings_restricted": done.restricted,
                       "recordings_lifted": done.lifted}} for tenant in sorted(done.tenants)])


def _reapply_policy(engine: sa.Engine, keys: KeyRing, ledger: ErasureLedger, cursor: Cursor, report: ReplayReport,
                    *, now: datetime) -> None:
    """Retention changes and revocations made after the backup come back, audited: a shortened
    retention deletes on time again, a revoked user stays out."""
    with engine.begin() as conn:
        # Every tenant locked before the journal is read: a retention change commits (and is read
        # here) before, or waits until after (``retention.set_retention`` locks its tenant first).
        retention.lock_tenants(conn)
        events = list(ledger.policy_events(cursor))
        if not events:
            return
        changes = retention.reapply(conn, events, now=now)
        revoked = _revoke_again(conn, keys, events)
        report.retention_restored, report.users_revoked = len(changes), len(revoked)
        append_many(conn, [{
            "tenant": c.tenant, "actor": "erasure-ledger", "role": "system", "action": AuditAction.RETENTION_REPLAY,
            "target_type": "tenant", "target_id": c.tenant, "outcome": "done", "at": now,
            "reason": "retention re-applied from the journal after a catalog restore", "detail": c.counts()}
            for c in changes] + [{
            "tenant": tenant, "actor": "erasure-ledger", "role": "system", "action": AuditAction.USER_REVOKE_REPLAY,
            "target_type": "user", "target_id": user_id, "outcome": "done", "at": now,
            "reason": "revocation re-applied from the journal after a catalog restore"}
            for user_id, tenant in revoked])


def _revoke_again(conn: sa.Connection, keys: KeyRing, events: list[PolicyEvent]) -> list[tuple[str, str | None]]:
    """Every active user the journal says was revoked: revoked again, at the journalled time; (user, tenant)."""
    when = {e.target: e.at for e in events if e.kind == "revoke"}
    if not when:
        return []
    u = t.users.c
    again = []
    for user_id, tenants in conn.execute(sa.select(u.id, u.tenants).where(u.revoked.is_(False))).all():
        at = when.get(keys.user_hash(user_id))
        if at is not None:
            conn.execute(t.users.update().where(u.id == user_id).values(revoked=True, revoked_at=at))
            again.append((user_id, sole_tenant(tenants or [])))
    return again
