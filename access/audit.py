"""The audit trail: append-only, hash-chained, PII-free.

Each entry's ``hash`` is SHA-256 over the previous entry's hash and this entry's canonical
JSON, so editing, deleting or reordering any entry breaks every hash after it; ``verify``
walks the chain and names the first broken entry. Appends are serialised (a transaction-level
advisory lock on PostgreSQL; SQLite has a single writer) so the chain never forks.

Entries name actors, roles, actions and ids. They never hold audio or a phone number: callers
pass ids (recording id, copy id) and reasons (ticket or complaint references).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterator

import sqlalchemy as sa

from storage.catalog import tables as t

_LOCK_KEY = 0x63766175  # "cvau": the advisory lock that serialises appends on PostgreSQL


def _canonical(entry: dict[str, Any]) -> bytes:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), default=str).encode()


def entry_hash(prev_hash: str | None, entry: dict[str, Any]) -> str:
    return hashlib.sha256((prev_hash or "").encode() + b"\n" + _canonical(entry)).hexdigest()


def _entry(row: dict[str, Any]) -> dict[str, Any]:
    at = row["at"]
    return {"at": at.astimezone(timezone.utc).isoformat(), "actor": row["actor"], "role": row["role"],
            "action": row["action"], "target_type": row["target_type"], "target_id": row["target_id"],
            "outcome": row["outcome"], "reason": row["reason"], "detail": row["detail"]}


def append(conn: sa.Connection, *, actor: str, role: str, action: str, target_type: str, target_id: str,
           outcome: str, reason: str | None = None, detail: dict[str, Any] | None = None,
           at: datetime | None = None) -> str:
    """Append one entry in the caller's transaction; returns its hash."""
    return append_many(conn, [dict(actor=actor, role=role, action=action, target_type=target_type,
                                   target_id=target_id, outcome=outcome, reason=reason, detail=detail, at=at)])


def append_many(conn: sa.Connection, entries: list[dict[str, Any]]) -> str | None:
    """Append entries in order with one lock and one insert (batch jobs); returns the last hash."""
    if not entries:
        return None
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
    prev = conn.execute(sa.select(t.audit_events.c.hash).order_by(t.audit_events.c.seq.desc()).limit(1)).scalar()
    rows = []
    now = datetime.now(timezone.utc)
    for e in entries:
        row = {"at": e.get("at") or now, "actor": e["actor"], "role": e["role"], "action": e["action"],
               "target_type": e["target_type"], "target_id": str(e["target_id"]), "outcome": e["outcome"],
               "reason": e.get("reason"), "detail": e.get("detail")}
        digest = entry_hash(prev, _entry(row))
        rows.append({**row, "prev_hash": prev, "hash": digest})
        prev = digest
    conn.execute(t.audit_events.insert(), rows)
    return prev


@dataclass(frozen=True)
class VerifyResult:
    entries: int
    ok: bool
    first_bad_seq: int | None = None
    problem: str | None = None


def _rows(conn: sa.Connection) -> Iterator[dict[str, Any]]:
    # Options on the statement, not the connection: the caller may go on writing with it.
    result = conn.execute(sa.select(t.audit_events).order_by(t.audit_events.c.seq)
                          .execution_options(yield_per=1000))
    for row in result.mappings():
        yield dict(row)


def verify(conn: sa.Connection) -> VerifyResult:
    """Walk the chain from the first entry; report the first edited, missing or moved one."""
    prev: str | None = None
    count = 0
    for row in _rows(conn):
        count += 1
        if row["prev_hash"] != prev:
            return VerifyResult(count, False, row["seq"],
                                "links to a different previous entry (an entry was deleted or reordered)")
        if entry_hash(prev, _entry(row)) != row["hash"]:
            return VerifyResult(count, False, row["seq"], "its content does not match its hash (edited)")
        prev = row["hash"]
    return VerifyResult(count, True)
