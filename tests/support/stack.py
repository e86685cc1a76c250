"""The local stack as the tests see it: the MinIO endpoint, scratch names, storage settings
with buckets of their own, and emptying a bucket whatever its versions and legal holds."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import boto3
from botocore.config import Config
from pydantic import SecretStr

from storage.settings import StorageSettings


@dataclass(frozen=True)
class MinioEndpoint:
    url: str
    access_key: str
    secret_key: str
    region: str

    @classmethod
    def of(cls, stack) -> "MinioEndpoint":
        """The MinIO of a ``deploy.local.stack.Stack``, with its root credentials."""
        secrets = stack.minio.secrets
        return cls(url=f"http://{stack.minio.address}", access_key=secrets["minio_root_user"],
                   secret_key=secrets["minio_root_password"], region=stack.settings.minio_region)

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


def scratch_storage(minio: MinioEndpoint, ledger_bucket: str) -> StorageSettings:
    """Settings for ``minio`` with three bucket names of their own (not created) and a prefix of
    their own in the shared ledger bucket (its entries expire after a day)."""
    base = unique("t")
    return StorageSettings(
        endpoint_url=minio.url, region=minio.region, access_key=SecretStr(minio.access_key),
        secret_key=SecretStr(minio.secret_key), recordings_bucket=f"{base}-rec",
        landing_bucket=f"{base}-land", exports_bucket=f"{base}-exp",
        ledger_bucket=ledger_bucket, ledger_prefix=f"{base}/", ledger_retention_days=1,
    )


def drop_buckets(minio: MinioEndpoint, settings: StorageSettings) -> None:
    """Empty and delete those of the settings' three buckets that exist."""
    s3 = minio.boto3_client()
    existing = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    for bucket in (settings.recordings_bucket, settings.landing_bucket, settings.exports_bucket):
        if bucket in existing:
            empty_and_delete_bucket(s3, bucket)
