"""Schema migrations, driven from code so they work from an installed package (no
``alembic.ini`` or working directory needed).

    upgrade(engine_or_url)             # to head; used by `callvault storage init`
    downgrade(engine_or_url, "base")
    current_revision(engine_or_url)

An ``Engine`` or ``Connection`` given here is migrated as is (its search_path, its pragmas);
a URL gets an engine from ``make_engine``, disposed after. The whole run is one transaction
(PostgreSQL has transactional DDL: a failed migration leaves nothing half-done).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Union

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from .db import make_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"

Target = Union[sa.Engine, sa.Connection, str, sa.URL, None]


def alembic_config(url: str | sa.URL | None = None) -> Config:
    """The Alembic config of the catalog, built in code."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        rendered = url.render_as_string(hide_password=False) if isinstance(url, sa.URL) else url
        config.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return config


@contextmanager
def _connection(target: Target) -> Iterator[sa.Connection]:
    if isinstance(target, sa.Connection):
        yield target
        return
    engine = target if isinstance(target, sa.Engine) else make_engine(target)
    try:
        with engine.begin() as conn:
            yield conn
    finally:
        if engine is not target:
            engine.dispose()


def _run(target: Target, action, revision: str) -> None:
    with _connection(target) as conn:
        config = alembic_config()
        config.attributes["connection"] = conn
        action(config, revision)


def upgrade(target: Target = None, revision: str = "head") -> None:
    """Migrate the catalog up to ``revision`` (default: the latest)."""
    _run(target, command.upgrade, revision)


def downgrade(target: Target = None, revision: str = "base") -> None:
    """Migrate the catalog down to ``revision`` (default: drop everything)."""
    _run(target, command.downgrade, revision)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(target: Target = None) -> str | None:
    """The revision the database is at (None: never migrated, or downgraded to base)."""
    with _connection(target) as conn:
        return MigrationContext.configure(conn).get_current_revision()
