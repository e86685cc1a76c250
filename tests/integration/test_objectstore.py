"""The boto3 data path against the real MinIO: multipart, ranges, tags, versioned and batch delete."""

from __future__ import annotations

import os

import pytest
from minio.commonconfig import ENABLED
from minio.versioningconfig import VersioningConfig

from storage.exceptions import ObjectNotFound
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
