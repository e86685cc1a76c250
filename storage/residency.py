"""The residency guard: audio, extracts, exports and the catalog stay in allowed regions.

Checked at start-up and before any write, on the configuration *and* on what the server
says: a bucket's real location (GetBucketLocation), its replication destinations, and its
lifecycle transitions. Every refusal is a ``ResidencyError`` naming the setting or bucket.
"""

from __future__ import annotations

import re
from urllib.parse import urlparse

from botocore.exceptions import BotoCoreError, ClientError

from .exceptions import ResidencyError
from .objectstore import translate
from .settings import StorageSettings

# Storage classes that keep data in the bucket's own region on AWS S3. A transition to any
# other class (on MinIO: a remote tier, which may be anywhere) is refused.
IN_REGION_STORAGE_CLASSES = frozenset({
    "STANDARD", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER", "GLACIER_IR", "DEEP_ARCHIVE",
})
_AWS_HOST = re.compile(r"(?:^|\.)s3[.-](?:dualstack\.)?(?P<region>[a-z]{2}(?:-gov)?-[a-z]+-\d)\.amazonaws\.com")


def check_settings(settings: StorageSettings) -> None:
    """Refuse a missing or non-allowed region, and an AWS endpoint in another region."""
    allowed = set(settings.allowed_regions)
    if not settings.region:
        raise ResidencyError("CALLVAULT_STORAGE_REGION", "no region is configured; audio must stay in the EU/EEA",
                             hint=f"set it to one of {sorted(allowed)}")
    if settings.region not in allowed:
        raise ResidencyError("CALLVAULT_STORAGE_REGION", f"region {settings.region!r} is outside the allowed "
                             f"regions {sorted(allowed)}", hint="choose an EU/EEA region")
    if settings.endpoint_url:
        host = urlparse(settings.endpoint_url).hostname or ""
        match = _AWS_HOST.search(host)
        if match and match.group("region") not in allowed:
            raise ResidencyError("CALLVAULT_STORAGE_ENDPOINT_URL", f"endpoint {host} serves region "
                                 f"{match.group('region')!r}, outside the allowed regions")


def bucket_region(client, bucket: str) -> str:
    try:
        location = client.get_bucket_location(Bucket=bucket).get("LocationConstraint")
    except (ClientError, BotoCoreError) as exc:
        raise translate(exc, bucket=bucket) from exc
    # AWS reports us-east-1 as an empty constraint, and the legacy EU as "EU".
    return {None: "us-east-1", "": "us-east-1", "EU": "eu-west-1"}.get(location, location)


def check_bucket(client, bucket: str, settings: StorageSettings, *, setting: str = "bucket") -> None:
    """Refuse a bucket whose actual location, replication or transition target is not allowed."""
    allowed = set(settings.allowed_regions)
    region = bucket_region(client, bucket)
    if region not in allowed:
        raise ResidencyError(setting, f"bucket {bucket!r} is located in {region!r}, outside the allowed "
                             f"regions {sorted(allowed)}", hint="use a bucket created in an EU/EEA region")
    for dest in _replication_destinations(client, bucket):
        dest_region = bucket_region(client, dest)
        if dest_region not in allowed:
            raise ResidencyError(setting, f"bucket {bucket!r} replicates to {dest!r} in {dest_region!r}, "
                                 "outside the allowed regions", hint="remove that replication rule")
    for storage_class in _transition_classes(client, bucket):
        if storage_class not in IN_REGION_STORAGE_CLASSES:
            raise ResidencyError(setting, f"bucket {bucket!r} transitions objects to {storage_class!r}, a tier "
                                 "whose location cannot be verified", hint="remove that lifecycle transition")


def _replication_destinations(client, bucket: str) -> list[str]:
    try:
        rules = client.get_bucket_replication(Bucket=bucket)["ReplicationConfiguration"]["Rules"]
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in {"ReplicationConfigurationNotFoundError", "NoSuchReplicationConfiguration", "NotImplemented"}:
            return []
        raise translate(exc, bucket=bucket) from exc
    return [r["Destination"]["Bucket"].removeprefix("arn:aws:s3:::") for r in rules if r.get("Destination")]


def _transition_classes(client, bucket: str) -> list[str]:
    try:
        rules = client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in {"NoSuchLifecycleConfiguration", "NotImplemented"}:
            return []
        raise translate(exc, bucket=bucket) from exc
    classes = []
    for rule in rules:
        for t in rule.get("Transitions", []) + rule.get("NoncurrentVersionTransitions", []):
            classes.append(t.get("StorageClass", ""))
    return classes


def check_all(client, settings: StorageSettings) -> None:
    """The start-up check: configuration first, then every bucket callvault writes to."""
    check_settings(settings)
    for setting, bucket in (("CALLVAULT_STORAGE_RECORDINGS_BUCKET", settings.recordings_bucket),
                            ("CALLVAULT_STORAGE_LANDING_BUCKET", settings.landing_bucket),
                            ("CALLVAULT_STORAGE_EXPORTS_BUCKET", settings.exports_bucket),
                            ("CALLVAULT_STORAGE_LEDGER_BUCKET", settings.ledger_bucket)):
        check_bucket(client, bucket, settings, setting=setting)
