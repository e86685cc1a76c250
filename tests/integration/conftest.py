"""Fixtures shared by the storage integration tests."""

from __future__ import annotations

from typing import Iterator

import pytest
from pydantic import SecretStr

from storage.settings import StorageSettings
from tests.conftest import MinioEndpoint, empty_and_delete_bucket, unique


@pytest.fixture
def storage_settings(minio: MinioEndpoint) -> Iterator[StorageSettings]:
    """Settings for the stack's MinIO with three unique bucket names; the buckets are removed after."""
    base = unique("t")
    settings = StorageSettings(
        endpoint_url=minio.url, region=minio.region, access_key=SecretStr(minio.access_key),
        secret_key=SecretStr(minio.secret_key), recordings_bucket=f"{base}-rec",
        landing_bucket=f"{base}-land", exports_bucket=f"{base}-exp",
    )
    yield settings
    s3 = minio.boto3_client()
    existing = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    for bucket in (settings.recordings_bucket, settings.landing_bucket, settings.exports_bucket):
        if bucket in existing:
            empty_and_delete_bucket(s3, bucket)
