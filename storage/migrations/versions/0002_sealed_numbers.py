"""Numbers sealed under the caller key, master-key versions.

- ``caller_keys.master_version``: which master key wraps each caller key (rotation).
- ``recordings.caller_number`` (clear E.164) becomes ``caller_number_sealed``, encrypted under
  the caller key named by the new ``recordings.caller_key_id``, so a restored backup shows no
  number of an erased caller. Existing rows are sealed here with the configured master key
  (the key of their production copy, else the caller's live key); an empty catalog needs no key.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _seal_existing(conn: sa.Connection) -> None:
    recordings = sa.table("recordings", sa.column("id", sa.Uuid), sa.column("tenant_id", sa.String),
                          sa.column("caller_number", sa.String), sa.column("number_hash", sa.String),
                          sa.column("caller_key_id", sa.Uuid), sa.column("caller_number_sealed", sa.LargeBinary))
    copies = sa.table("copies", sa.column("recording_id", sa.Uuid), sa.column("caller_key_id", sa.Uuid),
                      sa.column("tier", sa.String))
    rows = conn.execute(sa.select(recordings)).mappings().all()
    if not rows:
        return
    from storage.keys import KeyRing
    from storage.settings import StorageSettings

    keys = KeyRing.from_settings(StorageSettings())
    for row in rows:
        key_id = conn.execute(sa.select(copies.c.caller_key_id).where(copies.c.recording_id == row["id"])
                              .order_by((copies.c.tier == "production").desc()).limit(1)).scalar()
        caller = (keys.key_by_id(conn, key_id) if key_id is not None
                  else keys.caller_key(conn, tenant=row["tenant_id"], number_hash=row["number_hash"]))
        conn.execute(recordings.update().where(recordings.c.id == row["id"]).values(
            caller_key_id=caller.id, caller_number_sealed=keys.seal_number(
                caller, tenant=row["tenant_id"], recording_id=row["id"], e164=row["caller_number"])))


def _offline_recordings() -> sa.Table | None:
    """For ``--sql`` on SQLite (no database to reflect): the table as it stands mid-migration."""
    if not op.get_context().as_sql:
        return None
    from storage.catalog.tables import recordings

    meta = sa.MetaData(naming_convention=recordings.metadata.naming_convention)
    columns = [c.copy() for c in recordings.columns if c.name not in ("caller_number_sealed", "caller_key_id")]
    return sa.Table("recordings", meta, *columns, sa.Column("caller_number", sa.String(32), nullable=False),
                    sa.Column("caller_number_sealed", sa.LargeBinary, nullable=True),
                    sa.Column("caller_key_id", sa.Uuid, nullable=True),
                    sa.UniqueConstraint("tenant_id", "external_id"))


def upgrade() -> None:
    with op.batch_alter_table("caller_keys") as batch:
        batch.add_column(sa.Column("master_version", sa.String(64), nullable=False, server_default="1"))
    with op.batch_alter_table("recordings") as batch:
        batch.add_column(sa.Column("caller_number_sealed", sa.LargeBinary, nullable=True))
        batch.add_column(sa.Column("caller_key_id", sa.Uuid, nullable=True))
    if not op.get_context().as_sql:  # offline SQL scripts are for empty catalogs: nothing to seal
        _seal_existing(op.get_bind())
    with op.batch_alter_table("recordings", copy_from=_offline_recordings()) as batch:
        batch.alter_column("caller_number_sealed", existing_type=sa.LargeBinary, nullable=False)
        batch.alter_column("caller_key_id", existing_type=sa.Uuid, nullable=False)
        batch.create_foreign_key(op.f("fk_recordings_caller_key_id_caller_keys"), "caller_keys",
                                 ["caller_key_id"], ["id"])
        batch.drop_column("caller_number")
    op.create_index("ix_recordings_caller_key_id", "recordings", ["caller_key_id"])


def downgrade() -> None:
    # The clear number cannot come back without the keys; a downgrade is for empty catalogs.
    op.drop_index("ix_recordings_caller_key_id", table_name="recordings")
    with op.batch_alter_table("recordings") as batch:
        batch.add_column(sa.Column("caller_number", sa.String(32), nullable=False, server_default=""))
        batch.drop_constraint(op.f("fk_recordings_caller_key_id_caller_keys"), type_="foreignkey")
        batch.drop_column("caller_key_id")
        batch.drop_column("caller_number_sealed")
    with op.batch_alter_table("caller_keys") as batch:
        batch.drop_column("master_version")
