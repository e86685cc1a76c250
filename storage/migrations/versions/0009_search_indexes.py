"""Indexes for search at catalog scale: each filter is one index range in page order.

Search (``access/api/search.py``) selects the recordings a user may see newest first, by
``(started_at, id)`` descending, with a row-value keyset predicate ``(started_at, id) < (…)``.
Every filter the API offers gets an index ending in ``(started_at, id)``, which PostgreSQL reads
backwards to serve ORDER BY, LIMIT and the keyset predicate in one range scan:

- ``ix_recordings_tenant_started_id``: a tenant, no other filter (internal control, IT, time range);
- ``ix_recordings_tenant_number_started_id`` (replaces ``ix_recordings_tenant_number``, whose
  erasure and rectification lookups it serves as well);
- ``ix_recordings_tenant_agent_started_id`` and ``ix_recordings_tenant_team_started_id``
  (replace the ``…_started`` ones, which lacked the ``id`` tie-break): consultants, agent and
  team filters, managers and coaches;
- ``ix_recordings_started_id``: a group-level user across every tenant;
- ``ix_copies_live_recording_tier`` (partial: ``deleting_at IS NULL``): the per-recording
  ``EXISTS`` "has a live copy of a tier the user may see", answered from the index alone.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_REPLACED = (  # (old name, old columns, new name, new columns)
    ("ix_recordings_tenant_number", ["tenant_id", "number_hash"],
     "ix_recordings_tenant_number_started_id", ["tenant_id", "number_hash", "started_at", "id"]),
    ("ix_recordings_tenant_agent_started", ["tenant_id", "agent_id", "started_at"],
     "ix_recordings_tenant_agent_started_id", ["tenant_id", "agent_id", "started_at", "id"]),
    ("ix_recordings_tenant_team_started", ["tenant_id", "team_id", "started_at"],
     "ix_recordings_tenant_team_started_id", ["tenant_id", "team_id", "started_at", "id"]),
)
_ADDED = (
    ("ix_recordings_tenant_started_id", ["tenant_id", "started_at", "id"]),
    ("ix_recordings_started_id", ["started_at", "id"]),
)


def upgrade() -> None:
    for old, _old_columns, new, columns in _REPLACED:
        op.create_index(new, "recordings", columns)
        op.drop_index(old, table_name="recordings")
    for name, columns in _ADDED:
        op.create_index(name, "recordings", columns)
    op.create_index("ix_copies_live_recording_tier", "copies", ["recording_id", "tier"],
                    postgresql_where=sa.text("deleting_at IS NULL"), sqlite_where=sa.text("deleting_at IS NULL"))


def downgrade() -> None:
    op.drop_index("ix_copies_live_recording_tier", table_name="copies")
    for name, _columns in reversed(_ADDED):
        op.drop_index(name, table_name="recordings")
    for old, old_columns, new, _columns in reversed(_REPLACED):
        op.create_index(old, "recordings", old_columns)
        op.drop_index(new, table_name="recordings")
