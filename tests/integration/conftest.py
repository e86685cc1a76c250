"""Fixtures of the integration tests: a migrated schema, a running pipeline, the catalog on both
engines, the erasure ledger, and the API test world. Thin: what they build is in
``tests.support`` and ``testbed``."""

from __future__ import annotations

import base64
import os
from contextlib import contextmanager
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
from tests.support.front_doors import FrontDoors, api_env, front_doors_on
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
    with running_pipeline(kafka_bootstrap, storage_settings, pg_schema_url, tmp_path) as pipe:
        yield pipe


@contextmanager
def running_pipeline(kafka_bootstrap, storage_settings, pg_schema_url, tmp_path,
                     extra_env: dict[str, str] | None = None, drops: bool = False) -> Iterator[Pipeline]:
    """The ``pipeline`` fixture's world (``testbed.pipeline.scratch_pipeline``, a fresh master key, tenant
    topics under its own prefix, no other test's), its worker started; ``extra_env`` for its worker (and
    its other processes); ``drops``: its landing bucket announces new objects (the S3 drop), which
    otherwise it does not, so a test's own objects there are not taken for telephony's."""
    storage = storage_settings.model_copy(update={
        "master_key": SecretStr(base64.b64encode(os.urandom(32)).decode()),
        "drop_notify_target": storage_settings.drop_notify_target if drops else None})
    env = {"CALLVAULT_KAFKA_TENANT_TOPICS_REFRESH_SECONDS": "1", **(extra_env or {})}
    with scratch_pipeline(kafka_bootstrap, storage, pg_schema_url, tmp_path / "worker.log", prefix=unique("e2e"),
                          env=env) as pipe:
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


@pytest.fixture
def front_doors(kafka_bootstrap, storage_settings, pg_schema_url, tmp_path) -> Iterator[FrontDoors]:
    """The pipeline (its landing bucket announcing drops), plus a real `callvault api` on it and its
    users (``tests.support.front_doors.front_doors_on``)."""
    with running_pipeline(kafka_bootstrap, storage_settings, pg_schema_url, tmp_path, extra_env=api_env(),
                          drops=True) as pipe, front_doors_on(pipe, tmp_path / "api.log") as doors:
        yield doors
