"""Catalog reads of the API: a copy with its recording, a recording with its live copies.

A copy the sweeper has started deleting (``deleting_at`` set) is gone as far as the API is
concerned: it is neither listed, nor played, nor held.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import sqlalchemy as sa

from storage.catalog import tables as t
from storage.copies import plaintext_length

from ..policy import Target

_r, _c = t.recordings, t.copies


def target(recording: sa.RowMapping, tier: str) -> Target:
    return Target(tenant=recording["tenant_id"], tier=tier, agent_id=recording["agent_id"],
                  team_id=recording["team_id"], restricted=bool(recording["restricted"]),
                  recording_id=str(recording["id"]))


@dataclass(frozen=True)
class CopyOf:
    """One live copy and the recording it belongs to."""

    copy: sa.RowMapping
    recording: sa.RowMapping

    @property
    def target(self) -> Target:
        return target(self.recording, self.copy["tier"])

    @property
    def audio_bytes(self) -> int:
        return plaintext_length(self.copy["size_bytes"], self.copy["frame_size"])


def recording(conn: sa.Connection, recording_id: uuid.UUID) -> sa.RowMapping | None:
    return conn.execute(sa.select(_r).where(_r.c.id == recording_id)).mappings().first()


def live_copies(conn: sa.Connection, recording_ids: list[uuid.UUID], tier: str | None = None) -> list[sa.RowMapping]:
    if not recording_ids:
        return []
    query = sa.select(_c).where(_c.c.recording_id.in_(recording_ids), _c.c.deleting_at.is_(None))
    if tier is not None:
        query = query.where(_c.c.tier == tier)
    return list(conn.execute(query.order_by(_c.c.created_at, _c.c.id)).mappings())


def copy_of(conn: sa.Connection, copy_id: uuid.UUID) -> CopyOf | None:
    row = conn.execute(sa.select(_c).where(_c.c.id == copy_id, _c.c.deleting_at.is_(None))).mappings().first()
    if row is None:
        return None
    rec = recording(conn, row["recording_id"])
    return CopyOf(row, rec) if rec is not None else None


def source_copy(conn: sa.Connection, recording_id: uuid.UUID) -> sa.RowMapping | None:
    """The copy a new copy is made from (as ``lifecycle.copies.create_copy`` chooses it):
    the production original if it still exists, else the longest-lived copy."""
    return conn.execute(sa.select(_c).where(_c.c.recording_id == recording_id, _c.c.deleting_at.is_(None))
                        .order_by((_c.c.tier == "production").desc(), _c.c.expires_at.desc())
                        .limit(1)).mappings().first()


def all_tenants(conn: sa.Connection) -> list[str]:
    return list(conn.execute(sa.select(t.tenants.c.id).order_by(t.tenants.c.id)).scalars())
