"""The telephony role, and the calls pushed through the front doors.

- ``users.role`` also takes ``telephony``: a system (a PBX, a recorder) whose token may push
  recordings of its tenants and read their ingest status, nothing else. A new value is a
  new CHECK constraint: dropped and made again on PostgreSQL; on SQLite, which cannot alter a
  constraint, the table is copied (batch mode), and the team memberships and break-glass
  grants are put back, since dropping the old table cascades to them (foreign keys are on).
- ``pushes``: one row per call handed over by the HTTP push endpoint or the S3 drop: tenant,
  telephony id, door, principal, the audio's fingerprint, and what became of it (NULL while
  queued). No number, no audio.

Offline ``--sql`` scripts are for empty catalogs (as in 0002): nothing to put back.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

OLD_ROLES = ("consultant", "manager", "coach", "internal-control", "it")
NEW_ROLES = (*OLD_ROLES, "telephony")
DOORS = ("http", "s3-drop")
PUSH_OUTCOMES = ("stored", "suppressed", "expired-on-arrival", "dead-lettered")
_CASCADED = ("team_memberships", "break_glass")  # rows that reference users ON DELETE CASCADE


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _users(roles: tuple[str, ...]) -> sa.Table:
    """The users table as it stands (unchanged since 0001), with the role check of ``roles``."""
    def ts(name: str, nullable: bool = False) -> sa.Column:
        return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)

    return sa.Table(
        "users", sa.MetaData(),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("tenants", sa.JSON(), server_default=sa.text("'[]'"), nullable=False),
        sa.Column("agent_id", sa.String(100), nullable=True),
        sa.Column("contract_end", sa.Date(), nullable=True),
        sa.Column("revoked", sa.Boolean(), server_default=sa.false(), nullable=False),
        ts("revoked_at", nullable=True),
        ts("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.CheckConstraint(_in("role", roles), name="ck_users_role"),
    )


def _set_roles(roles: tuple[str, ...]) -> None:
    if op.get_context().dialect.name != "sqlite":
        op.drop_constraint(op.f("ck_users_role"), "users", type_="check")
        op.create_check_constraint(op.f("ck_users_role"), "users", _in("role", roles))
        return
    offline = op.get_context().as_sql
    saved = {} if offline else {name: op.get_bind().execute(sa.text(f"SELECT * FROM {name}")).mappings().all()
                                for name in _CASCADED}
    with op.batch_alter_table("users", recreate="always", copy_from=_users(roles)):
        pass
    for name, rows in saved.items():
        if rows:
            table = sa.table(name, *(sa.column(c) for c in rows[0].keys()))
            op.get_bind().execute(sa.text(f"DELETE FROM {name}"))  # none left, unless foreign keys are off
            op.get_bind().execute(table.insert(), [dict(r) for r in rows])


def upgrade() -> None:
    _set_roles(NEW_ROLES)
    op.create_table(
        "pushes",
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
        sa.CheckConstraint(_in("door", DOORS), name=op.f("ck_pushes_door")),
        sa.CheckConstraint(_in("outcome", PUSH_OUTCOMES), name=op.f("ck_pushes_outcome")),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_pushes_tenant_id_tenants")),
        sa.PrimaryKeyConstraint("recording_id", name=op.f("pk_pushes")),
        sa.UniqueConstraint("tenant_id", "external_id", name=op.f("uq_pushes_tenant_id_external_id")),
    )


def downgrade() -> None:
    op.drop_table("pushes")
    op.execute(sa.text("DELETE FROM users WHERE role = 'telephony'"))  # a role the old check refuses
    _set_roles(OLD_ROLES)

