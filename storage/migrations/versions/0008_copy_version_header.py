"""What a copy's reads and deletions need without asking the object store first.

- ``copies.object_version``: the version id the object store gave the copy's object when it was
  written. Deletion names (key, version) in DeleteObjects batches, so no version is listed first.
  NULL for copies written before this revision (or on a store without versioning): those are
  deleted the old way, listing their versions.
- ``copies.header``: the copy's encryption header (the bytes before the first frame), so a
  ranged read needs one GET for its frames, not a second one for the header. NULL for older
  copies: the header is read from the object.
- ``ix_copies_held_expires``: the sweep's opening count of held-and-expired copies reads a
  small partial index instead of the whole table.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("copies") as batch:
        batch.add_column(sa.Column("object_version", sa.String(255), nullable=True))
        batch.add_column(sa.Column("header", sa.LargeBinary(), nullable=True))
    op.create_index("ix_copies_held_expires", "copies", ["expires_at"],
                    postgresql_where=sa.text("hold = true"), sqlite_where=sa.text("hold = 1"))


def downgrade() -> None:
    op.drop_index("ix_copies_held_expires", table_name="copies")
    with op.batch_alter_table("copies") as batch:
        batch.drop_column("header")
        batch.drop_column("object_version")
