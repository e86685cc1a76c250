"""Alembic environment of the catalog.

The database comes from, first to last: a connection handed over in
``config.attributes["connection"]`` (``storage.catalog.migrate`` does this, so a test's
engine with its own search_path is migrated in place), ``sqlalchemy.url`` in the Alembic
config, then the catalog settings (``CALLVAULT_CATALOG_URL``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from storage.catalog.db import make_engine
from storage.catalog.tables import metadata

config = context.config


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from storage.settings import get_catalog_settings

    return get_catalog_settings().url


def _run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        compare_type=True,
        # SQLite cannot ALTER most things: later migrations use batch mode (copy and move).
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    context.configure(url=_url(), target_metadata=metadata, literal_binds=True,
                      dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(_url(), echo=False)
    try:
        with engine.connect() as conn:
            _run(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
