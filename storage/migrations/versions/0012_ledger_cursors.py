"""Where each ledger replay starts: the worker's start no longer reads the whole ledger.

- ``ledger_cursors``: per journal of the erasure ledger (``erase``, ``hold``, ``subject``,
  ``policy``), the newest entry the last replay read and applied. The next replay lists the
  entries after it only. Empty after this revision: the first replay reads everything, as before.
- ``ix_pushes_settled_at``: the worker's sweep forgets pushes settled more than
  ``push_status_days`` ago.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ledger_cursors",
        sa.Column("journal", sa.String(16), nullable=False),
        sa.Column("last_key", sa.String(300), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("journal", name=op.f("pk_ledger_cursors")),
    )
    op.create_index("ix_pushes_settled_at", "pushes", ["settled_at"])


def downgrade() -> None:
    op.drop_index("ix_pushes_settled_at", table_name="pushes")
    op.drop_table("ledger_cursors")
