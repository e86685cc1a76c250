"""The boto3 data path against the real MinIO: multipart, ranges, tags, legal holds, versioned and batch
delete, and botocore's errors translated into ours."""

from __future__ import annotations

import os

import pytest
from minio.commonconfig import ENABLED
from minio.versioningconfig import VersioningConfig

from core.errors import NotFound
from storage.exceptions import ObjectNotFound, ObjectStoreUnavailable, StorageError
from storage.objectstore import ObjectStore

pytestmark = pytest.mark.integration


@pytest.fixture
def store(minio) -> ObjectStore:
    return ObjectStore(minio.boto3_client())


@pytest.fixture
def versioned_bucket(minio, scratch_bucket) -> str:
    minio.minio_client().set_bucket_versioning(scratch_bucket, VersioningConfig(ENABLED))
    return scratch_bucket


def test_streamed_upload_goes_multipart_and_reads_back_by_range(store, scratch_bucket, minio):
    chunk = os.urandom(1024 * 1024)
    chunks = [chunk] * 20  # 20 MiB: past the 16 MiB multipart threshold
    store.put(scratch_bucket, "big/object", iter(chunks), tags={"tier": "production"})
    head = minio.boto3_client().head_object(Bucket=scratch_bucket, Key="big/object")
    assert head["ContentLength"] == 20 * len(chunk)
    assert "-" in head["ETag"]  # multipart ETags carry the part count
    assert store.get(scratch_bucket, "big/object", start=len(chunk) - 2, end=len(chunk) + 1) == chunk[-2:] + chunk[:2]
    assert store.get_tags(scratch_bucket, "big/object") == {"tier": "production"}


def test_tags_are_rewritten(store, scratch_bucket):
    store.put(scratch_bucket, "k", b"x", tags={"tier": "production"})
    store.put_tags(scratch_bucket, "k", {"tier": "training", "hold": "1"})
    assert store.get_tags(scratch_bucket, "k") == {"tier": "training", "hold": "1"}


def test_missing_object_is_a_domain_error(store, scratch_bucket):
    with pytest.raises(ObjectNotFound, match="does not exist"):
        store.get(scratch_bucket, "nope")
    assert store.head(scratch_bucket, "nope") is None


def test_head_tells_the_object_metadata_by_lower_case_name(store, scratch_bucket):
    store.put(scratch_bucket, "acme/call.wav", b"RIFF", metadata={"Recording-Id": "r1", "agent-id": "a7"})
    info = store.head(scratch_bucket, "acme/call.wav")
    assert (info.size, info.metadata) == (4, {"recording-id": "r1", "agent-id": "a7"})
    store.put(scratch_bucket, "acme/bare.wav", b"RIFF")
    assert store.head(scratch_bucket, "acme/bare.wav").metadata == {}


def test_delete_removes_every_version(store, versioned_bucket, minio):
    for body in (b"v1", b"v2", b"v3"):
        store.put(versioned_bucket, "rec/1", body)
    store.put(versioned_bucket, "rec/10", b"neighbour")  # shares the prefix, must survive
    s3 = minio.boto3_client()
    assert len(s3.list_object_versions(Bucket=versioned_bucket, Prefix="rec/1")["Versions"]) == 4
    assert store.delete(versioned_bucket, "rec/1") == 3
    left = s3.list_object_versions(Bucket=versioned_bucket, Prefix="rec/1")
    assert [v["Key"] for v in left.get("Versions", [])] == ["rec/10"]
    assert left.get("DeleteMarkers", []) == []


def test_batch_delete_of_1500_keys(store, scratch_bucket, minio):
    from concurrent.futures import ThreadPoolExecutor

    keys = [f"batch/{i:05d}" for i in range(1500)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: store.put(scratch_bucket, k, b"."), keys))
    store.put(scratch_bucket, "keep/me", b"!")
    calls = []
    real = store.client.delete_objects
    store.client.delete_objects = lambda **kw: calls.append(len(kw["Delete"]["Objects"])) or real(**kw)
    assert store.delete_many(scratch_bucket, keys) == 1500
    assert calls == [1000, 500]
    assert [o.key for o in store.list(scratch_bucket)] == ["keep/me"]


def test_list_by_prefix(store, scratch_bucket):
    for key in ("t1/a", "t1/b", "t2/a"):
        store.put(scratch_bucket, key, b"1")
    assert sorted(o.key for o in store.list(scratch_bucket, "t1/")) == ["t1/a", "t1/b"]


# -- what legal holds need (``lifecycle.holds`` calls only these) ---------------------------------

def test_object_lock_is_reported_per_bucket(store, scratch_bucket, locked_bucket):
    assert store.object_lock_enabled(locked_bucket)
    assert store.object_lock_enabled(locked_bucket)  # remembered: lock cannot be turned off
    assert not store.object_lock_enabled(scratch_bucket)


def test_legal_hold_on_and_off_of_the_current_version(store, locked_bucket, minio):
    store.put(locked_bucket, "acme/rec/production.cve", b"audio", tags={"tier": "production"})
    assert not store.legal_hold(locked_bucket, "acme/rec/production.cve")  # never set: off

    store.set_legal_hold(locked_bucket, "acme/rec/production.cve", True)

    assert store.legal_hold(locked_bucket, "acme/rec/production.cve")
    status = minio.boto3_client().get_object_legal_hold(Bucket=locked_bucket, Key="acme/rec/production.cve")
    assert status["LegalHold"]["Status"] == "ON"
    store.set_legal_hold(locked_bucket, "acme/rec/production.cve", False)
    assert not store.legal_hold(locked_bucket, "acme/rec/production.cve")
    assert store.delete(locked_bucket, "acme/rec/production.cve") == 1


def test_legal_hold_of_one_version(store, locked_bucket):
    key = "acme/rec/monitoring.cve"
    store.put(locked_bucket, key, b"first", tags={"tier": "monitoring"})
    first = store.head(locked_bucket, key).version_id
    store.put(locked_bucket, key, b"second", tags={"tier": "monitoring"})

    store.set_legal_hold(locked_bucket, key, True, version=first)

    assert store.legal_hold(locked_bucket, key, version=first)
    assert not store.legal_hold(locked_bucket, key)  # the current version is another one
    assert store.delete(locked_bucket, key) == 1  # the held version is kept
    assert [v for k, v in store.versions(locked_bucket, key)] == [first]
    store.set_legal_hold(locked_bucket, key, False, version=first)
    assert store.delete(locked_bucket, key) == 1


def test_legal_hold_without_object_lock_is_off_and_cannot_be_set(store, scratch_bucket):
    store.put(scratch_bucket, "k", b"x")
    assert not store.legal_hold(scratch_bucket, "k")
    with pytest.raises(StorageError, match=f"s3://{scratch_bucket}/k") as refused:
        store.set_legal_hold(scratch_bucket, "k", True)
    assert not isinstance(refused.value, ObjectNotFound)


def test_tags_and_holds_of_a_missing_object_are_not_found(store, locked_bucket):
    for call in (lambda: store.get_tags(locked_bucket, "gone"),
                 lambda: store.put_tags(locked_bucket, "gone", {"tier": "training"}),
                 lambda: store.set_legal_hold(locked_bucket, "gone", True)):
        with pytest.raises(ObjectNotFound, match="does not exist") as missing:
            call()
        assert isinstance(missing.value, NotFound)  # one not-found family: the API answers 404


def test_an_unreachable_store_is_unavailable_not_a_botocore_error(minio):
    import boto3
    from botocore.config import Config

    down = ObjectStore(boto3.client("s3", endpoint_url="http://127.0.0.1:9", region_name=minio.region,
                                    aws_access_key_id="x", aws_secret_access_key="y",
                                    config=Config(retries={"max_attempts": 1}, connect_timeout=1)))
    for call in (lambda: down.get_tags("b", "k"), lambda: down.put_tags("b", "k", {}),
                 lambda: down.object_lock_enabled("b"), lambda: down.set_legal_hold("b", "k", True),
                 lambda: down.legal_hold("b", "k")):
        with pytest.raises(ObjectStoreUnavailable, match="unreachable"):
            call()
