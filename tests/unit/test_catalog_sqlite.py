"""The catalog plumbing on a throwaway SQLite file: engine pragmas, the unit of work's
transaction boundary, UTC timestamps, the enum values, and every way of running Alembic."""

from __future__ import annotations

import io
import uuid
from contextlib import redirect_stdout
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from alembic import command

from core.vocabulary import Tier
from storage.catalog import tables as t
from storage.catalog.db import UnitOfWork, make_engine, session_factory
from storage.catalog.migrate import alembic_config, current_revision, head_revision, upgrade

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def engine(tmp_path) -> sa.Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'catalog.sqlite3'}", echo=False)
    upgrade(engine)
    yield engine
    engine.dispose()


def tenant_count(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(t.tenants)).scalar()


def test_sqlite_connections_enforce_foreign_keys_and_use_wal(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_leaving_the_unit_of_work_without_commit_rolls_back(engine: sa.Engine) -> None:
    with UnitOfWork(engine) as uow:
        uow.conn.execute(t.tenants.insert().values(id="acme", name="Acme", created_at=NOW))
    assert tenant_count(engine) == 0


def test_an_error_inside_the_unit_of_work_rolls_back(engine: sa.Engine) -> None:
    with pytest.raises(RuntimeError):
        with UnitOfWork(engine) as uow:
            uow.conn.execute(t.tenants.insert().values(id="acme", name="Acme", created_at=NOW))
            raise RuntimeError("boom")
    assert tenant_count(engine) == 0


def test_commit_is_explicit_and_the_unit_stays_usable(engine: sa.Engine) -> None:
    new_uow = session_factory(engine)
    with new_uow() as uow:
        uow.conn.execute(t.tenants.insert().values(id="acme", name="Acme", created_at=NOW))
        uow.commit()
        uow.conn.execute(t.tenants.insert().values(id="globex", name="Globex", created_at=NOW))
        uow.rollback()
        uow.conn.execute(t.tenants.insert().values(id="initech", name="Initech", created_at=NOW))
    with engine.connect() as conn:
        assert set(conn.execute(sa.select(t.tenants.c.id)).scalars()) == {"acme"}


def test_a_unit_of_work_must_be_entered() -> None:
    with pytest.raises(RuntimeError, match="context manager"):
        UnitOfWork(sa.create_engine("sqlite://")).commit()


def test_timestamps_come_back_aware_utc_and_naive_ones_are_refused(engine: sa.Engine) -> None:
    paris = timezone(timedelta(hours=1))
    with engine.begin() as conn:
        conn.execute(t.tenants.insert().values(id="acme", name="Acme", created_at=NOW.astimezone(paris)))
    with engine.connect() as conn:
        stored = conn.execute(sa.select(t.tenants.c.created_at)).scalar()
    assert stored == NOW and stored.tzinfo == timezone.utc
    with pytest.raises(sa.exc.StatementError, match="naive"):
        with engine.begin() as conn:
            conn.execute(t.tenants.insert().values(id="x", name="X", created_at=datetime(2026, 1, 1)))


def test_catalog_enums_match_the_domain() -> None:
    assert t.copies.c.tier.type.enums == [tier.value for tier in Tier]


def test_every_catalog_uuid_round_trips(engine: sa.Engine) -> None:
    key_id = uuid.uuid4()
    with engine.begin() as conn:
        conn.execute(t.tenants.insert().values(id="acme", name="Acme", created_at=NOW))
        conn.execute(t.caller_keys.insert().values(id=key_id, tenant_id="acme", number_hash="a" * 64,
                                                   wrapped_key=b"k", created_at=NOW))
    with engine.connect() as conn:
        row = conn.execute(sa.select(t.caller_keys)).mappings().one()
    assert row["id"] == key_id and row["purpose"] == "caller" and row["destroyed_at"] is None


def test_alembic_runs_from_a_url_in_its_config(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    command.upgrade(alembic_config(url), "head")
    assert current_revision(url) == head_revision()


def test_alembic_renders_offline_sql(tmp_path) -> None:
    out = io.StringIO()
    with redirect_stdout(out):
        command.upgrade(alembic_config(f"sqlite:///{tmp_path / 'offline.sqlite3'}"), "head", sql=True)
    sql = out.getvalue()
    assert "CREATE TABLE copies" in sql and "ON DELETE CASCADE" in sql
    assert "CREATE INDEX ix_copies_expires_not_held ON copies (expires_at) WHERE hold = 0" in sql
