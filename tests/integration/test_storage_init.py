"""`storage init` against the real MinIO: buckets, versioning, object lock, SSE, lifecycle; idempotent."""

from __future__ import annotations

import pytest
from minio.commonconfig import ENABLED

from core.vocabulary import Tier
from storage.admin import init_buckets, minio_admin_client, tier_backstop_days

pytestmark = pytest.mark.integration


def test_init_creates_configured_buckets_then_changes_nothing(storage_settings):
    first = init_buckets(storage_settings, say=lambda _m: None)
    assert any("created" in c for c in first.changes)
    client = minio_admin_client(storage_settings)
    rec = storage_settings.recordings_bucket
    assert client.get_bucket_versioning(rec).status == ENABLED
    assert client.get_object_lock_config(rec) is not None
    assert client.get_bucket_encryption(rec) is not None
    rules = {r.rule_id: r for r in client.get_bucket_lifecycle(rec).rules}
    backstop = tier_backstop_days()
    for tier in Tier:
        rule = rules[f"backstop-{tier.value}"]
        assert rule.rule_filter.tag.key == "tier" and rule.rule_filter.tag.value == tier.value
        assert rule.expiration.days == backstop[tier]
    landing_rules = {r.rule_id: r for r in client.get_bucket_lifecycle(storage_settings.landing_bucket).rules}
    assert landing_rules["landing-stragglers"].expiration.days == 1

    second = init_buckets(storage_settings, say=lambda _m: None)
    assert second.changes == []


def test_init_repairs_a_bucket_whose_versioning_was_suspended(storage_settings):
    from minio.versioningconfig import SUSPENDED, VersioningConfig

    init_buckets(storage_settings, say=lambda _m: None)
    client = minio_admin_client(storage_settings)
    client.set_bucket_versioning(storage_settings.landing_bucket, VersioningConfig(SUSPENDED))
    report = init_buckets(storage_settings, say=lambda _m: None)
    assert report.changes == [f"{storage_settings.landing_bucket}: versioning enabled"]
