"""A held copy stays out of reach of the S3 lifecycle backstop and of direct deletes, on real
MinIO (the recordings bucket made by ``storage init``, with object lock) and with the catalog
on SQLite and PostgreSQL.

What is checked is what MinIO holds: the bucket's lifecycle configuration as MinIO returns it,
the object's tags and legal hold as MinIO returns them, matched by a small pure evaluator of
S3 lifecycle filters (``rules_matching``).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from botocore.exceptions import ClientError

from lifecycle.copies import create_copy
from lifecycle.holds import release_hold, set_hold
from storage.catalog import tables as t
from storage.copies import read_copy
from tests.support.catalog import NOW, store_copy

pytestmark = pytest.mark.integration


# --- a pure evaluator of S3 lifecycle rule filters -------------------------------------------

def _filter_matches(flt: dict, key: str, tags: dict[str, str]) -> bool:
    """S3 semantics: a Tag filter needs that key=value; a Prefix filter, the key prefix; And, all."""
    unknown = set(flt) - {"Prefix", "Tag", "And"}
    if unknown:  # size filters and the like: never silently treat an unknown filter as "no match"
        raise ValueError(f"filter element not understood: {sorted(unknown)}")
    if "Prefix" in flt and not key.startswith(flt["Prefix"]):
        return False
    if "Tag" in flt and tags.get(flt["Tag"]["Key"]) != flt["Tag"]["Value"]:
        return False
    if "And" in flt:
        conj = flt["And"]
        if set(conj) - {"Prefix", "Tags"}:
            raise ValueError(f"And element not understood: {sorted(conj)}")
        if not key.startswith(conj.get("Prefix", "")):
            return False
        if any(tags.get(tag["Key"]) != tag["Value"] for tag in conj.get("Tags", [])):
            return False
    return True


def rules_matching(rules: list[dict], key: str, tags: dict[str, str]) -> set[str]:
    """Ids of the enabled rules whose filter selects this object (a legacy rule has a top-level Prefix)."""
    return {r.get("ID", "") for r in rules if r["Status"] == "Enabled"
            and _filter_matches(r["Filter"] if "Filter" in r else {"Prefix": r.get("Prefix", "")}, key, tags)}


def test_the_filter_evaluator():
    rules = [
        {"ID": "tag", "Status": "Enabled", "Filter": {"Tag": {"Key": "tier", "Value": "training"}}},
        {"ID": "prefix", "Status": "Enabled", "Filter": {"Prefix": "acme/"}},
        {"ID": "everything", "Status": "Enabled", "Filter": {"Prefix": ""}},
        {"ID": "legacy", "Status": "Enabled", "Prefix": "bobco/"},
        {"ID": "and", "Status": "Enabled", "Filter": {"And": {"Prefix": "acme/", "Tags": [
            {"Key": "tier", "Value": "training"}, {"Key": "tenant", "Value": "acme"}]}}},
        {"ID": "off", "Status": "Disabled", "Filter": {"Prefix": ""}},
    ]
    assert rules_matching(rules, "acme/r/training.cve", {"tier": "training", "tenant": "acme"}) == {
        "tag", "prefix", "everything", "and"}
    assert rules_matching(rules, "acme/r/training.cve", {"tier": "training"}) == {"tag", "prefix", "everything"}
    assert rules_matching(rules, "bobco/r/x.cve", {"held-tier": "training", "tenant": "acme"}) == {
        "everything", "legacy"}
    with pytest.raises(ValueError, match="ObjectSizeGreaterThan"):
        rules_matching([{"ID": "size", "Status": "Enabled", "Filter": {"ObjectSizeGreaterThan": 1}}], "k", {})


# --- against MinIO ---------------------------------------------------------------------------

def _state(store, bucket: str, key: str) -> tuple[dict[str, str], set[str], str]:
    """(tags, ids of the bucket's lifecycle rules that select the object, legal hold status), read from MinIO."""
    rules = store.client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    tags = {t_["Key"]: t_["Value"] for t_ in store.client.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]}
    try:
        legal = store.client.get_object_legal_hold(Bucket=bucket, Key=key)["LegalHold"]["Status"]
    except ClientError as exc:  # never set on this version
        assert exc.response["Error"]["Code"] == "NoSuchObjectLockConfiguration"
        legal = "OFF"
    return tags, rules_matching(rules, key, tags), legal


def _two_copies(catalog, store, keys, bucket):
    """A production copy (as ingest tags it) and a training copy made by ``create_copy``."""
    rid, _, prod, prod_key = store_copy(catalog, store, keys, bucket, b"p" * 3000)
    store.put_tags(bucket, prod_key, {"tier": "production", "tenant": "acme"})
    with catalog.begin() as conn:
        training = create_copy(conn, store, keys, recording_id=rid, tier="training", actor="coach-1",
                               now=NOW - timedelta(days=2), training_report="onboarding").copy_id
        training_key = conn.execute(sa.select(t.copies.c.object_key).where(t.copies.c.id == training)).scalar()
    return rid, {prod: ("production", prod_key), training: ("training", training_key)}


def test_held_objects_match_no_backstop_rule_and_get_it_back_on_release(catalog, store, keys, locked_bucket):
    bucket = locked_bucket
    rid, copies = _two_copies(catalog, store, keys, bucket)
    for tier, key in copies.values():  # before: each object is under exactly its tier's rule
        assert _state(store, bucket, key) == ({"tier": tier, "tenant": "acme"}, {f"backstop-{tier}"}, "OFF")

    with catalog.begin() as conn:
        result = set_hold(conn, store, recording_id=rid, reason="litigation L-12", actor="ic-1", now=NOW)
    assert sorted(result.changed) == sorted(copies) and (result.retagged, result.mirrored) == (2, 2)
    for tier, key in copies.values():
        assert _state(store, bucket, key) == ({"held-tier": tier, "tenant": "acme"}, set(), "ON")
    with catalog.connect() as conn:  # and still readable
        assert all(read_copy(conn, store, keys, cid) for cid in copies)
    version = store.client.head_object(Bucket=bucket, Key=copies[result.changed[0]][1])["VersionId"]
    with pytest.raises(ClientError):
        store.client.delete_object(Bucket=bucket, Key=copies[result.changed[0]][1], VersionId=version)

    with catalog.begin() as conn:
        released = release_hold(conn, store, recording_id=rid, actor="ic-1", now=NOW)
    assert (released.retagged, released.mirrored) == (2, 2)
    for tier, key in copies.values():  # after: back under exactly its tier's rule, deletable again
        assert _state(store, bucket, key) == ({"tier": tier, "tenant": "acme"}, {f"backstop-{tier}"}, "OFF")


def test_holding_again_reprotects_an_object_that_lost_its_protection(catalog, store, keys, locked_bucket):
    bucket = locked_bucket
    _, _, cid, key = store_copy(catalog, store, keys, bucket, b"r" * 1000)
    with catalog.begin() as conn:
        set_hold(conn, store, copy_ids=[cid], reason="case 4", actor="ic-1", now=NOW)
    # The object drifts back under the rules (e.g. a release whose S3 step ran but whose commit failed):
    store.put_tags(bucket, key, {"tier": "production"})
    store.set_legal_hold(bucket, key, False)
    assert _state(store, bucket, key)[1:] == ({"backstop-production"}, "OFF")
    with catalog.begin() as conn:
        again = set_hold(conn, store, copy_ids=[cid], reason="case 4", actor="ic-1", now=NOW)
    assert again.unchanged == [cid] and again.changed == [] and again.retagged == 1
    assert _state(store, bucket, key) == ({"held-tier": "production"}, set(), "ON")


def test_a_failed_release_leaves_every_object_protected(catalog, store, keys, locked_bucket):
    bucket = locked_bucket
    rid, copies = _two_copies(catalog, store, keys, bucket)
    with catalog.begin() as conn:
        set_hold(conn, store, recording_id=rid, reason="case 5", actor="ic-1", now=NOW)
    failing_key = next(key for tier, key in copies.values() if tier == "training")
    real = store.client.put_object_legal_hold

    def flaky(**kw):
        if kw["Key"] == failing_key and kw["LegalHold"]["Status"] == "OFF":
            raise ClientError({"Error": {"Code": "InternalError", "Message": "boom"},
                               "ResponseMetadata": {"HTTPStatusCode": 500}}, "PutObjectLegalHold")
        return real(**kw)

    store.client.put_object_legal_hold = flaky
    with pytest.raises(Exception, match="500 InternalError"), catalog.begin() as conn:
        release_hold(conn, store, recording_id=rid, actor="ic-1", now=NOW)
    store.client.put_object_legal_hold = real
    with catalog.connect() as conn:  # the release rolled back...
        assert conn.execute(sa.select(t.copies.c.hold).where(t.copies.c.recording_id == rid)).scalars().all() \
            == [True, True]
    for tier, key in copies.values():  # ...and no object was left under a rule or without its legal hold
        assert _state(store, bucket, key) == ({"held-tier": tier, "tenant": "acme"}, set(), "ON")


def test_without_object_lock_the_hold_still_retags_and_a_missing_object_is_listed(
        catalog, store, keys, scratch_bucket):
    _, _, cid, key = store_copy(catalog, store, keys, scratch_bucket, b"n" * 500)
    _, _, gone, gone_key = store_copy(catalog, store, keys, scratch_bucket, b"g" * 500)
    store.delete(scratch_bucket, gone_key)
    assert not store.object_lock_enabled(scratch_bucket)
    with catalog.begin() as conn:
        result = set_hold(conn, store, copy_ids=[cid, gone], reason="case 6", actor="ic-1", now=NOW)
    assert sorted(result.changed) == sorted([cid, gone])
    assert (result.retagged, result.mirrored, result.missing) == (1, 0, [gone])
    assert store.get_tags(scratch_bucket, key) == {"held-tier": "production"}
    assert not store.legal_hold(scratch_bucket, key)
    with catalog.begin() as conn:
        released = release_hold(conn, store, copy_ids=[cid, gone], actor="ic-1", now=NOW)
    assert (released.retagged, released.missing) == (1, [gone])
    assert store.get_tags(scratch_bucket, key) == {"tier": "production"}


def test_deleting_a_key_keeps_its_versions_under_legal_hold_and_deletes_the_rest(store, locked_bucket):
    """A held version is protected by the bucket's object lock: a sweep or an erasure of a copy
    written over it under the same key deletes the newer version and keeps the held one, instead
    of failing the whole deletion (and with it every later sweep or erasure replay)."""
    bucket, key = locked_bucket, "acme/rec-1/monitoring.cve"
    store.put(bucket, key, b"held evidence", tags={"tier": "monitoring"})
    store.set_legal_hold(bucket, key, True)
    store.put(bucket, key, b"a later copy under the same key", tags={"tier": "monitoring"})
    store.put(bucket, "acme/rec-2/monitoring.cve", b"unheld", tags={"tier": "monitoring"})

    deleted = store.delete_many(bucket, [key, "acme/rec-2/monitoring.cve"])

    assert deleted == 2
    assert store.get(bucket, key) == b"held evidence"
    assert store.legal_hold(bucket, key)
    assert [k for k, _ in store.versions(bucket, "acme/")] == [key]
