"""The initial catalog: tenants, keys, recordings and copies, users, audit trail.

Written out in full rather than generated from ``storage.catalog.tables`` at run time, so
this revision keeps meaning what it meant when later ones change the tables. Enums are
VARCHAR(32) + named CHECK constraints (see ``tables.string_enum``).

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TIERS = ("production", "monitoring", "training", "complaint-extract")
ROLES = ("consultant", "manager", "coach", "internal-control", "it")
DIRECTIONS = ("inbound", "outbound")
KEY_PURPOSES = ("caller", "hold")
TEAM_RELATIONS = ("member", "manager", "coach")
OUTCOMES = ("allowed", "denied", "done", "failed")


def _ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _hash(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.String(64), nullable=nullable)


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _enum(table: str, column: str, values: tuple[str, ...], constraint: str | None = None) -> sa.CheckConstraint:
    allowed = ", ".join(f"'{v}'" for v in values)
    return sa.CheckConstraint(f"{column} IN ({allowed})", name=op.f(f"ck_{table}_{constraint or column}"))

def upgrade() -> None:
    _create_tenants()
    _create_tenant_retention()
    _create_caller_keys()
    _create_recordings()
    _create_copies()
    _create_suppressions()
    _create_users()
    _create_team_memberships()
    _create_audit_events()
    _create_break_glass()


def _create_tenants() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenants")),
    )


def _create_tenant_retention() -> None:
    op.create_table(
        "tenant_retention",
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("tier", sa.String(32), nullable=False),
        sa.Column("months", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE",
                                name=op.f("fk_tenant_retention_tenant_id_tenants")),
        sa.PrimaryKeyConstraint("tenant_id", "tier", name=op.f("pk_tenant_retention")),
        _enum("tenant_retention", "tier", TIERS),
        sa.CheckConstraint("months > 0", name=op.f("ck_tenant_retention_months_positive")),
    )


def _create_caller_keys() -> None:
    op.create_table(
        "caller_keys",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        _hash("number_hash"),
        sa.Column("purpose", sa.String(32), server_default="caller", nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=True),
        _ts("created_at"),
        _ts("destroyed_at", nullable=True),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_caller_keys_tenant_id_tenants")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_caller_keys")),
        _enum("caller_keys", "purpose", KEY_PURPOSES),
        sa.CheckConstraint("(wrapped_key IS NULL) = (destroyed_at IS NOT NULL)",
                           name=op.f("ck_caller_keys_destroyed_means_no_key")),
    )
    live = sa.text("wrapped_key IS NOT NULL")
    op.create_index("uq_caller_keys_live", "caller_keys", ["tenant_id", "number_hash", "purpose"], unique=True,
                    postgresql_where=live, sqlite_where=live)


def _create_recordings() -> None:
    op.create_table(
        "recordings",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("external_id", sa.String(200), nullable=False),
        _ts("started_at"),
        sa.Column("direction", sa.String(32), nullable=False),
        sa.Column("caller_number", sa.String(32), nullable=False),
        _hash("number_hash"),
        sa.Column("agent_id", sa.String(100), nullable=False),
        sa.Column("team_id", sa.String(100), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("audio_format", sa.String(32), nullable=False),
        sa.Column("channels", sa.Integer(), nullable=False),
        sa.Column("redactions", _json(), server_default=sa.text("'[]'"), nullable=False),
        sa.Column("restricted", sa.Boolean(), server_default=sa.false(), nullable=False),
        _ts("restricted_at", nullable=True),
        _ts("created_at"),
        _hash("content_sha256"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_recordings_tenant_id_tenants")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recordings")),
        sa.UniqueConstraint("tenant_id", "external_id", name=op.f("uq_recordings_tenant_id_external_id")),
        _enum("recordings", "direction", DIRECTIONS),
    )
    op.create_index("ix_recordings_tenant_number", "recordings", ["tenant_id", "number_hash"])
    op.create_index("ix_recordings_tenant_agent_started", "recordings", ["tenant_id", "agent_id", "started_at"])
    op.create_index("ix_recordings_tenant_team_started", "recordings", ["tenant_id", "team_id", "started_at"])


def _create_copies() -> None:
    op.create_table(
        "copies",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("recording_id", sa.Uuid(), nullable=False),
        sa.Column("tier", sa.String(32), nullable=False),
        sa.Column("object_key", sa.String(300), nullable=False),
        sa.Column("bucket", sa.String(63), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        _hash("stored_sha256"),
        sa.Column("wrapped_data_key", sa.LargeBinary(), nullable=False),
        sa.Column("caller_key_id", sa.Uuid(), nullable=False),
        sa.Column("frame_size", sa.Integer(), nullable=False),
        _ts("created_at"),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("reason", sa.Text(), server_default="", nullable=False),
        sa.Column("training_report", sa.Text(), nullable=True),
        _ts("expires_at"),
        sa.Column("hold", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("hold_reason", sa.Text(), nullable=True),
        sa.Column("hold_actor", sa.String(100), nullable=True),
        _ts("hold_at", nullable=True),
        _ts("deleting_at", nullable=True),
        sa.ForeignKeyConstraint(["recording_id"], ["recordings.id"], ondelete="CASCADE",
                                name=op.f("fk_copies_recording_id_recordings")),
        sa.ForeignKeyConstraint(["caller_key_id"], ["caller_keys.id"],
                                name=op.f("fk_copies_caller_key_id_caller_keys")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_copies")),
        sa.UniqueConstraint("object_key", name=op.f("uq_copies_object_key")),
        sa.UniqueConstraint("recording_id", "tier", "reason", name=op.f("uq_copies_recording_id_tier_reason")),
        _enum("copies", "tier", TIERS),
        sa.CheckConstraint("tier = 'complaint-extract' OR reason = ''",
                           name=op.f("ck_copies_reason_only_for_extracts")),
        sa.CheckConstraint("tier <> 'training' OR training_report IS NOT NULL",
                           name=op.f("ck_copies_training_has_report")),
        sa.CheckConstraint("NOT hold OR (hold_reason IS NOT NULL AND hold_actor IS NOT NULL AND hold_at IS NOT NULL)",
                           name=op.f("ck_copies_hold_has_reason_actor_time")),
    )
    not_held, deleting = sa.text("hold = false"), sa.text("deleting_at IS NOT NULL")
    op.create_index("ix_copies_expires_not_held", "copies", ["expires_at"],
                    postgresql_where=not_held, sqlite_where=sa.text("hold = 0"))
    op.create_index("ix_copies_deleting", "copies", ["deleting_at"],
                    postgresql_where=deleting, sqlite_where=deleting)
    op.create_index("ix_copies_caller_key_id", "copies", ["caller_key_id"])


def _create_suppressions() -> None:
    op.create_table(
        "suppressions",
        sa.Column("tenant_id", sa.String(64), nullable=False),
        _hash("number_hash"),
        _ts("created_at"),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_suppressions_tenant_id_tenants")),
        sa.PrimaryKeyConstraint("tenant_id", "number_hash", name=op.f("pk_suppressions")),
    )


def _create_users() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("tenants", _json(), server_default=sa.text("'[]'"), nullable=False),
        sa.Column("agent_id", sa.String(100), nullable=True),
        sa.Column("contract_end", sa.Date(), nullable=True),
        sa.Column("revoked", sa.Boolean(), server_default=sa.false(), nullable=False),
        _ts("revoked_at", nullable=True),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        _enum("users", "role", ROLES),
    )


def _create_team_memberships() -> None:
    op.create_table(
        "team_memberships",
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("team_id", sa.String(100), nullable=False),
        sa.Column("relation", sa.String(32), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE",
                                name=op.f("fk_team_memberships_user_id_users")),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE",
                                name=op.f("fk_team_memberships_tenant_id_tenants")),
        sa.PrimaryKeyConstraint("user_id", "tenant_id", "team_id", "relation", name=op.f("pk_team_memberships")),
        _enum("team_memberships", "relation", TEAM_RELATIONS),
    )


def _create_audit_events() -> None:
    op.create_table(
        "audit_events",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        _ts("at"),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("target_type", sa.String(32), nullable=False),
        sa.Column("target_id", sa.String(200), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("detail", _json(), nullable=True),
        _hash("prev_hash", nullable=True),
        _hash("hash"),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_events")),
        sa.UniqueConstraint("hash", name=op.f("uq_audit_events_hash")),
        _enum("audit_events", "outcome", OUTCOMES),
    )
    op.create_index("ix_audit_events_target", "audit_events", ["target_type", "target_id"])


def _create_break_glass() -> None:
    op.create_table(
        "break_glass",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("ticket", sa.String(100), nullable=False),
        _ts("granted_at"),
        _ts("expires_at"),
        sa.Column("recording_id", sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE",
                                name=op.f("fk_break_glass_user_id_users")),
        sa.ForeignKeyConstraint(["recording_id"], ["recordings.id"], ondelete="CASCADE",
                                name=op.f("fk_break_glass_recording_id_recordings")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_break_glass")),
        sa.CheckConstraint("expires_at > granted_at", name=op.f("ck_break_glass_expires_after_grant")),
    )
    op.create_index("ix_break_glass_user_id_expires_at", "break_glass", ["user_id", "expires_at"])


def downgrade() -> None:
    # Reverse order of creation: children before the tables they reference.
    for table in ("break_glass", "audit_events", "team_memberships", "users", "suppressions",
                  "copies", "recordings", "caller_keys", "tenant_retention", "tenants"):
        op.drop_table(table)
