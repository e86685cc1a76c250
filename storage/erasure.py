"""Crypto-shredding by key id: the one place that destroys caller keys.

Whatever destroys a key first finds everything it protects, by key id, never by today's
number (a rectification may have moved the number, not the key, or the reverse):

1. *plan*: the copies wrapped by the doomed keys or belonging to the doomed recordings,
   each locked. Unheld ones are marked ``deleting_at`` (``hold = false`` re-checked in the
   UPDATE, so a hold committed meanwhile wins and ``set_hold`` refuses a marked copy).
2. the caller (``access.subjects``) writes the plan to the erasure ledger, *before* anything
   is destroyed: a failed ledger write aborts the erasure.
3. *execute*: held copies under a doomed key get their data key re-wrapped under the number's
   hold key (and their recording's sealed number re-sealed), so they stay readable; every
   version of each unheld copy's object goes (the one its row names, or all its key's listed
   when it names none: ``ObjectStore.delete_located``), then its row, then each recording left without
   a copy; the caller's quarantined dead letters are purged; last, the keys are destroyed.

``replay`` runs the same steps for a ledger entry against a catalog restored from a backup:
keys destroyed again, rows deleted again, held copies kept readable. It matches by key,
recording and copy ids only, so calls stored after the erasure (under fresh keys) are safe.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from .catalog import tables as t
from .keys import CALLER, HOLD, CallerKey, KeyRing
from .ledger import LedgerEntry
from .objectstore import ObjectStore
from .transit import Quarantine

_r, _c = t.recordings, t.copies
_CHUNK = 1000


def chunks(ids: list) -> list[list]:
    """``ids`` in lists of at most ``_CHUNK``: an IN list a statement can take."""
    return [ids[i:i + _CHUNK] for i in range(0, len(ids), _CHUNK)]


@dataclass
class ShredPlan:
    tenant: str
    key_ids: list[uuid.UUID]
    recordings: dict[uuid.UUID, sa.RowMapping]
    held: list[sa.RowMapping] = field(default_factory=list)
    doomed: list[sa.RowMapping] = field(default_factory=list)
    number_hashes: list[str] = field(default_factory=list)
    purged_dead_letters: int = 0  # set by ``execute``

    @property
    def kept_recordings(self) -> set[uuid.UUID]:
        return {c["recording_id"] for c in self.held}

    @property
    def doomed_recordings(self) -> list[uuid.UUID]:
        kept = self.kept_recordings
        return [rid for rid in self.recordings if rid not in kept]

    @property
    def empty(self) -> bool:
        return not (self.key_ids or self.recordings or self.held or self.doomed)

    def ledger_entry(self) -> LedgerEntry:
        return LedgerEntry(tenant=self.tenant, key_ids=[str(k) for k in self.key_ids],
                           recording_ids=[str(r) for r in self.doomed_recordings],
                           copy_ids=[str(c["id"]) for c in self.doomed], number_hashes=list(self.number_hashes),
                           kept_copy_ids=[str(c["id"]) for c in self.held])


def remember(conn: sa.Connection, entry: LedgerEntry, *, at: datetime) -> int:
    """Keep what ``entry`` erased (its numbers' keyed hashes, its recording ids) in ``erasures``,
    where ingest refuses a call it covers that arrives later; nothing when the entry's rows are
    there already (a replay of an erasure the catalog kept). Returns the rows written."""
    e = t.erasures.c
    if conn.execute(sa.select(sa.exists().where(e.ledger_entry == entry.id))).scalar():
        return 0
    base = {"tenant_id": entry.tenant, "erased_at": at, "ledger_entry": entry.id}
    rows = ([{**base, "id": uuid.uuid4(), "number_hash": h, "recording_id": None}
             for h in dict.fromkeys(entry.number_hashes)]
            + [{**base, "id": uuid.uuid4(), "number_hash": None, "recording_id": uuid.UUID(r)}
               for r in dict.fromkeys(entry.recording_ids)])
    if rows:
        conn.execute(t.erasures.insert(), rows)
    return len(rows)


def erased_at(entry: LedgerEntry, default: datetime) -> datetime:
    """When the entry's erasure was made (``ErasureLedger.record`` writes it)."""
    return datetime.fromisoformat(entry.at) if entry.at else default


def live_caller_keys(conn: sa.Connection, tenant: str, number_hashes: list[str]) -> list[uuid.UUID]:
    return list(conn.execute(sa.select(t.caller_keys.c.id).where(
        t.caller_keys.c.tenant_id == tenant, t.caller_keys.c.number_hash.in_(number_hashes),
        t.caller_keys.c.purpose == CALLER, t.caller_keys.c.wrapped_key.is_not(None))).scalars())


def plan(conn: sa.Connection, *, tenant: str, now: datetime, key_ids: list[uuid.UUID],
         number_hashes: list[str] = (), recording_ids: list[uuid.UUID] = (),
         copy_ids: list[uuid.UUID] = (), erased_copy_ids: list[uuid.UUID] = (),
         kept_copy_ids: list[uuid.UUID] = ()) -> ShredPlan:
    """Find and lock what the doomed keys protect; mark the unheld copies for deletion.

    ``erased_copy_ids`` (replay only): copies the ledger says were erased unheld. A restored
    catalog may show a hold on them that was released before the erasure; its evidence is
    gone, so the stale hold is cleared rather than kept pointing at nothing. ``kept_copy_ids``
    (replay only): copies the erasure kept under hold; kept again (under the hold key) even if
    their hold was released since, as the live catalog did."""
    live_keys = list(conn.execute(sa.select(t.caller_keys.c.id).where(
        t.caller_keys.c.id.in_(key_ids), t.caller_keys.c.wrapped_key.is_not(None)))
        .scalars()) if key_ids else []
    match = [_r.c.caller_key_id.in_(key_ids)] if key_ids else []
    if number_hashes:
        match.append(_r.c.number_hash.in_(list(number_hashes)))
    if recording_ids:
        match.append(_r.c.id.in_(list(recording_ids)))
    via_copies = sa.select(_c.c.recording_id).where(sa.or_(
        _c.c.caller_key_id.in_(key_ids or [uuid.UUID(int=0)]), _c.c.id.in_(list(copy_ids) or [uuid.UUID(int=0)])))
    match.append(_r.c.id.in_(via_copies))
    query = sa.select(_r).where(_r.c.tenant_id == tenant, sa.or_(*match)).order_by(_r.c.id)
    recordings = {row["id"]: row for row in conn.execute(query).mappings()}
    result = ShredPlan(tenant, live_keys, recordings, number_hashes=list(number_hashes))
    if not recordings:
        return result
    copies_q = sa.select(_c).where(_c.c.recording_id.in_(list(recordings))).order_by(_c.c.id)
    if conn.dialect.name == "postgresql":
        copies_q = copies_q.with_for_update()
    copies = list(conn.execute(copies_q).mappings())
    erased = set(erased_copy_ids)
    stale = [c["id"] for c in copies if c["hold"] and c["id"] in erased]
    if stale:  # erased while unheld; only a restored (older) catalog can still call them held
        for part in chunks(stale):
            conn.execute(_c.update().where(_c.c.id.in_(part)).values(hold=False, hold_reason=None, hold_actor=None,
                                                                    hold_at=None))
        copies = list(conn.execute(copies_q).mappings())
    kept = set(kept_copy_ids)
    unheld = [c["id"] for c in copies if not c["hold"] and c["id"] not in kept]
    marked: set[uuid.UUID] = set()
    for part in chunks(unheld):
        marked |= set(conn.execute(_c.update().where(_c.c.id.in_(part), _c.c.hold == sa.false())
                                   .values(deleting_at=now).returning(_c.c.id)).scalars())
    for c in copies:
        (result.doomed if c["id"] in marked else result.held).append(c)
    if len(result.held) != sum(1 for c in copies if c["hold"] or c["id"] in kept):  # a hold won the race
        fresh = {row["id"]: row for row in conn.execute(sa.select(_c).where(
            _c.c.id.in_([c["id"] for c in result.held]))).mappings()}
        result.held = [fresh[c["id"]] for c in result.held]
    return result


def execute(conn: sa.Connection, store: ObjectStore, keys: KeyRing, shred: ShredPlan, *, now: datetime) -> int:
    """Keep the held readable, delete the rest, destroy the keys; returns keys destroyed."""
    doomed_keys = set(shred.key_ids)
    hold_keys: dict[str, CallerKey] = {}

    def hold_key(recording: sa.RowMapping) -> CallerKey:
        number_hash = recording["number_hash"]
        if number_hash not in hold_keys:
            hold_keys[number_hash] = keys.caller_key(conn, tenant=shred.tenant, number_hash=number_hash, purpose=HOLD)
        return hold_keys[number_hash]

    for c in shred.held:
        if c["caller_key_id"] in doomed_keys:
            keys.move_copy(conn, c, hold_key(shred.recordings[c["recording_id"]]))
    for rid in shred.kept_recordings:
        rec = shred.recordings[rid]
        if rec["caller_key_id"] in doomed_keys:
            keys.move_recording(conn, rec, hold_key(rec), e164=keys.open_number(conn, rec) or "")
    store.delete_located((c["bucket"], c["object_key"], c["object_version"]) for c in shred.doomed)
    for part in chunks([c["id"] for c in shred.doomed]):
        conn.execute(_c.delete().where(_c.c.id.in_(part), _c.c.hold == sa.false(), _c.c.deleting_at.is_not(None)))
    for part in chunks(shred.doomed_recordings):
        conn.execute(_r.delete().where(_r.c.id.in_(part), ~sa.exists().where(_c.c.recording_id == _r.c.id)))
    # Dead letters of these callers (invalid or refused messages) become unreadable too.
    hashes = sorted(set(shred.number_hashes) | {r["number_hash"] for r in shred.recordings.values()})
    shred.purged_dead_letters = Quarantine.purge(conn, tenant=shred.tenant, number_hashes=hashes,
                                                 recording_ids=list(shred.recordings))
    return keys.destroy_ids(conn, list(doomed_keys), now=now)


def replay(conn: sa.Connection, store: ObjectStore, keys: KeyRing, entry: LedgerEntry, *,
           now: datetime) -> ShredPlan | None:
    """Apply a ledger entry again; None when the catalog already reflects it (the usual case).

    The caller's dead letters are purged again first: a restored catalog brings their keys back
    even when none of the caller's recordings is in it (a caller whose only call was refused);
    what the entry erased is kept in ``erasures`` again (``remember``), so ingest refuses it."""
    Quarantine.purge(conn, tenant=entry.tenant, number_hashes=list(entry.number_hashes),
                     recording_ids=[uuid.UUID(r) for r in entry.recording_ids])
    remember(conn, entry, at=erased_at(entry, now))
    shred = plan(conn, tenant=entry.tenant, now=now, key_ids=[uuid.UUID(k) for k in entry.key_ids],
                 recording_ids=[uuid.UUID(r) for r in entry.recording_ids],
                 copy_ids=[uuid.UUID(c) for c in entry.copy_ids],
                 erased_copy_ids=[uuid.UUID(c) for c in entry.copy_ids],
                 kept_copy_ids=[uuid.UUID(c) for c in entry.kept_copy_ids])
    if shred.empty:
        return None
    execute(conn, store, keys, shred, now=now)
    return shred


def restore_holds(conn: sa.Connection, states: dict[str, tuple[bool, str, str]], *, now: datetime) -> list[uuid.UUID]:
    """Bring each copy still in the catalog to its latest journalled hold state; the ids changed.

    A restored catalog lost the holds set (and kept the holds released) after its backup;
    the journal outside the catalog has them."""
    changed: list[uuid.UUID] = []
    ids = [uuid.UUID(c) for c in states]
    for part in chunks(ids):
        for row in conn.execute(sa.select(_c.c.id, _c.c.hold).where(_c.c.id.in_(part))).all():
            held, actor, at = states[str(row.id)]
            if row.hold == held:
                continue
            values = (dict(hold=True, hold_reason="re-applied from the hold journal after a catalog restore",
                           hold_actor=actor, hold_at=datetime.fromisoformat(at), deleting_at=None) if held
                      else dict(hold=False, hold_reason=None, hold_actor=None, hold_at=None))
            conn.execute(_c.update().where(_c.c.id == row.id).values(**values))
            changed.append(row.id)
    return changed
