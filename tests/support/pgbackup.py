"""Catalog backups with the real PostgreSQL tools: ``pg_dump`` of one schema (custom format),
``pg_restore`` of it, and ``pg_restore -f -`` to read what a backup holds as SQL text.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import sqlalchemy as sa

from deploy.local.servers import PostgresServer


def _tool(name: str) -> str:
    bin_dir = PostgresServer.bin_dir()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL's tools are not installed: run `callvault stack up`")
    return str(bin_dir / name)


def split(schema_url: str) -> tuple[str, str]:
    """(libpq URI without options, schema) of a SQLAlchemy URL whose search_path is one schema."""
    url = sa.make_url(schema_url)
    options = parse_qs(urlparse(schema_url).query).get("options", [""])[0]
    schema = options.split("search_path=", 1)[1]
    plain = url.set(drivername="postgresql", query={}).render_as_string(hide_password=False)
    return plain, schema


def dump(schema_url: str, path: Path) -> Path:
    uri, schema = split(schema_url)
    subprocess.run([_tool("pg_dump"), "--format=custom", "--no-owner", f"--schema={schema}", "-f", str(path), uri],
                   check=True, capture_output=True)
    return path


def as_sql(path: Path) -> str:
    """The backup's whole content as SQL text (COPY data included)."""
    return subprocess.run([_tool("pg_restore"), "-f", "-", str(path)], check=True, capture_output=True).stdout.decode()


def restore(schema_url: str, path: Path) -> None:
    """Replace the schema with the dump's content (what an operator's restore does)."""
    uri, schema = split(schema_url)
    engine = sa.create_engine(uri.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()
    subprocess.run([_tool("pg_restore"), "--no-owner", "--exit-on-error", "-d", uri, str(path)], check=True,
                   capture_output=True)
