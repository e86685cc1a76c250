"""``callvault storage init``: buckets with versioning, object lock, default encryption and
tag-based lifecycle rules, through the minio SDK (which speaks to MinIO and AWS S3 alike); and
the landing bucket's notification to the S3 drop's Kafka target (MinIO).

Idempotent: each step reads the current state first and reports only what it changed.
The lifecycle rules are a backstop to the sweeper, never the primary mechanism: an object
tagged ``tier=X`` expires after tier X's longest allowed retention plus a grace period.

Held objects are out of the rules' reach. A rule knows nothing of holds, and S3 object legal
hold is no shield: on a versioned bucket an Expiration rule still puts a delete marker on a
legally held current version, after which a plain GET answers 404 and the evidence is lost
for every reader. So ``lifecycle.holds`` retags a held copy's object ``held-tier=X`` instead
of ``tier=X`` (other tags kept; see ``held_tags``), which no rule here matches, and puts
``tier=X`` back on release (``released_tags``). Hence, in the buckets that hold copies, every
rule that expires objects filters on the ``tier`` tag alone: one filtering on a prefix, or
on nothing, would reach held objects too (the landing bucket holds no copies).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import urlparse

from minio import Minio
from minio.commonconfig import ENABLED, Filter, Tags
from minio.error import S3Error
from minio.lifecycleconfig import (
    AbortIncompleteMultipartUpload,
    Expiration,
    LifecycleConfig,
    NoncurrentVersionExpiration,
    Rule,
)
from minio.notificationconfig import NotificationConfig, QueueConfig
from minio.sseconfig import Rule as SSERule
from minio.sseconfig import SSEConfig
from minio.versioningconfig import VersioningConfig

from core.vocabulary import DEFAULT_MAX_MONTHS, Tier

from .exceptions import StorageError
from .settings import StorageSettings

GRACE_DAYS = 7
LANDING_EXPIRY_DAYS = 1
TIER_TAG = "tier"            # the object tag the backstop rules match
HELD_TIER_TAG = "held-tier"  # what a held object carries instead: no rule matches it


def held_tags(tags: dict[str, str], tier: str) -> dict[str, str]:
    """An object's tags while its copy is held: ``tier`` becomes ``held-tier``, others kept."""
    kept = {k: v for k, v in tags.items() if k not in (TIER_TAG, HELD_TIER_TAG)}
    return {**kept, HELD_TIER_TAG: tier}


def released_tags(tags: dict[str, str], tier: str) -> dict[str, str]:
    """An object's tags once its hold is released: back under its tier's backstop rule."""
    kept = {k: v for k, v in tags.items() if k not in (TIER_TAG, HELD_TIER_TAG)}
    return {**kept, TIER_TAG: tier}


def minio_admin_client(settings: StorageSettings) -> Minio:
    url = urlparse(settings.endpoint_url or f"https://s3.{settings.region}.amazonaws.com")
    return Minio(
        url.netloc, secure=url.scheme == "https", region=settings.region,
        access_key=settings.access_key.get_secret_value() if settings.access_key else None,
        secret_key=settings.secret_key.get_secret_value() if settings.secret_key else None,
    )


def tier_backstop_days(max_months: dict[Tier, int] | None = None) -> dict[Tier, int]:
    """Days after which the store itself expires a tier's objects: longest retention + grace."""
    months = max_months or DEFAULT_MAX_MONTHS
    return {tier: months[tier] * 31 + GRACE_DAYS for tier in Tier}


@dataclass
class InitReport:
    changes: list[str] = field(default_factory=list)

    def add(self, what: str) -> None:
        self.changes.append(what)


def _lifecycle_for(bucket_kind: str, max_months: dict[Tier, int] | None, *, aws: bool) -> LifecycleConfig:
    rules = []
    if aws:  # MinIO rejects this element (it cleans stale multipart uploads by itself)
        rules.append(Rule(ENABLED, rule_filter=Filter(prefix=""), rule_id="abort-incomplete-uploads",
                          abort_incomplete_multipart_upload=AbortIncompleteMultipartUpload(days_after_initiation=1)))
    if bucket_kind == "landing":
        rules.append(Rule(ENABLED, rule_filter=Filter(prefix=""), rule_id="landing-stragglers",
                          expiration=Expiration(days=LANDING_EXPIRY_DAYS),
                          noncurrent_version_expiration=NoncurrentVersionExpiration(noncurrent_days=1)))
        return LifecycleConfig(rules)
    for tier, days in tier_backstop_days(max_months).items():
        tag = Tags.new_object_tags()
        tag[TIER_TAG] = tier.value
        rules.append(Rule(ENABLED, rule_filter=Filter(tag=tag), rule_id=f"backstop-{tier.value}",
                          expiration=Expiration(days=days),
                          noncurrent_version_expiration=NoncurrentVersionExpiration(noncurrent_days=1)))
    return LifecycleConfig(rules)


DROP_EVENTS = ["s3:ObjectCreated:*"]


def _announce_drops(client: Minio, settings: StorageSettings, report: InitReport) -> None:
    """The landing bucket's new objects are announced to ``drop_notify_arn`` (MinIO's Kafka
    target): how the S3 drop reaches the worker, with no poller of ours."""
    target, bucket = settings.drop_notify_target, settings.landing_bucket
    if not target or not settings.endpoint_url:  # AWS: S3 event notifications are set up outside (README)
        return
    arn = f"arn:minio:sqs:{settings.region}:{target}:kafka"
    current = [(q.queue, sorted(q.events)) for q in client.get_bucket_notification(bucket).queue_config_list]
    if current == [(arn, DROP_EVENTS)]:
        return
    try:
        client.set_bucket_notification(bucket, NotificationConfig(queue_config_list=[
            QueueConfig(DROP_EVENTS, config_id="callvault-drop", queue=arn)]))
    except S3Error as exc:
        raise StorageError(f"{bucket}: the object store refused notification target {arn}: {exc.code}",
                           hint="MinIO needs its Kafka target (`callvault stack up` starts it with one); "
                                "set CALLVAULT_STORAGE_DROP_NOTIFY_TARGET= to do without the S3 drop") from exc
    report.add(f"{bucket}: new objects announced to {arn} (the S3 drop)")


def _rules_signature(config: LifecycleConfig | None) -> set[tuple]:
    if config is None:
        return set()
    return {(r.rule_id, r.expiration.days if r.expiration else None) for r in config.rules}


def init_buckets(settings: StorageSettings, *, client: Minio | None = None,
                 max_months: dict[Tier, int] | None = None, say: Callable[[str], None] = print) -> InitReport:
    """Create or fix the three buckets; return what changed (empty on a second run)."""
    client = client or minio_admin_client(settings)
    report = InitReport()
    buckets = {"recordings": settings.recordings_bucket, "landing": settings.landing_bucket,
               "exports": settings.exports_bucket}
    try:
        for kind, bucket in buckets.items():
            if not client.bucket_exists(bucket):
                client.make_bucket(bucket, location=settings.region, object_lock=kind != "landing")
                report.add(f"{bucket}: created in {settings.region}"
                           + (" with object lock" if kind != "landing" else ""))
            if client.get_bucket_versioning(bucket).status != ENABLED:
                client.set_bucket_versioning(bucket, VersioningConfig(ENABLED))
                report.add(f"{bucket}: versioning enabled")
            if client.get_bucket_encryption(bucket) is None:
                client.set_bucket_encryption(bucket, SSEConfig(SSERule.new_sse_s3_rule()))
                report.add(f"{bucket}: default server-side encryption (SSE-S3) set")
            wanted = _lifecycle_for(kind, max_months, aws=not settings.endpoint_url)
            if _rules_signature(client.get_bucket_lifecycle(bucket)) != _rules_signature(wanted):
                client.set_bucket_lifecycle(bucket, wanted)
                report.add(f"{bucket}: lifecycle rules set ({len(wanted.rules)} rules)")
            if kind == "landing":
                _announce_drops(client, settings, report)
    except S3Error as exc:
        raise StorageError(f"storage init failed on bucket {exc.bucket_name}: {exc.code}: {exc.message}",
                           hint="check the credentials' permissions and the endpoint") from exc
    for line in report.changes or ["nothing to change: buckets already as configured"]:
        say(line)
    return report
