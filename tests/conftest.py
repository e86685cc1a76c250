"""Session fixtures: the real local stack, and per-test scratch topics, buckets and schemas.

The stack is brought up here (idempotently) so ``pytest`` alone works; a server that does
not come up is an error for every test that needs it, never a skip.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Iterator

import boto3
import pytest
import sqlalchemy as sa
from botocore.config import Config

from deploy.local.stack import Stack


@dataclass(frozen=True)
class MinioEndpoint:
    url: str
    access_key: str
    secret_key: str
    region: str

    def boto3_client(self):
        return boto3.client(
            "s3", endpoint_url=self.url, region_name=self.region,
            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}),
        )

    def minio_client(self):
        from minio import Minio

        return Minio(self.url.split("://", 1)[1], access_key=self.access_key, secret_key=self.secret_key,
                     secure=False, region=self.region)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


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
    secrets = stack.minio.secrets
    return MinioEndpoint(
        url=f"http://{stack.minio.address}", access_key=secrets["minio_root_user"],
        secret_key=secrets["minio_root_password"], region=stack.settings.minio_region,
    )


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


def empty_and_delete_bucket(s3, bucket: str) -> None:
    paginator = s3.get_paginator("list_object_versions")
    for page in paginator.paginate(Bucket=bucket):
        doomed = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                  for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
        if doomed:
            resp = s3.delete_objects(Bucket=bucket, Delete={"Objects": doomed, "Quiet": True},
                                     BypassGovernanceRetention=True)
            for err in resp.get("Errors", []):  # a version under legal hold (a held copy): lift it first
                s3.put_object_legal_hold(Bucket=bucket, Key=err["Key"], VersionId=err["VersionId"],
                                         LegalHold={"Status": "OFF"})
                s3.delete_object(Bucket=bucket, Key=err["Key"], VersionId=err["VersionId"])
    s3.delete_bucket(Bucket=bucket)


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
