"""Break-glass grants name the tiers they open.

Existing grants are backfilled to production only: that is what a break-glass listen has
been for (an incident on a call as captured), and least privilege prefers a grant that
opens too little (IT opens a new one, with its ticket, in a minute) to one that silently
opened monitoring, training and complaint extracts it never named. Grants last at most
``break_glass_max_minutes`` anyway, so the backfill concerns a few live grants at most.

Revision ID: 0006
Revises: 0004 (re-chained after 0005 at merge)
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN (no batch copy): NOT NULL with a constant default is fine on SQLite too,
    # and it renders in offline (--sql) mode.
    op.add_column("break_glass", sa.Column("tiers", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
                                           nullable=False, server_default=sa.text("'[\"production\"]'")))


def downgrade() -> None:
    op.drop_column("break_glass", "tiers")  # SQLite 3.35+ drops a column in place
