"""The residency guard refuses non-EU settings and buckets: real MinIO in two regions, moto for AWS."""

from __future__ import annotations

import socket
import uuid

import boto3
import pytest
from moto import mock_aws

from deploy.local.servers import MinioServer
from storage.exceptions import ResidencyError
from storage.residency import check_all, check_bucket, check_settings
from storage.settings import StorageSettings

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("region, setting", [(None, "CALLVAULT_STORAGE_REGION"), ("us-east-1", "CALLVAULT_STORAGE_REGION")])
def test_configured_region_outside_the_eu_is_refused(region, setting):
    with pytest.raises(ResidencyError) as err:
        check_settings(StorageSettings(region=region))
    assert err.value.setting == setting


def test_aws_endpoint_of_another_region_is_refused():
    with pytest.raises(ResidencyError, match="CALLVAULT_STORAGE_ENDPOINT_URL.*us-west-2"):
        check_settings(StorageSettings(region="eu-west-3", endpoint_url="https://s3.us-west-2.amazonaws.com"))


def test_eu_minio_bucket_is_accepted(minio, scratch_bucket):
    check_bucket(minio.boto3_client(), scratch_bucket, StorageSettings(region="eu-west-3"))


def test_minio_started_in_us_east_1_is_refused(stack, tmp_path):
    """A second real MinIO reporting us-east-1: its bucket's actual location is refused."""
    port = _free_port()
    server = MinioServer("minio-us-test", stack.settings, port, stack.minio.secrets)
    server.data_dir = tmp_path / "data"
    server.region = "us-east-1"
    server.console_port  # noqa: B018 - derived from port, must be free too
    server.start()
    try:
        server.wait_until_answers()
        client = boto3.client("s3", endpoint_url=f"http://{server.address}", region_name="us-east-1",
                              aws_access_key_id=server.secrets["minio_root_user"],
                              aws_secret_access_key=server.secrets["minio_root_password"])
        client.create_bucket(Bucket="residency-probe")
        # Even when callvault is *configured* with an EU region, the server's truth wins.
        with pytest.raises(ResidencyError, match="located in 'us-east-1'"):
            check_bucket(client, "residency-probe", StorageSettings(region="eu-west-3"))
    finally:
        server.stop()


@mock_aws
def test_aws_bucket_in_us_east_1_is_refused_and_eu_west_3_accepted():
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="cv-us")
    eu = boto3.client("s3", region_name="eu-west-3")
    eu.create_bucket(Bucket="cv-eu", CreateBucketConfiguration={"LocationConstraint": "eu-west-3"})
    settings = StorageSettings(region="eu-west-3", endpoint_url=None)
    with pytest.raises(ResidencyError, match="'cv-us' is located in 'us-east-1'"):
        check_bucket(eu, "cv-us", settings)
    check_bucket(eu, "cv-eu", settings)


@mock_aws
def test_aws_replication_to_a_us_bucket_is_refused():
    eu = boto3.client("s3", region_name="eu-west-3")
    for name, region in (("cv-src", "eu-west-3"), ("cv-dst-us", "us-west-2")):
        boto3.client("s3", region_name=region).create_bucket(
            Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})
        boto3.client("s3", region_name=region).put_bucket_versioning(
            Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    eu.put_bucket_replication(Bucket="cv-src", ReplicationConfiguration={
        "Role": "arn:aws:iam::123456789012:role/replication",
        "Rules": [{"ID": "all", "Status": "Enabled", "Priority": 1, "Filter": {"Prefix": ""},
                   "DeleteMarkerReplication": {"Status": "Disabled"},
                   "Destination": {"Bucket": "arn:aws:s3:::cv-dst-us"}}]})
    with pytest.raises(ResidencyError, match="replicates to 'cv-dst-us' in 'us-west-2'"):
        check_bucket(eu, "cv-src", StorageSettings(region="eu-west-3", endpoint_url=None))


def test_lifecycle_transition_to_an_unverifiable_tier_is_refused():
    """MinIO only accepts transitions to tiers already configured, so the rule is shown with moto."""
    with mock_aws():
        eu = boto3.client("s3", region_name="eu-west-3")
        eu.create_bucket(Bucket="cv-tr", CreateBucketConfiguration={"LocationConstraint": "eu-west-3"})
        eu.put_bucket_lifecycle_configuration(Bucket="cv-tr", LifecycleConfiguration={"Rules": [
            {"ID": "t", "Status": "Enabled", "Filter": {"Prefix": ""},
             "Transitions": [{"Days": 30, "StorageClass": "REMOTE-US-TIER"}]}]})
        with pytest.raises(ResidencyError, match="REMOTE-US-TIER"):
            check_bucket(eu, "cv-tr", StorageSettings(region="eu-west-3", endpoint_url=None))


def test_start_up_check_covers_every_configured_bucket(storage_settings):
    from storage.admin import init_buckets
    from storage.objectstore import s3_client

    init_buckets(storage_settings, say=lambda _m: None)
    check_all(s3_client(storage_settings), storage_settings)
    missing = storage_settings.model_copy(update={"exports_bucket": f"absent-{uuid.uuid4().hex[:8]}"})
    with pytest.raises(Exception, match="absent-"):
        check_all(s3_client(missing), missing)
