"""The worker's start against the ledger's age: the replay of N journalled erasures, from the
start of the ledger (no cursor: what every start did before 0012) and from the cursor the last
replay left (what a start does now), each against a raw floor in the same run.

Setup, not timed: a scratch PostgreSQL schema (migrated to head) with one tenant, and a scratch
prefix of the stack's object-locked ledger bucket holding N erasure entries (each naming one
caller key, recording and copy id that the catalog does not have: the usual case, a catalog that
already reflects them) written with ``ErasureLedger.record``, 16 at a time.

Timed, alternating, ``--rounds`` times each:
- ``replay, whole ledger``: ``lifecycle.erasures.replay_ledger`` with the cursor rows deleted first;
- ``raw, whole ledger``: the floor of reading it: one boto3 listing of the prefix, then one GET
  of each entry, no catalog;
- ``replay, from the cursor``: ``replay_ledger`` after a replay that settled every entry;
- ``raw, listing after the cursor``: one boto3 ListObjectsV2 with ``StartAfter`` the last key.

    .venv/bin/python -m bench.ledger_replay [--entries 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import sqlalchemy as sa

    from lifecycle.erasures import replay_ledger
    from storage.catalog import tables as t
    from storage.catalog.db import make_engine
    from storage.catalog.migrate import upgrade
    from storage.keys import KeyRing
    from storage.ledger import ErasureLedger, LedgerEntry
    from storage.objectstore import ObjectStore, s3_client

    st = common.stack()
    prefix = common.unique("bench-ledger")
    schema, url = common.pg_schema(st, prefix)
    settings = common.storage_settings(st, prefix).model_copy(update={
        "ledger_bucket": "callvault-bench-ledger", "ledger_prefix": f"{prefix}/", "ledger_retention_days": 1})
    try:
        from storage.admin import minio_admin_client
        from storage.ledger import init_ledger_bucket

        init_ledger_bucket(minio_admin_client(settings), settings, say=lambda _m: None)
        upgrade(url)
        engine = make_engine(url, echo=False)
        with engine.begin() as conn:
            conn.execute(t.tenants.insert().values(id="acme", name="Acme", created_at=datetime.now(timezone.utc)))
        store = ObjectStore.from_settings(settings)
        ledger = ErasureLedger.from_settings(store, settings)
        keys = KeyRing.from_settings(settings)
        now = datetime.now(timezone.utc)

        def one(_i: int) -> None:
            ledger.record(LedgerEntry(tenant="acme", key_ids=[str(uuid.uuid4())], recording_ids=[str(uuid.uuid4())],
                                      copy_ids=[str(uuid.uuid4())], number_hashes=[uuid.uuid4().hex * 2]), now=now)

        common.say(f"writing {args.entries} ledger entries under {settings.ledger_prefix}")
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(one, range(args.entries)))
        s3 = s3_client(settings)
        erase_prefix = f"{settings.ledger_prefix}erase/"

        def replay_whole() -> int:
            with engine.begin() as conn:
                conn.execute(t.ledger_cursors.delete())
            return replay_ledger(engine, store, keys, ledger, now=now, settle_seconds=0).entries

        def raw_whole() -> int:
            names = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(
                Bucket=settings.ledger_bucket, Prefix=erase_prefix) for o in page.get("Contents", [])]
            for name in names:
                s3.get_object(Bucket=settings.ledger_bucket, Key=name)["Body"].read()
            return len(names)

        def replay_cursor() -> int:
            return replay_ledger(engine, store, keys, ledger, now=now, settle_seconds=0).entries

        def raw_cursor() -> int:
            with engine.connect() as conn:
                last = conn.execute(sa.select(t.ledger_cursors.c.last_key).where(
                    t.ledger_cursors.c.journal == "erase")).scalar_one()
            return s3.list_objects_v2(Bucket=settings.ledger_bucket, Prefix=erase_prefix, StartAfter=last)["KeyCount"]

        cases = {"replay, whole ledger": replay_whole, "raw, whole ledger": raw_whole,
                 "replay, from the cursor": replay_cursor, "raw, listing after the cursor": raw_cursor}
        times: dict[str, list[float]] = {name: [] for name in cases}
        read: dict[str, int] = {}
        common.wait_quiet()
        for _round in range(args.rounds):
            for name, fn in cases.items():
                t0 = time.perf_counter()
                read[name] = fn()
                times[name].append(time.perf_counter() - t0)
        result = {"machine": common.machine(st), "at": common.now_iso(), "entries": args.entries,
                  "cases": {name: {"median_s": common.median(ts), "runs_s": ts, "entries_read": read[name]}
                            for name, ts in times.items()}}
        whole = result["cases"]["replay, whole ledger"]["median_s"] / result["cases"]["raw, whole ledger"]["median_s"]
        cursor = (result["cases"]["replay, from the cursor"]["median_s"]
                  / result["cases"]["raw, listing after the cursor"]["median_s"])
        result["ratios"] = {"whole ledger vs raw": whole, "from the cursor vs raw": cursor,
                            "start, before vs now": result["cases"]["replay, whole ledger"]["median_s"]
                            / result["cases"]["replay, from the cursor"]["median_s"]}
        for name, case in result["cases"].items():
            common.say(f"{name:32s} {case['median_s'] * 1000:9.1f} ms  ({case['entries_read']} entries read)")
        common.say(" · ".join(f"{k}: {v:.2f}×" for k, v in result["ratios"].items()))
        common.say(f"wrote {common.write_json('ledger_replay', result)}")
        engine.dispose()
    finally:
        common.drop_pg_schema(st, schema)


if __name__ == "__main__":
    main()
