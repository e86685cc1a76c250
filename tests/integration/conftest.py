"""Fixtures shared by the storage integration tests."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from storage.catalog import tables as t
from storage.catalog.migrate import upgrade
from storage.keys import KeyRing
from storage.objectstore import ObjectStore

from storage.settings import StorageSettings
from tests.integration.catalog_helpers import NOW
from tests.conftest import MinioEndpoint, empty_and_delete_bucket, unique


LEDGER_BUCKET = "cv-test-erasure-ledger"


@pytest.fixture(scope="session")
def ledger_bucket(minio: MinioEndpoint) -> str:
    """One object-locked ledger bucket for the whole run (COMPLIANCE objects cannot be deleted,
    so neither can their bucket); each test writes under a prefix of its own."""
    from storage.ledger import init_ledger_bucket

    init_ledger_bucket(minio.minio_client(), StorageSettings(
        endpoint_url=minio.url, region=minio.region, ledger_bucket=LEDGER_BUCKET), say=lambda _m: None)
    return LEDGER_BUCKET


@pytest.fixture
def storage_settings(minio: MinioEndpoint, ledger_bucket: str) -> Iterator[StorageSettings]:
    """Settings for the stack's MinIO with three unique bucket names and a ledger prefix of
    their own; the buckets are removed after (the ledger entries expire after a day)."""
    base = unique("t")
    settings = StorageSettings(
        endpoint_url=minio.url, region=minio.region, access_key=SecretStr(minio.access_key),
        secret_key=SecretStr(minio.secret_key), recordings_bucket=f"{base}-rec",
        landing_bucket=f"{base}-land", exports_bucket=f"{base}-exp",
        ledger_bucket=ledger_bucket, ledger_prefix=f"{base}/", ledger_retention_days=1,
    )
    yield settings
    s3 = minio.boto3_client()
    existing = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    for bucket in (settings.recordings_bucket, settings.landing_bucket, settings.exports_bucket):
        if bucket in existing:
            empty_and_delete_bucket(s3, bucket)


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
    with running_pipeline(kafka_bootstrap, storage_settings, pg_schema_url, tmp_path) as pipe:
        yield pipe


@contextmanager
def running_pipeline(kafka_bootstrap, storage_settings, pg_schema_url, tmp_path,
                     extra_env: dict[str, str] | None = None, drops: bool = False) -> Iterator["Pipeline"]:
    """The ``pipeline`` fixture's world; ``extra_env`` for its worker (and its other processes);
    ``drops``: its landing bucket announces new objects (the S3 drop), which otherwise it does
    not, so a test's own objects there are not taken for telephony's."""
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
                          dlq_topic=f"{prefix}.recordings.dlq", events_topic=f"{prefix}.events", partitions=4,
                          tenant_topic_prefix=f"{prefix}.tenant.")  # its own: no other test's tenant topics
    asyncio.run(create_topics(kafka_bootstrap, [kafka.recordings_topic], 4))
    master = base64.b64encode(os.urandom(32)).decode()
    storage = storage_settings.model_copy(update={"master_key": SecretStr(master),
                                                  "drop_notify_target": storage_settings.drop_notify_target
                                                  if drops else None})
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
        "CALLVAULT_KAFKA_TENANT_TOPIC_PREFIX": kafka.tenant_topic_prefix,
        "CALLVAULT_KAFKA_TENANT_TOPICS_REFRESH_SECONDS": "1",
        "CALLVAULT_INGEST_APP_ID": prefix,
        "CALLVAULT_INGEST_WEB_PORT": "0",
        "CALLVAULT_INGEST_METRICS_PORT": "0",
        "CALLVAULT_INGEST_INLINE_MAX_BYTES": str(inline_max),
        **(extra_env or {}),
    }
    pipe = Pipeline(kafka=kafka, storage=storage, engine=engine, store=ObjectStore.from_settings(storage), env=env,
                    log_path=tmp_path / "worker.log", inline_max_bytes=inline_max)
    pipe.start_worker()
    try:
        yield pipe
    finally:
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
def keys() -> KeyRing:
    return KeyRing(os.urandom(32))


@pytest.fixture
def store(minio) -> ObjectStore:
    return ObjectStore(minio.boto3_client())


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
def front_doors(kafka_bootstrap, storage_settings, pg_schema_url, tmp_path) -> Iterator["FrontDoors"]:
    """The pipeline, plus a real `callvault api` on it, a telephony user of `acme` (``pbx-acme``),
    an internal-control user of `acme` (``ic-acme``), and the tenant `globex` nobody here serves."""
    import secrets
    from datetime import datetime, timezone

    from pydantic import SecretStr as Secret

    from access.identities import add_user
    from access.settings import AccessSettings
    from access.tokens import issue_token
    from storage.catalog import tables as t
    from tests.support.front_doors import ApiProcess, FrontDoors

    secret = secrets.token_urlsafe(32)
    env = {"CALLVAULT_ACCESS_JWT_SECRET": secret, "CALLVAULT_INGEST_MAX_AUDIO_BYTES": str(6 * 1024 * 1024)}
    with running_pipeline(kafka_bootstrap, storage_settings, pg_schema_url, tmp_path, extra_env=env,
                          drops=True) as pipe:
        now = datetime.now(timezone.utc)
        with pipe.engine.begin() as conn:
            conn.execute(t.tenants.insert().values(id="globex", name="Globex", created_at=now))
            add_user(conn, user_id="pbx-acme", role="telephony", tenants=["acme"], now=now)
            add_user(conn, user_id="ic-acme", role="internal-control", tenants=["acme"], now=now)
        api = ApiProcess(pipe.env, tmp_path / "api.log")
        api.start()
        settings = AccessSettings(jwt_secret=Secret(secret))
        try:
            yield FrontDoors(pipe, api, {u: issue_token(u, settings) for u in ("pbx-acme", "ic-acme")})
        finally:
            api.stop()
