"""Audit entries carry their tenant; a chain format version per entry.

- ``audit_events.tenant_id`` (nullable: group-level and system entries have none), indexed
  with ``seq`` for the tenant-scoped, keyset-paginated ``GET /audit``. No foreign key: an
  entry outlives its tenant.
- ``audit_events.chain``: what an entry's hash covers. Existing entries are version 1 (hashed
  without a tenant) and keep verifying as they are; new entries are version 2 (the tenant and
  the version are hashed too).
- Backfill (``tenant_id`` only, which version-1 hashes do not cover): from the entry's target
  (a recording's or a copy's tenant; a ``tenant`` target names it), else ``detail.tenant``;
  else NULL. Offline ``--sql`` scripts get the target rules (portable SQL); the ``detail``
  rule needs a database (offline scripts are for empty catalogs, as in 0002).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_audit = sa.table("audit_events", sa.column("seq", sa.BigInteger), sa.column("tenant_id", sa.String),
                  sa.column("target_type", sa.String), sa.column("target_id", sa.String),
                  sa.column("detail", sa.JSON))
_recordings = sa.table("recordings", sa.column("id", sa.Uuid), sa.column("tenant_id", sa.String))
_copies = sa.table("copies", sa.column("id", sa.Uuid), sa.column("recording_id", sa.Uuid))
_tenants = sa.table("tenants", sa.column("id", sa.String))


def _id_text(column: sa.ColumnElement, dialect: str) -> sa.ColumnElement:
    """A Uuid column as the text ``str(uuid)`` gives (SQLite stores 32 hex digits, no hyphens)."""
    if dialect == "sqlite":
        return column
    return sa.cast(column, sa.String)


def _target(dialect: str) -> sa.ColumnElement:
    return sa.func.replace(_audit.c.target_id, "-", "") if dialect == "sqlite" else _audit.c.target_id


def _backfill(dialect: str) -> None:
    target = _target(dialect)
    op.execute(_audit.update().where(_audit.c.tenant_id.is_(None), _audit.c.target_type == "recording")
               .values(tenant_id=sa.select(_recordings.c.tenant_id)
                       .where(_id_text(_recordings.c.id, dialect) == target).scalar_subquery()))
    op.execute(_audit.update().where(_audit.c.tenant_id.is_(None), _audit.c.target_type == "copy")
               .values(tenant_id=sa.select(_recordings.c.tenant_id)
                       .join(_copies, _copies.c.recording_id == _recordings.c.id)
                       .where(_id_text(_copies.c.id, dialect) == target).scalar_subquery()))
    op.execute(_audit.update().where(_audit.c.tenant_id.is_(None), _audit.c.target_type == "tenant",
                                     _audit.c.target_id.in_(sa.select(_tenants.c.id)))
               .values(tenant_id=_audit.c.target_id))
    if op.get_context().as_sql:
        return
    conn = op.get_bind()
    rows = conn.execute(sa.select(_audit.c.seq, _audit.c.detail).where(
        _audit.c.tenant_id.is_(None), _audit.c.detail.is_not(None))).all()
    updates = [{"s": seq, "t": detail["tenant"]} for seq, detail in rows
               if isinstance(detail, dict) and isinstance(detail.get("tenant"), str)]
    if updates:
        conn.execute(_audit.update().where(_audit.c.seq == sa.bindparam("s")).values(tenant_id=sa.bindparam("t")),
                     updates)


def upgrade() -> None:
    with op.batch_alter_table("audit_events") as batch:
        batch.add_column(sa.Column("tenant_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("chain", sa.SmallInteger, nullable=False, server_default="1"))
    op.create_index("ix_audit_events_tenant_id_seq", "audit_events", ["tenant_id", "seq"])
    _backfill(op.get_context().dialect.name)


def downgrade() -> None:
    # Version-2 entries then no longer verify (their hash covers the tenant): a downgrade is
    # for a catalog that has not yet written any.
    op.drop_index("ix_audit_events_tenant_id_seq", table_name="audit_events")
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_column("chain")
        batch.drop_column("tenant_id")
