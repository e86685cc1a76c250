"""Catalog reads of the API: a copy with its recording, a recording with its live copies.

A copy the sweeper has started deleting (``deleting_at`` set) is gone as far as the API is
concerned: it is neither listed, nor played, nor held. A copy merely past its expiry is still
listed; its target carries the expiry and the hold so the policy refuses its audio.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Mapping

import sqlalchemy as sa

from storage.catalog import tables as t
from storage.copies import plaintext_length
from storage.keys import caller_key_columns, joined_caller_key

from ..exceptions import NotFound
from ..policy import Target

_r, _c = t.recordings, t.copies


def target(recording: sa.RowMapping, copy: sa.RowMapping) -> Target:
    """What the policy rules on: the recording's scope and restriction, the copy's tier, and the
    copy's own clock and hold (expired and unheld: no audio, even before the sweep)."""
    return Target(tenant=recording["tenant_id"], tier=copy["tier"], agent_id=recording["agent_id"],
                  team_id=recording["team_id"], restricted=bool(recording["restricted"]),
                  recording_id=str(recording["id"]), expires_at=copy["expires_at"], held=bool(copy["hold"]))


@dataclass(frozen=True)
class CopyOf:
    """One live copy and the recording it belongs to."""

    copy: Mapping[str, Any]
    recording: Mapping[str, Any]
    caller_key: Mapping[str, Any] | None = None  # the copy's caller_keys row (None: none, destroyed)

    @property
    def target(self) -> Target:
        return target(self.recording, self.copy)

    @property
    def audio_bytes(self) -> int:
        return plaintext_length(self.copy["size_bytes"], self.copy["frame_size"])


def not_found(kind: str, ident: uuid.UUID | str) -> NotFound:
    """The one answer for a recording or copy that does not exist *and* for one outside the
    caller's tenants (DESIGN.md §Roles): same status, same body, so no id can be probed. The
    body does not repeat the id (the caller has it): two unknown ids answer byte for byte alike."""
    return NotFound(f"{kind} not found", hint="it does not exist, or no longer (expired or erased)")


def recording_not_found(recording_id: uuid.UUID | str) -> NotFound:
    return not_found("recording", recording_id)


def copy_not_found(copy_id: uuid.UUID | str) -> NotFound:
    return not_found("copy", copy_id)


def recording(conn: sa.Connection, recording_id: uuid.UUID) -> sa.RowMapping | None:
    return conn.execute(sa.select(_r).where(_r.c.id == recording_id)).mappings().first()


def live_copies(conn: sa.Connection, recording_ids: list[uuid.UUID], tier: str | None = None) -> list[sa.RowMapping]:
    if not recording_ids:
        return []
    query = sa.select(_c).where(_c.c.recording_id.in_(recording_ids), _c.c.deleting_at.is_(None))
    if tier is not None:
        query = query.where(_c.c.tier == tier)
    return list(conn.execute(query.order_by(_c.c.created_at, _c.c.id)).mappings())


_RECORDING_COLUMNS = [col.label(f"r__{col.name}") for col in _r.c]
# Built once: every playback request reads it, and a statement object keeps its cache key.
_COPY_OF = (sa.select(_c, *_RECORDING_COLUMNS, *caller_key_columns())
            .join(_r, _r.c.id == _c.c.recording_id)
            .outerjoin(t.caller_keys, t.caller_keys.c.id == _c.c.caller_key_id)
            .where(_c.c.id == sa.bindparam("copy_id"), _c.c.deleting_at.is_(None)))


def copy_of(conn: sa.Connection, copy_id: uuid.UUID) -> CopyOf | None:
    """The live copy, its recording and its caller key's row (for its audio), in one statement."""
    row = conn.execute(_COPY_OF, {"copy_id": copy_id}).mappings().first()
    if row is None:
        return None
    copy = {col.name: row[col.name] for col in _c.c}
    rec = {col.name: row[f"r__{col.name}"] for col in _r.c}
    return CopyOf(copy, rec, joined_caller_key(row))


def all_tenants(conn: sa.Connection) -> list[str]:
    return list(conn.execute(sa.select(t.tenants.c.id).order_by(t.tenants.c.id)).scalars())
