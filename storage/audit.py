"""The audit trail: append-only, hash-chained, tenant-tagged, PII-free, anchored outside the catalog.

Each entry's ``hash`` is SHA-256 over the previous entry's hash and this entry's canonical
JSON, so editing, deleting or reordering any entry breaks every hash after it. What the hash
covers is the entry's ``chain`` version: 1 (entries written before migration 0005: no tenant),
2 (the tenant and the version too). The head of the chain is regularly anchored in
object-locked storage, HMAC-signed with a key the catalog does not hold (``storage.anchors``):
``verify`` walks the chain *and* checks it against every anchor, so a cut tail or a chain
recomputed after an edit is caught too (up to the last anchor; later entries by the chain
only).

Entries take their time from the server clock. A caller acting "as of" another time (``sweep
--now``, a test clock) passes ``at``; it is kept in ``detail["as_of"]``, never as the entry's
time.

**The append lock.** Appends are serialised so the chain never forks: a transaction-level
advisory lock on PostgreSQL (SQLite has a single writer), held from reading the head to the
commit. Inside a unit of work (``storage.catalog.db.UnitOfWork``, what the API, the CLI's
subject requests and the services use), ``append`` only *collects* the entry; the unit appends
everything it collected just before it commits. So the lock is held around the append and the
commit, never across the object-store I/O of an export or an erasure, and the entries stay in
the business transaction: an entry commits if and only if what it records commits (a rolled
back erasure leaves no entry claiming it, and a committed one cannot lack its entry). A denial
is committed on its own before it is raised (``access.api.gate``). Outside a unit of work
(``engine.begin()``: the sweeper's short row transactions, a few CLI commands) the entry is
appended at once.

Entries name actors, roles, tenants, actions and ids. They never hold audio or a phone number:
callers pass ids (recording id, copy id) and reasons (ticket or complaint references).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import IO, Any, Iterable, Iterator

import sqlalchemy as sa

from storage.anchors import AuditAnchors
from storage.catalog import tables as t
from storage.catalog.db import current_unit_of_work

_LOCK_KEY = 0x63766175  # "cvau": the advisory lock that serialises appends on PostgreSQL
CHAIN_VERSION = 2       # what new entries' hashes cover (see ``_entry``)
_AS_OF_SLACK = timedelta(seconds=5)


def _canonical(entry: dict[str, Any]) -> bytes:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), default=str).encode()


def entry_hash(prev_hash: str | None, entry: dict[str, Any]) -> str:
    return hashlib.sha256((prev_hash or "").encode() + b"\n" + _canonical(entry)).hexdigest()


def _entry(row: dict[str, Any]) -> dict[str, Any]:
    """The hashed content of a row, as its chain version defines it."""
    at = row["at"]
    entry = {"at": at.astimezone(timezone.utc).isoformat(), "actor": row["actor"], "role": row["role"],
             "action": row["action"], "target_type": row["target_type"], "target_id": row["target_id"],
             "outcome": row["outcome"], "reason": row["reason"], "detail": row["detail"]}
    chain = row.get("chain", 1)
    if not isinstance(chain, int) or chain >= 2:  # no number: edited, and hashed as found (never matches)
        entry.update(chain=row["chain"], tenant_id=row["tenant_id"])
    return entry


def append(conn: sa.Connection, *, tenant: str | None, actor: str, role: str, action: str, target_type: str,
           target_id: str, outcome: str, reason: str | None = None, detail: dict[str, Any] | None = None,
           at: datetime | None = None, anchor: bool = False) -> None:
    """Append one entry about ``tenant`` (None: group-level or system) with the caller's unit of
    work (at its commit) or at once. ``at``: the time the caller acts as of, kept in the
    detail if it is not now. ``anchor``: anchor the chain right after the commit (erasures,
    exports)."""
    append_many(conn, [dict(tenant=tenant, actor=actor, role=role, action=action, target_type=target_type,
                            target_id=target_id, outcome=outcome, reason=reason, detail=detail, at=at)],
                anchor=anchor)


def append_many(conn: sa.Connection, entries: list[dict[str, Any]], *, anchor: bool = False) -> None:
    """Append entries in order (each with a ``tenant`` key), with one lock and one insert."""
    if not entries:
        return
    uow = current_unit_of_work(conn)
    if uow is None:
        _write(conn, entries)
        return
    uow.pending.setdefault("audit", []).extend(entries)
    uow.before_commit("audit", _flush)
    uow.anchor_after_commit = uow.anchor_after_commit or anchor


def _flush(conn: sa.Connection) -> None:
    uow = current_unit_of_work(conn)
    if uow is not None:
        _write(conn, uow.pending.pop("audit", []))


_HEAD = f"SELECT hash FROM {t.audit_events.name} ORDER BY seq DESC LIMIT 1"
# Two statements in one query string (simple protocol): one round trip, and the head is read
# with a snapshot taken *after* the lock is granted. A single statement (the lock in a select
# list next to a subquery reading the head, a CTE) would read the head with the snapshot it
# started with, before waiting for the lock: an append committed meanwhile would be missed
# and the chain would fork.
_LOCK_THEN_HEAD = f"SELECT pg_advisory_xact_lock({_LOCK_KEY}); {_HEAD}"


def _lock_and_read_head(conn: sa.Connection) -> str | None:
    """Take the append lock (PostgreSQL) and read the chain's head hash: one round trip."""
    if conn.dialect.name != "postgresql":  # SQLite: a single writer, no lock to take
        return conn.execute(sa.select(t.audit_events.c.hash).order_by(t.audit_events.c.seq.desc())
                            .limit(1)).scalar()
    cursor = conn.connection.cursor()
    try:
        cursor.execute(_LOCK_THEN_HEAD)
        if not cursor.nextset():
            raise RuntimeError("the audit head query returned one result, expected two")
        row = cursor.fetchone()
    finally:
        cursor.close()
    return row[0] if row else None


def _write(conn: sa.Connection, entries: list[dict[str, Any]]) -> None:
    if not entries:
        return
    prev = _lock_and_read_head(conn)
    now = datetime.now(timezone.utc)
    rows = []
    for e in entries:
        detail = e.get("detail")
        as_of = e.get("at")
        if as_of is not None and abs(as_of - now) > _AS_OF_SLACK:
            detail = {**(detail or {}), "as_of": as_of.astimezone(timezone.utc).isoformat()}
        row = {"at": now, "tenant_id": e["tenant"], "actor": e["actor"], "role": e["role"], "action": e["action"],
               "target_type": e["target_type"], "target_id": str(e["target_id"]), "outcome": e["outcome"],
               "reason": e.get("reason"), "detail": detail, "chain": CHAIN_VERSION}
        digest = entry_hash(prev, _entry(row))
        rows.append({**row, "prev_hash": prev, "hash": digest})
        prev = digest
    uow = current_unit_of_work(conn)
    if uow is not None:  # in the unit's commit: the insert goes with the COMMIT (PostgreSQL)
        uow.send_with_commit()
    # ``inline``: no RETURNING of the new seq, whose result a pipelined insert would wait for.
    conn.execute(t.audit_events.insert().inline(), rows)


def anchor(engine: sa.Engine, anchors: AuditAnchors | None) -> None:
    """Anchor the committed head now (after a sweep; the worker's timer). Never raises."""
    if anchors is not None:
        anchors.write_quietly(engine)


# -- verification -----------------------------------------------------------------------------

@dataclass(frozen=True)
class VerifyResult:
    entries: int
    ok: bool
    first_bad_seq: int | None = None
    problem: str | None = None
    anchors: int = 0                      # signed anchors checked
    anchored_seq: int | None = None       # the newest anchored entry
    unanchored: int = 0                   # entries after it, protected by the chain only
    notes: list[str] = field(default_factory=list)


_UNREADABLE = object()  # a detail that is no JSON (SQLite stores any text an editor writes): hashes to nothing


def _rows(conn: sa.Connection) -> Iterator[dict[str, Any]]:
    # Options on the statement, not the connection: the caller may go on writing with it. The detail
    # is read as text and parsed here, so an entry edited into no JSON is reported, not raised.
    columns = [sa.type_coerce(c, sa.Text).label(c.name) if c.name == "detail" else c for c in t.audit_events.c]
    result = conn.execute(sa.select(*columns).order_by(t.audit_events.c.seq).execution_options(yield_per=1000))
    for row in result.mappings():
        entry = dict(row)
        if isinstance(entry["detail"], str):  # SQLite's text (PostgreSQL's driver parses jsonb itself)
            try:
                entry["detail"] = json.loads(entry["detail"])
            except ValueError:
                entry["detail"] = _UNREADABLE
        yield entry


def verify(conn: sa.Connection, anchors: AuditAnchors | None = None) -> VerifyResult:
    """Walk the chain from the first entry and check it against every anchor; report the first
    edited, missing, moved or rewritten entry, or a cut tail."""
    checked: list = []
    if anchors is not None:
        for stored in anchors.stored():
            if stored.anchor is None or not stored.signed:
                return VerifyResult(0, False, None, f"anchor {stored.name.rsplit('/', 1)[-1]} is "
                                    f"{'unreadable' if stored.anchor is None else 'not signed with the anchor key'}"
                                    " (forged, or the configured anchor key is not the one that wrote it)")
            checked.append(stored.anchor)
    checked.sort(key=lambda a: a.seq)
    notes = [] if anchors is not None else ["no anchor key configured: a recomputed chain or a cut tail would "
                                            "go unnoticed (set CALLVAULT_STORAGE_AUDIT_ANCHOR_KEY)"]
    prev: str | None = None
    count = 0
    i = 0
    last_anchored: int | None = None
    since_anchor = 0

    def fail(seq: int | None, problem: str) -> VerifyResult:
        return VerifyResult(count, False, seq, problem, anchors=len(checked), anchored_seq=last_anchored)

    for row in _rows(conn):
        count += 1
        since_anchor += 1
        seq = row["seq"]
        while i < len(checked) and checked[i].seq < seq:
            a = checked[i]
            return fail(a.seq, f"the anchored entry seq={a.seq} (anchored at {a.at}) is missing: entries were "
                               "deleted and the chain rewritten")
        if row["prev_hash"] != prev:
            return fail(seq, "links to a different previous entry (an entry was deleted or reordered)")
        if entry_hash(prev, _entry(row)) != row["hash"]:
            return fail(seq, "its content does not match its hash (edited)")
        while i < len(checked) and checked[i].seq == seq:
            a = checked[i]
            since = f"after seq={last_anchored}" if last_anchored is not None else "from the first entry"
            if a.hash != row["hash"]:
                return fail(seq, f"does not match the anchor written at {a.at}: the chain was rewritten "
                                 f"(an entry {since} up to this one was edited and the hashes recomputed)")
            if a.count != count:
                return fail(seq, f"the anchor written at {a.at} counts {a.count} entries up to here, the catalog "
                                 f"{count}: entries {since} were deleted or inserted and the chain rewritten")
            last_anchored, since_anchor = seq, 0
            i += 1
        prev = row["hash"]
    if i < len(checked):
        a = checked[i]
        return fail(a.seq, f"the trail ends at entry {count} but an anchor written at {a.at} covers "
                           f"{a.count} entries up to seq={a.seq}: the newest entries were cut")
    if anchors is not None and count and last_anchored is None:
        notes.append("no anchor written yet: run `callvault audit anchor`")
    return VerifyResult(count, True, anchors=len(checked), anchored_seq=last_anchored, unanchored=since_anchor,
                        notes=notes)


# -- reading a page ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Page:
    entries: list[dict[str, Any]]
    more: bool  # further entries exist in the page's direction (the last entry's seq is the cursor)


def page(conn: sa.Connection, *, limit: int, tenants: Iterable[str] | None = None, after_seq: int = 0,
         before_seq: int | None = None, newest_first: bool = False, target_type: str | None = None,
         target_id: str | None = None) -> Page:
    """A keyset page of the trail on ``seq``: entries after ``after_seq`` oldest first, or with
    ``newest_first`` entries before ``before_seq`` (None: from the newest) newest first.
    ``tenants``: only these tenants' entries (None: all, group-level and system entries too);
    ``target_type`` with ``target_id``: only the entries about that target."""
    a = t.audit_events
    query = sa.select(a)
    if tenants is not None:  # ix_audit_events_tenant_id_seq
        query = query.where(a.c.tenant_id.in_(sorted(tenants)))
    if target_type is not None and target_id is not None:  # ix_audit_events_target
        query = query.where(a.c.target_type == target_type, a.c.target_id == target_id)
    if newest_first:
        query = query.where(a.c.seq < before_seq) if before_seq is not None else query
        query = query.order_by(a.c.seq.desc())
    else:
        query = query.where(a.c.seq > after_seq).order_by(a.c.seq)
    rows = [dict(row) for row in conn.execute(query.limit(limit + 1)).mappings()]
    return Page(rows[:limit], more=len(rows) > limit)


# -- export for a SIEM --------------------------------------------------------------------------

EXPORT_FIELDS = ("seq", "at", "tenant_id", "actor", "role", "action", "target_type", "target_id", "outcome",
                 "reason", "detail", "prev_hash", "hash", "chain")


def export_jsonl(conn: sa.Connection, out: IO[str], *, start: datetime, end: datetime,
                 tenants: frozenset[str] | None = None) -> int:
    """Write the entries with ``start <= at < end`` as JSON Lines, streamed; returns how many.
    ``tenants``: only these tenants' entries (None: all)."""
    a = t.audit_events
    query = sa.select(a).where(a.c.at >= start, a.c.at < end).order_by(a.c.seq).execution_options(yield_per=1000)
    if tenants is not None:
        query = query.where(a.c.tenant_id.in_(sorted(tenants)))
    n = 0
    for row in conn.execute(query).mappings():
        record = {k: row[k] for k in EXPORT_FIELDS}
        record["at"] = row["at"].astimezone(timezone.utc).isoformat()
        out.write(json.dumps(record, sort_keys=True, default=str) + "\n")
        n += 1
    return n


# -- helpers for writers -------------------------------------------------------------------------

def sole_tenant(tenants: Iterable[str]) -> str | None:
    """The tenant of an entry about a user of these tenants: their only one, else group-level (None)."""
    mine = set(tenants)
    return next(iter(mine)) if len(mine) == 1 and "*" not in mine else None


def copy_tenants(conn: sa.Connection, copy_ids: Iterable[Any]) -> dict[str, str]:
    """str(copy id) -> its recording's tenant, for the copies still in the catalog."""
    ids = list(copy_ids)
    if not ids:
        return {}
    rows = conn.execute(sa.select(t.copies.c.id, t.recordings.c.tenant_id)
                        .join(t.recordings, t.recordings.c.id == t.copies.c.recording_id)
                        .where(t.copies.c.id.in_(ids)))
    return {str(cid): tenant for cid, tenant in rows}
