"""Session fixtures: the real local stack, and per-test scratch topics, buckets and schemas,
storage settings for them, a key ring and an object store (the integration and the browser
tests both use these).

The stack is brought up here (idempotently) so ``pytest`` alone works; a server that does
not come up is an error for every test that needs it, never a skip.
"""

from __future__ import annotations

import asyncio
import os
from typing import Iterator

import pytest
import sqlalchemy as sa
from hypothesis import settings

from deploy.local.stack import Stack
from storage.keys import KeyRing
from storage.objectstore import ObjectStore
from storage.settings import StorageSettings
from tests.support.stack import MinioEndpoint, drop_buckets, empty_and_delete_bucket, scratch_storage, unique

# Property tests: the same examples on every run by default ("ci": each test's examples are
# seeded from the test itself), so a run that passed before a change predicts the next one and a
# failure reproduces as is. CALLVAULT_HYPOTHESIS=explore draws fresh examples each run (to hunt
# for new counterexamples); a failure prints the blob that replays it (@reproduce_failure).
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("CALLVAULT_HYPOTHESIS", "ci"))


@pytest.fixture(scope="session")
def stack() -> Stack:
    stack = Stack.from_settings()
    stack.up(say=lambda _msg: None)
    return stack


@pytest.fixture(scope="session")
def kafka_bootstrap(stack: Stack) -> str:
    return stack.kafka.address


@pytest.fixture(scope="session")
def minio(stack: Stack) -> MinioEndpoint:
    return MinioEndpoint.of(stack)


@pytest.fixture(scope="session")
def postgres_url(stack: Stack) -> str:
    return stack.postgres_url


@pytest.fixture
def scratch_topic(kafka_bootstrap: str) -> Iterator[str]:
    """A fresh topic name; the topic is deleted after the test if it was created."""
    from aiokafka.admin import AIOKafkaAdminClient

    name = unique("test")
    yield name

    async def drop() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            doomed = [t for t in existing if t.startswith(name)]
            if doomed:
                await admin.delete_topics(doomed)
        finally:
            await admin.close()

    asyncio.run(drop())


@pytest.fixture
def scratch_bucket(minio: MinioEndpoint) -> Iterator[str]:
    """A fresh, empty bucket in the stack's MinIO; emptied (all versions) and deleted after."""
    s3 = minio.boto3_client()
    name = unique("test")
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": minio.region})
    yield name
    empty_and_delete_bucket(s3, name)


@pytest.fixture
def pg_engine(postgres_url: str) -> Iterator[sa.Engine]:
    """An engine on the stack's PostgreSQL whose search_path is a fresh schema, dropped after."""
    schema = unique("t").replace("-", "_")
    admin = sa.create_engine(postgres_url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    engine = sa.create_engine(postgres_url, connect_args={"options": f"-csearch_path={schema}"})
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def sqlite_engine(tmp_path) -> Iterator[sa.Engine]:
    from storage.catalog.db import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'catalog.sqlite3'}", echo=False)
    yield engine
    engine.dispose()


# -- storage: settings for the stack's MinIO, a key ring, an object store ------------------------
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
    settings = scratch_storage(minio, ledger_bucket)
    yield settings
    drop_buckets(minio, settings)


@pytest.fixture
def keys() -> KeyRing:
    return KeyRing(os.urandom(32))


@pytest.fixture
def store(minio) -> ObjectStore:
    return ObjectStore(minio.boto3_client())
