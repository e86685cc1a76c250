"""Data in transit: per-tenant ingest key pairs, and the keys of quarantined dead letters.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ingest_keys",
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("public_key", sa.LargeBinary, nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary, nullable=True),
        sa.Column("master_version", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("use_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("destroy_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("destroyed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("(wrapped_key IS NULL) = (destroyed_at IS NOT NULL)",
                           name=op.f("ck_ingest_keys_destroyed_means_no_key")),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_ingest_keys_tenant_id_tenants")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ingest_keys")),
    )
    op.create_index(op.f("ix_ingest_keys_tenant_id_use_until"), "ingest_keys", ["tenant_id", "use_until"])
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=True),
        sa.Column("number_hash", sa.String(64), nullable=True),
        sa.Column("recording_id", sa.Uuid, nullable=True),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary, nullable=False),
        sa.Column("master_version", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letters")),
    )
    op.create_index(op.f("ix_dead_letters_tenant_id_number_hash"), "dead_letters", ["tenant_id", "number_hash"])
    op.create_index(op.f("ix_dead_letters_expires_at"), "dead_letters", ["expires_at"])


def downgrade() -> None:
    op.drop_table("dead_letters")
    op.drop_table("ingest_keys")
