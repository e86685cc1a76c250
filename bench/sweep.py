"""Sweep cost against catalog size: E expired copies among E (the baseline) vs among T total.

Same run, same servers: a PostgreSQL schema and a MinIO bucket of its own per case; the
expired copies have real objects (the sweeper deletes every version), the unexpired ones are
catalog rows only (the sweeper must not even look at them). The ratio (among T ÷ among E)
shows whether the sweep's cost grows with the catalog or only with what expired.

    python -m bench.sweep [--expired 10000] [--total 200000]
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import boto3
import sqlalchemy as sa
from botocore.config import Config

from deploy.local.stack import Stack
from lifecycle.sweeper import sweep
from storage.catalog import tables as t
from storage.catalog.db import make_engine
from storage.catalog.migrate import upgrade
from storage.objectstore import ObjectStore

OUT = Path(__file__).parent / "out"


def _case(stack: Stack, expired: int, total: int) -> dict:
    tag = uuid.uuid4().hex[:8]
    schema, bucket = f"bench_sweep_{tag}", f"bench-sweep-{tag}"
    admin = sa.create_engine(stack.postgres_url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    engine = make_engine(f"{stack.postgres_url}?options=-csearch_path%3D{schema}", echo=False)
    secrets = stack.minio.secrets
    s3 = boto3.client("s3", endpoint_url=f"http://{stack.minio.address}", region_name=stack.settings.minio_region,
                      aws_access_key_id=secrets["minio_root_user"], aws_secret_access_key=secrets["minio_root_password"],
                      config=Config(s3={"addressing_style": "path"}, max_pool_connections=32))
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": stack.settings.minio_region})
    store = ObjectStore(s3)
    try:
        upgrade(engine)
        now = datetime.now(timezone.utc)
        key_id = uuid.uuid4()
        with engine.begin() as conn:
            conn.execute(t.tenants.insert().values(id="acme", name="Acme", created_at=now))
            conn.execute(t.caller_keys.insert().values(id=key_id, tenant_id="acme", number_hash="h" * 64,
                                                       wrapped_key=b"k", created_at=now))
        expired_keys = []
        for start in range(0, total, 20_000):
            recordings, copies = [], []
            for i in range(start, min(total, start + 20_000)):
                rid = uuid.uuid4()
                is_expired = i < expired
                recordings.append(dict(id=rid, tenant_id="acme", external_id=f"x{i}", started_at=now, direction="inbound",
                                       caller_number="+33600000000", number_hash="h" * 64, agent_id="a", team_id="t",
                                       duration_ms=1000, audio_format="opus", channels=1, redactions=[],
                                       created_at=now, content_sha256="0" * 64))
                key = f"acme/{rid}/production.cve"
                copies.append(dict(id=uuid.uuid4(), recording_id=rid, tier="production", reason="", object_key=key,
                                   bucket=bucket, size_bytes=4, stored_sha256="0" * 64, wrapped_data_key=b"w",
                                   caller_key_id=key_id, frame_size=1024, created_at=now, created_by="bench",
                                   expires_at=now - timedelta(days=1) if is_expired else now + timedelta(days=60)))
                if is_expired:
                    expired_keys.append(key)
            with engine.begin() as conn:
                conn.execute(t.recordings.insert(), recordings)
                conn.execute(t.copies.insert(), copies)
        with engine.begin() as conn:
            conn.execute(sa.text("ANALYZE"))
        with ThreadPoolExecutor(32) as pool:
            list(pool.map(lambda k: s3.put_object(Bucket=bucket, Key=k, Body=b"data"), expired_keys))
        started = time.perf_counter()
        report = sweep(engine, store, now=now, batch_size=500)
        elapsed = time.perf_counter() - started
        assert report.deleted_copies == expired, report
        return {"expired": expired, "total": total, "seconds": round(elapsed, 2),
                "copies_per_s": round(expired / elapsed, 1)}
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            doomed = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                      for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
            if doomed:
                s3.delete_objects(Bucket=bucket, Delete={"Objects": doomed, "Quiet": True})
        s3.delete_bucket(Bucket=bucket)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--expired", type=int, default=10_000)
    parser.add_argument("--total", type=int, default=200_000)
    args = parser.parse_args()
    stack = Stack.from_settings()
    stack.up(say=lambda _m: None)
    baseline = _case(stack, args.expired, args.expired)
    large = _case(stack, args.expired, args.total)
    result = {"baseline": baseline, "large": large, "ratio": round(large["seconds"] / baseline["seconds"], 2)}
    OUT.mkdir(exist_ok=True)
    (OUT / "sweep.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
