"""Replay of the ledger: an erasure, and a legal hold, survive a catalog restore.

Run by ``callvault storage reconcile`` and by the worker before it ingests anything. Each
ledger entry is applied again in its own transaction (``storage.erasure.replay``); on a
catalog that already reflects it (the usual case) nothing changes and nothing is written.
An entry that did change something (keys destroyed again, rows deleted again, held copies
re-wrapped) leaves one PII-free audit entry, so an operator sees the restore was caught.

Before anything else the worker must have replayed: a call ingested into a restored catalog
would otherwise be wrapped by a caller key the replay is about to destroy.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Callable

import sqlalchemy as sa

from core.vocabulary import AuditAction
from storage import erasure, rights
from storage.audit import append_many, copy_tenants, sole_tenant
from storage.catalog import tables as t
from storage.keys import KeyRing
from storage.ledger import ErasureLedger, PolicyEvent
from storage.objectstore import ObjectStore
from storage.rights import RightsReplay

from . import retention


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
                  say: Callable[[str], None] = lambda _m: None) -> ReplayReport:
    report = ReplayReport()
    with engine.begin() as conn:  # holds first: an erasure replayed next must see them
        restored = erasure.restore_holds(conn, ledger.hold_states(), now=now)
        if restored:
            report.holds_restored = len(restored)
            tenants = copy_tenants(conn, restored)
            append_many(conn, [{
                "tenant": tenants.get(str(copy_id)),
                "actor": "erasure-ledger", "role": "system", "action": AuditAction.COPY_HOLD_REPLAY, "target_type": "copy",
                "target_id": str(copy_id), "outcome": "done", "at": now,
                "reason": "hold state re-applied from the journal after a catalog restore"} for copy_id in restored])
    for name, entry in ledger.entries():
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
    _reapply_rights(engine, ledger, report, now=now)
    _reapply_policy(engine, keys, ledger, report, now=now)
    say(report.summary())
    return report


def _reapply_rights(engine: sa.Engine, ledger: ErasureLedger, report: ReplayReport, *, now: datetime) -> None:
    """Objections and restrictions made after the backup come back (``storage.rights``), audited."""
    with engine.begin() as conn:
        done = rights.reapply(conn, ledger.subject_events())
        if not done.changed:
            return
        report.rights = done
        append_many(conn, [{
            "tenant": tenant, "actor": "erasure-ledger", "role": "system",
            "action": AuditAction.SUBJECT_RIGHTS_REPLAY, "target_type": "tenant", "target_id": tenant,
            "outcome": "done", "at": now, "reason": "objections and restrictions re-applied after a catalog restore",
            "detail": {"suppressed_number_hashes": done.suppressed, "recordings_restricted": done.restricted,
                       "recordings_lifted": done.lifted}} for tenant in sorted(done.tenants)])


def _reapply_policy(engine: sa.Engine, keys: KeyRing, ledger: ErasureLedger, report: ReplayReport, *,
                    now: datetime) -> None:
    """Retention changes and revocations made after the backup come back, audited: a shortened
    retention deletes on time again, a revoked user stays out."""
    events = list(ledger.policy_events())
    if not events:
        return
    with engine.begin() as conn:
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
