"""Fixtures shared by the storage integration tests."""

from __future__ import annotations

from typing import Iterator

import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from storage.catalog import tables as t
from storage.catalog.migrate import upgrade
from storage.objectstore import ObjectStore
from storage.settings import StorageSettings
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
def pipeline(kafka_bootstrap, storage_settings, pg_schema_url, tmp_path) -> Iterator["Pipeline"]:
    """A real `callvault worker` on scratch topics, buckets and catalog schema, tenant `acme`."""
    import asyncio
    import base64
    import os
    from datetime import datetime, timezone

    import sqlalchemy as sa
    from aiokafka.admin import AIOKafkaAdminClient

    from ingest.settings import KafkaSettings
    from storage.admin import init_buckets
    from storage.catalog import tables as t
    from storage.catalog.db import make_engine
    from storage.objectstore import ObjectStore
    from tests.integration.pipeline import Pipeline, create_topics, service_env

    prefix = unique("e2e")
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap, recordings_topic=f"{prefix}.recordings",
                          dlq_topic=f"{prefix}.recordings.dlq", events_topic=f"{prefix}.events", partitions=4)
    asyncio.run(create_topics(kafka_bootstrap, [kafka.recordings_topic], 4))
    master = base64.b64encode(os.urandom(32)).decode()
    storage = storage_settings.model_copy(update={"master_key": SecretStr(master)})
    init_buckets(storage, say=lambda _m: None)
    from storage.admin import minio_admin_client
    from storage.ledger import init_ledger_bucket

    init_ledger_bucket(minio_admin_client(storage), storage, say=lambda _m: None)  # the fault suite's own MinIO
    engine = make_engine(pg_schema_url, echo=False)
    with engine.begin() as conn:
        conn.execute(t.tenants.insert().values(id="acme", name="Acme", created_at=datetime.now(timezone.utc)))
    inline_max = 64 * 1024
    env = {
        **service_env(storage, pg_schema_url),
        "CALLVAULT_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "CALLVAULT_KAFKA_RECORDINGS_TOPIC": kafka.recordings_topic,
        "CALLVAULT_KAFKA_DLQ_TOPIC": kafka.dlq_topic,
        "CALLVAULT_KAFKA_EVENTS_TOPIC": kafka.events_topic,
        "CALLVAULT_INGEST_APP_ID": prefix,
        "CALLVAULT_INGEST_WEB_PORT": "0",
        "CALLVAULT_INGEST_METRICS_PORT": "0",
        "CALLVAULT_INGEST_INLINE_MAX_BYTES": str(inline_max),
    }
    pipe = Pipeline(kafka=kafka, storage=storage, engine=engine, store=ObjectStore.from_settings(storage), env=env,
                    log_path=tmp_path / "worker.log", inline_max_bytes=inline_max)
    pipe.start_worker()
    yield pipe
    pipe.stop_worker()
    engine.dispose()

    async def drop() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            existing = [n for n in await admin.list_topics() if n.startswith(prefix)]
            if existing:
                await admin.delete_topics(existing)
        finally:
            await admin.close()

    asyncio.run(drop())


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
