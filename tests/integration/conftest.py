"""Fixtures of the integration tests: a migrated schema, a running pipeline, the catalog on both
engines, the erasure ledger, and the API test world. Thin: what they build is in
``tests.support`` and ``testbed``."""

from __future__ import annotations

import base64
import os
from typing import Iterator

import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from storage.catalog import tables as t
from storage.catalog.migrate import upgrade
from storage.objectstore import ObjectStore
from storage.settings import StorageSettings
from testbed.pipeline import Pipeline, scratch_pipeline
from tests.support.catalog import NOW
from tests.support.stack import unique
from tests.support.world import World, build_world


@pytest.fixture
def pg_schema_url(postgres_url: str) -> Iterator[str]:
    """A URL whose connections use a fresh schema (migrated to head), dropped after the test."""
    import sqlalchemy as sa

    from storage.catalog.migrate import upgrade

    schema = unique("e2e").replace("-", "_")
    admin = sa.create_engine(postgres_url, pool_pre_ping=True)  # survives a server restart (fault suite)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = f"{postgres_url}?options=-csearch_path%3D{schema}"
    upgrade(url)
    yield url
    with admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture
def pipeline(kafka_bootstrap, storage_settings, pg_schema_url, tmp_path) -> Iterator[Pipeline]:
    """A real `callvault worker` on scratch topics, buckets and catalog schema, tenant `acme`."""
    storage = storage_settings.model_copy(update={"master_key": SecretStr(base64.b64encode(os.urandom(32)).decode())})
    with scratch_pipeline(kafka_bootstrap, storage, pg_schema_url, tmp_path / "worker.log",
                          prefix=unique("e2e")) as pipe:
        pipe.start_worker()
        yield pipe


@pytest.fixture(params=["sqlite", "postgres"])
def catalog(request) -> sa.Engine:
    engine = request.getfixturevalue("sqlite_engine" if request.param == "sqlite" else "pg_engine")
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(t.tenants.insert().values(id="acme", name="Acme", created_at=NOW))
    return engine


@pytest.fixture
def locked_bucket(storage_settings: StorageSettings) -> str:
    """The recordings bucket as ``storage init`` makes it (backstop rules, object lock); the
    storage_settings fixture empties it after, lifting legal holds."""
    from storage.admin import init_buckets

    init_buckets(storage_settings, say=lambda _m: None)
    return storage_settings.recordings_bucket


@pytest.fixture
def ledger(store: ObjectStore, storage_settings: StorageSettings):
    from storage.ledger import ErasureLedger

    return ErasureLedger.from_settings(store, storage_settings)


@pytest.fixture
def world(pg_engine, store, keys, scratch_bucket, storage_settings) -> Iterator[World]:
    """The API test world (``tests.support.world``), its app started; its audit trail verified after."""
    w = build_world(pg_engine, store, keys, scratch_bucket, storage_settings)
    with w.client:
        yield w
    w.assert_audit_verifies()
