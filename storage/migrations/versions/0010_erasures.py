"""What erasures reached, so that a call they cover arriving late is refused; a push's ``erased``.

- ``erasures``: one row per number (keyed hash) or recording id an erasure reached, with its
  time and its erasure ledger entry's id. Ingest refuses a call whose recording id was erased (a
  message delivered again, replayed from the dead letters, pushed again by its producer) or whose
  number was erased after the call started. The rows of erasures made before this revision come
  from the erasure ledger: its replay (the worker's start, ``storage reconcile``) writes the rows
  an entry lacks.
- ``pushes.outcome`` also takes ``erased-on-arrival``: a pushed call refused for that reason. A new value is
  a new CHECK constraint: dropped and made again on PostgreSQL; on SQLite the table is copied
  (batch mode; nothing references ``pushes``).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

DOORS = ("http", "s3-drop")
OLD_OUTCOMES = ("stored", "suppressed", "expired-on-arrival", "dead-lettered")
NEW_OUTCOMES = (*OLD_OUTCOMES, "erased-on-arrival")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _pushes(outcomes: tuple[str, ...]) -> sa.Table:
    """The pushes table as 0007 made it, with the outcome check of ``outcomes``."""
    return sa.Table(
        "pushes", sa.MetaData(),
        sa.Column("recording_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("external_id", sa.String(200), nullable=False),
        sa.Column("door", sa.String(32), nullable=False),
        sa.Column("principal", sa.String(100), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=True),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(_in("door", DOORS), name="ck_pushes_door"),
        sa.CheckConstraint(_in("outcome", outcomes), name="ck_pushes_outcome"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="fk_pushes_tenant_id_tenants"),
        sa.PrimaryKeyConstraint("recording_id", name="pk_pushes"),
        sa.UniqueConstraint("tenant_id", "external_id", name="uq_pushes_tenant_id_external_id"),
    )


def _set_outcomes(outcomes: tuple[str, ...]) -> None:
    if op.get_context().dialect.name != "sqlite":
        op.drop_constraint(op.f("ck_pushes_outcome"), "pushes", type_="check")
        op.create_check_constraint(op.f("ck_pushes_outcome"), "pushes", _in("outcome", outcomes))
        return
    with op.batch_alter_table("pushes", recreate="always", copy_from=_pushes(outcomes)):
        pass


def upgrade() -> None:
    op.create_table(
        "erasures",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("number_hash", sa.String(64), nullable=True),
        sa.Column("recording_id", sa.Uuid(), nullable=True),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ledger_entry", sa.String(64), nullable=False),
        sa.CheckConstraint("(number_hash IS NULL) <> (recording_id IS NULL)",
                           name=op.f("ck_erasures_number_or_recording")),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_erasures_tenant_id_tenants")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_erasures")),
    )
    op.create_index("ix_erasures_tenant_number", "erasures", ["tenant_id", "number_hash"])
    op.create_index("ix_erasures_recording", "erasures", ["recording_id"])
    op.create_index("ix_erasures_ledger_entry", "erasures", ["ledger_entry"])
    _set_outcomes(NEW_OUTCOMES)


def downgrade() -> None:
    op.execute(sa.text("UPDATE pushes SET outcome = 'suppressed' WHERE outcome = 'erased-on-arrival'"))  # the nearest older state: refused for the caller's rights
    _set_outcomes(OLD_OUTCOMES)
    op.drop_index("ix_erasures_ledger_entry", table_name="erasures")
    op.drop_index("ix_erasures_recording", table_name="erasures")
    op.drop_index("ix_erasures_tenant_number", table_name="erasures")
    op.drop_table("erasures")
