"""Standing restrictions: a restricted number's later recordings are restricted too.

- ``restrictions``: one row per number (keyed hash) whose restriction stands, until it is lifted.
  Ingest restricts a call of such a number as it stores it; a rectification onto one restricts
  the recording. The rows of restrictions made before this revision come from the erasure
  ledger's subject journal: its replay (the worker's start, ``storage reconcile``) writes them.
- ``recordings.restricted_by``: the number (keyed hash) whose restriction restricts the recording;
  a lift of that number ends it, also after the recording was rectified onto another number.
  Recordings restricted before this revision: their own number's.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("recordings", sa.Column("restricted_by", sa.String(64), nullable=True))
    op.execute(sa.text("UPDATE recordings SET restricted_by = number_hash WHERE restricted"))
    op.create_table(
        "restrictions",
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("number_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_restrictions_tenant_id_tenants")),
        sa.PrimaryKeyConstraint("tenant_id", "number_hash", name=op.f("pk_restrictions")),
    )


def downgrade() -> None:
    op.drop_table("restrictions")
    with op.batch_alter_table("recordings") as batch:
        batch.drop_column("restricted_by")
