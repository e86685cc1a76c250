"""Data-subject rights, requested by phone number (several per request, any usual format).

- objection: the number joins the suppression list (keyed hash) and its unheld copies are erased;
- access / portability: every recording is copied into a ``complaint-extract`` copy (36 months)
  with reason ``gdpr-request:<id>``; the ZIP (audio + JSON and CSV manifest) is rendered from
  those copies when downloaded, so the export is stored once, encrypted, with its own clock.
  The ZIP is streamed (``stream_export_zip``): each extract decrypted as it is read, written
  as a stored entry, so its memory does not grow with the number or length of recordings;
- erasure: every unheld copy (all tiers, all object versions) deleted, recordings left without
  a copy deleted, and the caller keys destroyed, found by key id (``storage.erasure``); written
  first to the erasure ledger, so a restored backup is erased again. Held copies survive: their
  data keys are first re-wrapped under a separate hold key;
- rectification: corrects the number, agent or team of recordings, audited before/after (numbers
  as keyed hashes only); a corrected number moves the recording and all its copies, held or
  not, under the new number's key;
- restriction: flags every recording of the number, also those stored or rectified onto it while it
  stands (``storage.restrictions``); only internal control may play them until it is lifted.

Every step writes a PII-free audit entry (ids, counts, hashes; never a number or audio).
"""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
import zipfile
from contextlib import closing, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO, Callable, ContextManager, Iterator

import sqlalchemy as sa

from core.phone import normalise_number, number_forms
from core.vocabulary import AuditAction
from ingest.schema import ACTOR_ID_PATTERN
from lifecycle.copies import create_copy
from lifecycle.exceptions import CopyNotAllowed
from storage import audit, erasure, restrictions
from storage.catalog import tables as t
from storage.copies import plaintext_length, stream_copy
from storage.keys import KeyRing
from storage.ledger import ErasureLedger
from storage.objectstore import ObjectStore
from storage.suppressions import suppress

from .exceptions import BadRequest, NotFound

GDPR_REASON = "gdpr-request:"


@dataclass(frozen=True)
class Actor:
    id: str
    role: str = "internal-control"


def hashes(keys: KeyRing, tenant: str, numbers: list[str]) -> list[str]:
    """The keyed hashes of the numbers (any usual format; duplicates folded), in order: of every
    form a recording of each may be stored under (``core.phone.number_forms``)."""
    if not numbers:
        raise BadRequest("give at least one phone number")
    return list(dict.fromkeys(keys.number_hash(tenant, form) for n in numbers for form in number_forms(n)))


def _recordings(conn: sa.Connection, tenant: str, number_hashes: list[str]) -> list[sa.RowMapping]:
    return conn.execute(sa.select(t.recordings).where(
        t.recordings.c.tenant_id == tenant, t.recordings.c.number_hash.in_(number_hashes))
        .order_by(t.recordings.c.started_at)).mappings().all()


def _copies(conn: sa.Connection, recording_ids: list[uuid.UUID]) -> list[sa.RowMapping]:
    if not recording_ids:
        return []
    return conn.execute(sa.select(t.copies).where(t.copies.c.recording_id.in_(recording_ids))
                        .order_by(t.copies.c.created_at)).mappings().all()


# -- erasure and objection -----------------------------------------------------------------

@dataclass
class ErasureReport:
    erased_recordings: list[str] = field(default_factory=list)
    erased_copies: list[dict] = field(default_factory=list)   # {copy_id, recording_id, tier}
    kept_copies: list[dict] = field(default_factory=list)     # {copy_id, recording_id, tier, hold_reason}
    keys_destroyed: int = 0

    def as_dict(self) -> dict:
        return {"erased_recordings": self.erased_recordings, "erased_copies": self.erased_copies,
                "kept_copies": self.kept_copies, "keys_destroyed": self.keys_destroyed}


def erase(conn: sa.Connection, store: ObjectStore, keys: KeyRing, ledger: ErasureLedger, *, tenant: str,
          numbers: list[str], actor: Actor, now: datetime, action: str = "subject:erase") -> ErasureReport:
    """Erase a caller: the copies wrapped by their keys and the recordings of their number.

    The plan (ids and hashes only) goes to the erasure ledger before anything is destroyed,
    so a catalog restored from a backup is erased again by its replay (``storage.erasure``)."""
    number_hashes = hashes(keys, tenant, numbers)
    shred = erasure.plan(conn, tenant=tenant, now=now, key_ids=erasure.live_caller_keys(conn, tenant, number_hashes),
                         number_hashes=number_hashes)
    return _shred(conn, store, keys, ledger, shred, actor=actor, now=now, action=action, target_type="subject",
                  target_id=",".join(h[:16] for h in number_hashes))


def erase_recordings(conn: sa.Connection, store: ObjectStore, keys: KeyRing, ledger: ErasureLedger, *, tenant: str,
                     recording_ids: list[uuid.UUID], actor: Actor, now: datetime) -> ErasureReport:
    """Erase recordings by id: the way to erase a call whose number was withheld (no request by
    number can reach it). A key used by these recordings only (a withheld call's own key) is
    destroyed; a number's key still protecting its other calls is kept."""
    if not recording_ids:
        raise BadRequest("give at least one recording id")
    ids = list(dict.fromkeys(recording_ids))
    found = conn.execute(sa.select(t.recordings.c.id, t.recordings.c.caller_key_id).where(
        t.recordings.c.tenant_id == tenant, t.recordings.c.id.in_(ids))).all()
    if len(found) != len(ids):
        raise NotFound("some recordings do not exist in this tenant (expired or erased?)")
    used = {r.caller_key_id for r in found} | set(conn.execute(sa.select(t.copies.c.caller_key_id).where(
        t.copies.c.recording_id.in_(ids))).scalars())
    shared = set(conn.execute(sa.select(t.recordings.c.caller_key_id).where(
        t.recordings.c.caller_key_id.in_(used), t.recordings.c.id.not_in(ids))).scalars()) | set(conn.execute(
        sa.select(t.copies.c.caller_key_id).where(t.copies.c.caller_key_id.in_(used),
                                                  t.copies.c.recording_id.not_in(ids))).scalars())
    own = [k for k in used if k not in shared]
    shred = erasure.plan(conn, tenant=tenant, now=now, key_ids=own, recording_ids=ids)
    return _shred(conn, store, keys, ledger, shred, actor=actor, now=now, action=AuditAction.SUBJECT_ERASE,
                  target_type="recording", target_id=",".join(str(i) for i in ids)[:200])


def _shred(conn: sa.Connection, store: ObjectStore, keys: KeyRing, ledger: ErasureLedger, shred: erasure.ShredPlan,
           *, actor: Actor, now: datetime, action: str, target_type: str, target_id: str) -> ErasureReport:
    """The ledger first (a failed write aborts), then the shredding, then one audit entry."""
    entry = shred.ledger_entry()
    ledger_key = ledger.record(entry, now=now)
    erasure.remember(conn, entry, at=now)  # a call it covers that arrives later is refused (ingest)
    report = ErasureReport(keys_destroyed=erasure.execute(conn, store, keys, shred, now=now))
    report.kept_copies = [{"copy_id": str(c["id"]), "recording_id": str(c["recording_id"]), "tier": c["tier"],
                           "hold_reason": c["hold_reason"]} for c in shred.held]
    report.erased_copies = [{"copy_id": str(c["id"]), "recording_id": str(c["recording_id"]), "tier": c["tier"]}
                            for c in shred.doomed]
    report.erased_recordings = [str(r) for r in shred.doomed_recordings]
    audit.append(conn, tenant=shred.tenant, actor=actor.id, role=actor.role, action=action, target_type=target_type,
                 target_id=target_id, outcome="done", at=now, anchor=True,
                 detail={"tenant": shred.tenant, "erased_recordings": len(report.erased_recordings),
                         "erased_copies": len(shred.doomed), "kept_held_copies": len(shred.held),
                         "keys_destroyed": report.keys_destroyed, "dead_letters_purged": shred.purged_dead_letters,
                         "ledger_entry": ledger_key.rsplit("/", 1)[-1]})
    return report


def object_to_recording(conn: sa.Connection, store: ObjectStore, keys: KeyRing, ledger: ErasureLedger, *,
                        tenant: str, numbers: list[str], actor: Actor, now: datetime) -> ErasureReport:
    """The number is never recorded again, and what exists (unheld) is erased. Journalled in the
    ledger first (a failed write aborts), so a restored catalog keeps refusing the number."""
    number_hashes = hashes(keys, tenant, numbers)
    ledger.record_subject("object", tenant=tenant, number_hashes=number_hashes, actor=actor.id, now=now)
    for number_hash in number_hashes:
        suppress(conn, tenant=tenant, number_hash=number_hash, actor=actor.id, now=now)
    return erase(conn, store, keys, ledger, tenant=tenant, numbers=numbers, actor=actor, now=now,
                 action=AuditAction.SUBJECT_OBJECT)


# -- restriction ---------------------------------------------------------------------------

def restrict(conn: sa.Connection, keys: KeyRing, ledger: ErasureLedger, *, tenant: str, numbers: list[str],
             actor: Actor, now: datetime, lift: bool = False) -> int:
    """Mark every recording of the numbers restricted (or lift it). Journalled in the ledger first
    (a failed write aborts), so a restored catalog gets the restriction, or its lift, back."""
    number_hashes = hashes(keys, tenant, numbers)
    # The restriction stands for the number, so a call stored or a recording rectified onto it later
    # is restricted too (``storage.restrictions``). The lock, taken before the journal, keeps a call
    # being stored meanwhile in, and journals two requests of a number in the order they commit.
    restrictions.lock_numbers(conn, tenant, number_hashes)
    ledger.record_subject("lift" if lift else "restrict", tenant=tenant, number_hashes=number_hashes,
                          actor=actor.id, now=now)
    r = t.recordings.c
    if lift:  # what these numbers' restriction restricted, wherever rectification has moved it since
        restrictions.lift(conn, tenant=tenant, number_hashes=number_hashes)
        changed = conn.execute(t.recordings.update().where(r.tenant_id == tenant, r.restricted_by.in_(number_hashes))
                               .values(restricted=False, restricted_at=None, restricted_by=None)).rowcount
    else:
        restrictions.stand(conn, tenant=tenant, since=dict.fromkeys(number_hashes, now), actor=actor.id)
        changed = conn.execute(t.recordings.update().where(r.tenant_id == tenant, r.number_hash.in_(number_hashes))
                               .values(restricted=True, restricted_at=now, restricted_by=r.number_hash)).rowcount
    audit.append(conn, tenant=tenant, actor=actor.id, role=actor.role,
                 action=AuditAction.SUBJECT_LIFT if lift else AuditAction.SUBJECT_RESTRICT,
                 target_type="subject", target_id=",".join(h[:16] for h in number_hashes), outcome="done", at=now,
                 detail={"tenant": tenant, "recordings": changed})
    return changed


# -- rectification -------------------------------------------------------------------------

def rectify_numbers(conn: sa.Connection, keys: KeyRing, *, tenant: str, numbers: list[str], actor: Actor,
                    now: datetime, caller_number: str | None = None, agent_id: str | None = None,
                    team_id: str | None = None) -> int:
    """Rectify every recording of ``numbers`` (the request names the subject by number)."""
    ids = [r["id"] for r in _recordings(conn, tenant, hashes(keys, tenant, numbers))]
    if not ids:
        return 0
    return rectify(conn, keys, tenant=tenant, recording_ids=ids, actor=actor, now=now, caller_number=caller_number,
                   agent_id=agent_id, team_id=team_id)


def rectify(conn: sa.Connection, keys: KeyRing, *, tenant: str, recording_ids: list[uuid.UUID], actor: Actor,
            now: datetime, caller_number: str | None = None, agent_id: str | None = None,
            team_id: str | None = None) -> int:
    """Correct metadata; a new number moves the recording and *all* its copies, held or not,
    under the new number's key (an erasure of either number then finds them by key)."""
    if caller_number is None and agent_id is None and team_id is None:
        raise BadRequest("nothing to rectify: give a number, an agent or a team")
    for name, value in (("agent", agent_id), ("team", team_id)):
        if value is not None and not re.fullmatch(ACTOR_ID_PATTERN, value):
            raise BadRequest(f"{name} id {value!r} is not one telephony could send",
                             hint="1 to 128 letters, digits or . _ : @ - (as in message schema v1)")
    rows = conn.execute(sa.select(t.recordings).where(t.recordings.c.tenant_id == tenant,
                                                      t.recordings.c.id.in_(recording_ids))).mappings().all()
    if len(rows) != len(set(recording_ids)):
        raise NotFound("some recordings do not exist in this tenant (expired or erased?)")
    new_e164 = normalise_number(caller_number) if caller_number is not None else None
    if new_e164 is not None:  # every number it touches locked at once, in one order, before any write
        restrictions.lock_numbers(conn, tenant, {r["number_hash"] for r in rows} | {keys.number_hash(tenant, new_e164)})
    for row in rows:
        changes: dict = {}
        before: dict = {}
        after: dict = {}
        new_hash = keys.number_hash(tenant, new_e164) if new_e164 is not None else None
        if new_hash is not None and new_hash != row["number_hash"]:
            _move_keys(conn, keys, tenant, row, new_hash, new_e164)
            changes.update(number_hash=new_hash)
            before["number_hash"], after["number_hash"] = row["number_hash"][:16], new_hash[:16]
            # Onto a restricted number, the recording is restricted by it. Off one, it stays restricted
            # by the old number until that number's lift: only a lift ends a restriction (the subject
            # is told first, GDPR art. 18(3)).
            if conn.execute(sa.select(restrictions.standing(tenant, new_hash))).scalar():
                changes.update(restricted=True, restricted_by=new_hash,
                               restricted_at=row["restricted_at"] if row["restricted"] else now)
                if not row["restricted"]:
                    before["restricted"], after["restricted"] = False, True
        for name, value in (("agent_id", agent_id), ("team_id", team_id)):
            if value is not None and value != row[name]:
                changes[name] = value
                before[name], after[name] = row[name], value
        if changes:
            conn.execute(t.recordings.update().where(t.recordings.c.id == row["id"]).values(**changes))
        audit.append(conn, tenant=tenant, actor=actor.id, role=actor.role, action=AuditAction.SUBJECT_RECTIFY,
                     target_type="recording",
                     target_id=str(row["id"]), outcome="done", at=now, detail={"before": before, "after": after})
    return len(rows)


def _move_keys(conn: sa.Connection, keys: KeyRing, tenant: str, recording: sa.RowMapping, new_hash: str,
               new_e164: str) -> None:
    new_key = keys.caller_key(conn, tenant=tenant, number_hash=new_hash)
    for c in _copies(conn, [recording["id"]]):
        keys.move_copy(conn, c, new_key)
    keys.move_recording(conn, recording, new_key, e164=new_e164)


# -- access and portability ------------------------------------------------------------------

@dataclass
class ExportResult:
    request_id: str
    recordings: int
    copies: list[str]
    skipped_expired: int = 0  # recordings whose every copy is past expiry (awaiting the sweep)


def export(conn: sa.Connection, store: ObjectStore, keys: KeyRing, *, tenant: str, numbers: list[str], actor: Actor,
           now: datetime, request_id: str | None = None) -> ExportResult:
    """Store the subject's recordings as 36-month ``complaint-extract`` copies of this request."""
    request_id = request_id or uuid.uuid4().hex[:12]
    number_hashes = hashes(keys, tenant, numbers)
    recordings = _recordings(conn, tenant, number_hashes)
    created, expired = [], 0
    for r in recordings:
        try:
            info = create_copy(conn, store, keys, recording_id=r["id"], tier="complaint-extract", actor=actor.id,
                               role=actor.role, now=now, reason=f"{GDPR_REASON}{request_id}")
        except CopyNotAllowed:  # every copy past its expiry, awaiting deletion: it is not kept for anyone
            expired += 1
            continue
        created.append(str(info.copy_id))
    audit.append(conn, tenant=tenant, actor=actor.id, role=actor.role, action=AuditAction.SUBJECT_EXPORT,
                 target_type="subject", target_id=",".join(h[:16] for h in number_hashes), outcome="done", at=now,
                 anchor=True,
                 detail={"tenant": tenant, "request_id": request_id, "recordings": len(created),
                         "skipped_expired": expired})
    return ExportResult(request_id, len(created), created, skipped_expired=expired)


MANIFEST_FIELDS = ("recording_id", "telephony_id", "call_started_at", "direction", "agent_id", "team_id",
                   "duration_ms", "copy_id", "tier", "retention_until", "audio_file")


@dataclass(frozen=True)
class ExportEntry:
    name: str            # audio/<call start>_<recording id>.<ext>: ids and times only
    copy_id: uuid.UUID   # the request's complaint-extract copy
    audio_bytes: int


@dataclass(frozen=True)
class ExportPlan:
    """What the ZIP of a stored export holds, from the catalog alone (no audio read yet)."""
    tenant: str
    request_id: str
    entries: list[ExportEntry]
    manifest: list[dict]  # one row per copy of each exported recording: a few hundred bytes each

    @property
    def audio_bytes(self) -> int:
        return sum(e.audio_bytes for e in self.entries)


def plan_export_zip(conn: sa.Connection, *, tenant: str, request_id: str) -> ExportPlan:
    """The audio files and manifest of a stored export: one audio file per recording (its
    extract of this request), and every copy (tier and retention date) of each exported recording."""
    extracts = conn.execute(sa.select(t.copies).join(
        t.recordings, t.recordings.c.id == t.copies.c.recording_id).where(
        t.recordings.c.tenant_id == tenant, t.copies.c.reason == f"{GDPR_REASON}{request_id}")
        .order_by(t.recordings.c.started_at, t.recordings.c.id)).mappings().all()
    if not extracts:
        raise NotFound(f"no export {request_id!r} in tenant {tenant!r} (expired or never made)")
    ids = [ex["recording_id"] for ex in extracts]
    recordings = {r["id"]: r for r in conn.execute(sa.select(t.recordings).where(t.recordings.c.id.in_(ids)))
                  .mappings()}
    copies: dict[uuid.UUID, list[sa.RowMapping]] = {}
    for c in _copies(conn, ids):
        copies.setdefault(c["recording_id"], []).append(c)
    entries, manifest = [], []
    for ex in extracts:
        rec = recordings[ex["recording_id"]]
        ext = "flac" if rec["audio_format"] == "flac" else "ogg"
        name = f"audio/{rec['started_at']:%Y%m%dT%H%M%SZ}_{rec['id']}.{ext}"
        entries.append(ExportEntry(name, ex["id"], plaintext_length(ex["size_bytes"], ex["frame_size"])))
        for c in copies[rec["id"]]:
            manifest.append({"recording_id": str(rec["id"]), "telephony_id": rec["external_id"],
                             "call_started_at": rec["started_at"].isoformat(), "direction": rec["direction"],
                             "agent_id": rec["agent_id"], "team_id": rec["team_id"] or "",
                             "duration_ms": rec["duration_ms"], "copy_id": str(c["id"]), "tier": c["tier"],
                             "retention_until": c["expires_at"].isoformat(),
                             "audio_file": name if c["id"] == ex["id"] else ""})
    return ExportPlan(tenant, request_id, entries, manifest)


EXPORT_CHUNK = 256 * 1024  # what the ZIP stream hands out at a time: few hand-offs, little memory


class _Pipe:
    """A write-only, unseekable file: what ``ZipFile`` writes is kept until ``take``n. Unseekable
    is what makes ``zipfile`` stream: sizes and CRC go in a data descriptor after each entry's
    data instead of being patched into its header."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._size = 0

    def write(self, data) -> int:
        self._parts.append(bytes(data))
        self._size += len(data)
        return len(data)

    def flush(self) -> None:
        pass

    def take(self, at_least: int = 0) -> Iterator[bytes]:
        """What was written, as one chunk, once there is ``at_least`` that much."""
        if self._parts and self._size >= at_least:
            parts, self._parts, self._size = self._parts, [], 0
            yield b"".join(parts)


def stream_export_zip(plan: ExportPlan, store: ObjectStore, keys: KeyRing,
                      connect: Callable[[], ContextManager[sa.Connection]]) -> Iterator[bytes]:
    """The ZIP of a plan, chunk by chunk (``EXPORT_CHUNK`` each), in memory of a few frames
    whatever the number and length of the recordings: each extract is streamed from the object
    store, authenticated and written as it is decrypted. Audio is already compressed: stored.

    ``connect`` lends a catalog connection for a moment per file (row and data key), never
    across object reads. The central directory is written last, only once every entry has
    decrypted and matched its checksum: if the iterator raises, what was yielded is a
    truncated ZIP, never a complete-looking one; a consumer must treat the error as "abort"."""
    pipe = _Pipe()
    zf = zipfile.ZipFile(pipe, "w", compression=zipfile.ZIP_STORED)  # never closed on error: no directory
    for entry in plan.entries:
        with connect() as conn:
            audio = stream_copy(conn, store, keys, entry.copy_id)
        with closing(audio), zf.open(entry.name, "w", force_zip64=True) as out:
            for frame in audio:
                out.write(frame)
                yield from pipe.take(EXPORT_CHUNK)
    zf.writestr("manifest.json", json.dumps({"request_id": plan.request_id, "tenant": plan.tenant,
                                             "copies": plan.manifest}, indent=2))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=MANIFEST_FIELDS)
    writer.writeheader()
    writer.writerows(plan.manifest)
    zf.writestr("manifest.csv", text.getvalue())
    zf.close()
    yield from pipe.take()


def write_export_zip(conn: sa.Connection, store: ObjectStore, keys: KeyRing, *, tenant: str, request_id: str,
                     out: BinaryIO) -> int:
    """Write the ZIP of a stored export to ``out`` as it streams, on ``conn`` (which may hold the
    export's uncommitted extracts); return the bytes written."""
    plan = plan_export_zip(conn, tenant=tenant, request_id=request_id)
    written = 0
    for chunk in stream_export_zip(plan, store, keys, lambda: nullcontext(conn)):
        written += out.write(chunk)
    return written


def render_export_zip(conn: sa.Connection, store: ObjectStore, keys: KeyRing, *, tenant: str,
                      request_id: str) -> bytes:
    """The whole ZIP in memory: for tests and small exports only (the API and the CLI stream)."""
    buf = io.BytesIO()
    write_export_zip(conn, store, keys, tenant=tenant, request_id=request_id, out=buf)
    return buf.getvalue()
