"""Retention changes and reconcile at catalog scale, each against its SQL floor in the same run
(issue 20, items 3 and 4).

**set-retention.** A PostgreSQL catalog of ``--copies`` (default 1,000,000) production copies
in a scratch schema (``testbed.scale``: ``generate_series``, then ``VACUUM ANALYZE``), calls
every 97 s back from now (so month ends and Feb 29 are among them), expiring 3 months after
the call. Measured: ``lifecycle.retention.set_retention(acme, production, 2)`` and its dry run,
against the baseline, one SQL UPDATE writing the same expiries (``started_at`` + 2 months in
UTC) with no counts. Before each run the expiries are reset to 3 months and the table
vacuumed (not timed), so every run changes every copy.

**reconcile.** A second scratch catalog of ``--rows`` (default 1,100,000) copies whose objects
are missing except every 110th (10,000 real 1-byte objects in a scratch bucket). Measured:
``lifecycle.reconcile.reconcile`` in report mode (what ``storage reconcile`` runs without
``--repair``), against the baseline: one key-ordered SELECT of every key and one bucket
listing, their set difference, in the same process.

Each measurement runs in its own Python process (``-c``, importing the tree under test), so
its peak RSS is that process's VmHWM; the time is the operation's, inside that process
(imports and engine creation excluded). Quiet-host gate and foreign load as in
``bench/common.py``. set-retention: the runs go in interleaved rounds (``--tries``, order
reversed each round), each after a reset to the same physical state (``VACUUM FULL``), and the
least disturbed run of each kind is kept. Reconcile: a disturbed run is repeated (twice at
most) and the least disturbed kept.
``--before TREE`` also measures the same operations with the code of another checkout (e.g.
main before this change): set-retention at full size, reconcile on ``--before-rows`` rows
(default 100,000: the old reconcile HEADs each missing object, ~25 min at 1,100,000).

    .venv/bin/python -m bench.retention [--quick] [--copies 1000000] [--rows 1100000] [--only retention|reconcile]
                                        [--before /work/main] [--before-rows 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common  # noqa: E402

MONTHS_BEFORE, MONTHS_AFTER = 3, 2
PRESENT_EVERY = 110  # 1,100,000 rows: 10,000 with their object
GOALS = {"retention_ratio": 1.5, "reconcile_ratio": 3.0, "rss_mb": 200.0}

# Each child prints one JSON line: {"seconds", "vmhwm_mb", "result"}.
_CHILD_HEAD = """
import json, sys, time
from datetime import datetime, timezone
def vmhwm_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1000
args = json.loads(sys.argv[1])
from storage.catalog.db import make_engine
engine = make_engine(args["url"], echo=False)
"""
CHILDREN = {
    "update_baseline": """
import sqlalchemy as sa
sql = sa.text("UPDATE copies SET expires_at = timezone('UTC', timezone('UTC', r.started_at) + make_interval(0, :m)) "
              "FROM recordings r WHERE r.id = copies.recording_id AND r.tenant_id = 'acme' "
              "AND copies.tier = 'production'")
t0 = time.perf_counter()
with engine.begin() as conn:
    n = conn.execute(sql, {"m": args["months"]}).rowcount
result = {"changed": n}
""",
    "set_retention": """
from lifecycle.retention import Bounds, set_retention
bounds = Bounds({"production": 1}, {"production": 6})
t0 = time.perf_counter()
with engine.begin() as conn:
    c = set_retention(conn, tenant="acme", tier="production", months=args["months"], bounds=bounds,
                      now=datetime.now(timezone.utc), ledger=None, dry_run=args["dry_run"], actor="bench", role="it")
result = {"copies": c.copies, "changed": c.changed, "expire_now": c.expire_now, "summary": c.summary()}
""",
    "listing_baseline": """
import sqlalchemy as sa
from storage.objectstore import ObjectStore
from storage.settings import StorageSettings
store = ObjectStore.from_settings(StorageSettings(**args["storage"]))
t0 = time.perf_counter()
with engine.connect() as conn:
    rows = conn.execute(sa.text('SELECT object_key FROM copies WHERE bucket = :b ORDER BY object_key COLLATE "C"'),
                        {"b": args["bucket"]}).scalars().all()
listed = set()
for page in store.client.get_paginator("list_objects_v2").paginate(Bucket=args["bucket"]):
    listed.update(o["Key"] for o in page.get("Contents", []))
catalog = set(rows)
result = {"rows": len(rows), "objects": len(listed), "missing": len(catalog - listed), "orphans": len(listed - catalog)}
""",
    "reconcile": """
from datetime import timedelta
from lifecycle.reconcile import reconcile
from storage.objectstore import ObjectStore
from storage.settings import StorageSettings
store = ObjectStore.from_settings(StorageSettings(**args["storage"]))
t0 = time.perf_counter()
r = reconcile(engine, store, args["bucket"], grace=timedelta(0))
n = getattr(r, "counts", None)
result = {"rows": r.rows_seen, "objects": r.objects_seen,
          "missing": n["dangling_rows"] if n is not None else len(r.dangling_rows),
          "orphans": n["orphan_objects"] if n is not None else len(r.orphan_objects), "summary": r.summary()}
""",
}
_CHILD_TAIL = """
seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "vmhwm_mb": vmhwm_mb(), "result": result}, default=str))
"""


def run_child(kind: str, tree: Path, **args) -> dict:
    """One measured operation in a fresh process importing ``tree``'s code; with the foreign load."""
    code = _CHILD_HEAD + CHILDREN[kind] + _CHILD_TAIL
    env = {**os.environ, "PYTHONPATH": str(tree)}
    common.wait_quiet()
    watch = common.CpuWatch()
    out = subprocess.run([sys.executable, "-c", code, json.dumps(args, default=str)], cwd=tree, env=env,
                         capture_output=True, text=True, timeout=7200)
    load = watch.stop()
    if out.returncode != 0:
        raise RuntimeError(f"{kind} child failed: {out.stderr[-3000:]}")
    data = json.loads(out.stdout.strip().splitlines()[-1])
    data.update(kind=kind, tree=str(tree), foreign_cores=load["foreign_cores"], foreign_top=load["foreign_top"],
                host_busy_pct=load["host_busy_pct"])
    common.say(f"  {kind} ({tree.name}): {data['seconds']:.1f} s, peak RSS {data['vmhwm_mb']:.0f} MB, "
               f"foreign {load['foreign_cores']:.2f} cores")
    return data


# -- set-retention ---------------------------------------------------------------------------
def _reset_expiries(engine) -> None:
    import sqlalchemy as sa

    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE copies SET expires_at = timezone('UTC', timezone('UTC', r.started_at) "
                             "+ make_interval(0, :m)) FROM recordings r WHERE r.id = copies.recording_id"),
                     {"m": MONTHS_BEFORE})
        conn.execute(sa.text("DELETE FROM tenant_retention"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM FULL ANALYZE copies"))  # same table and index sizes for every run


def bench_retention(st, copies: int, trees: dict[str, Path], tries: int) -> dict:
    from storage.catalog.db import make_engine
    from storage.catalog.migrate import upgrade
    from testbed.scale import load_copies

    schema, url = common.pg_schema(st, common.unique("bench-ret").replace("-", "_"))
    engine = make_engine(url, echo=False)
    try:
        upgrade(engine)
        t0 = time.perf_counter()
        load_copies(engine, bucket="bench-retention", total=copies, now=datetime.now(timezone.utc),
                    say=common.say)
        setup_s = time.perf_counter() - t0
        plan = [("baseline", "update_baseline", trees["after"], {}),
                ("after", "set_retention", trees["after"], {"dry_run": False}),
                ("after_dry_run", "set_retention", trees["after"], {"dry_run": True})]
        if "before" in trees:
            plan += [("before", "set_retention", trees["before"], {"dry_run": False})]
        tried: dict[str, list[dict]] = {label: [] for label, *_ in plan}
        for round_ in range(tries):  # interleaved rounds: a drift of the host's speed weighs on all alike
            for label, kind, tree, args in (plan if round_ % 2 == 0 else plan[::-1]):
                if label in ("before", "after_dry_run") and round_ > 0:
                    continue  # once: context, not a goal (and the old code takes minutes)
                _reset_expiries(engine)
                tried[label].append(run_child(kind, tree, url=url, months=MONTHS_AFTER, **args))
        runs = {label: {**min(xs, key=lambda r: r["foreign_cores"]), "all_seconds": [r["seconds"] for r in xs]}
                for label, xs in tried.items()}
        base = runs["baseline"]["seconds"]
        for r in runs.values():
            r["ratio"] = r["seconds"] / base
        assert runs["after"]["result"]["changed"] == runs["baseline"]["result"]["changed"] == copies
        return {"copies": copies, "setup_s": setup_s, "months": [MONTHS_BEFORE, MONTHS_AFTER], "runs": runs}
    finally:
        engine.dispose()
        common.drop_pg_schema(st, schema)


# -- reconcile -------------------------------------------------------------------------------
def _upload(settings, keys: list[str]) -> float:
    from storage.objectstore import ObjectStore

    store = ObjectStore.from_settings(settings)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda k: store.client.put_object(Bucket=settings.recordings_bucket, Key=k, Body=b"x"), keys))
    return time.perf_counter() - t0


def _reconcile_case(st, rows: int, trees: list[tuple[str, Path]], tries: int) -> dict:
    from storage.catalog.db import make_engine
    from storage.catalog.migrate import upgrade
    from testbed.scale import load_copies, object_key

    prefix = common.unique("bench-rec")
    settings = common.storage_settings(st, prefix)
    bucket = settings.recordings_bucket
    settings_args = {k: (v.get_secret_value() if hasattr(v, "get_secret_value") else v)
                     for k, v in settings.model_dump().items()}
    schema, url = common.pg_schema(st, prefix.replace("-", "_"))
    engine = make_engine(url, echo=False)
    try:
        from storage.objectstore import ObjectStore

        ObjectStore.from_settings(settings).client.create_bucket(
            Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": settings.region})
        upgrade(engine)
        t0 = time.perf_counter()
        load_copies(engine, bucket=bucket, total=rows, now=datetime.now(timezone.utc), say=common.say)
        present = [object_key("acme", i) for i in range(0, rows, PRESENT_EVERY)]
        upload_s = _upload(settings, present)
        setup = {"catalog_and_objects_s": time.perf_counter() - t0, "objects": len(present), "upload_s": upload_s}
        runs = {"baseline": common.least_contended(
            lambda: run_child("listing_baseline", trees[0][1], url=url, bucket=bucket, storage=settings_args),
            tries=tries)}
        for label, tree in trees:
            runs[label] = common.least_contended(
                lambda tree=tree: run_child("reconcile", tree, url=url, bucket=bucket, storage=settings_args),
                tries=tries)
        for r in runs.values():
            r["ratio"] = r["seconds"] / runs["baseline"]["seconds"]
            assert (r["result"]["missing"], r["result"]["orphans"]) == (rows - len(present), 0), r["result"]
        return {"rows": rows, "objects": len(present), "setup": setup, "runs": runs}
    finally:
        engine.dispose()
        common.drop_pg_schema(st, schema)
        common.delete_buckets(settings, [bucket])


def bench_reconcile(st, rows: int, trees: dict[str, Path], before_rows: int, tries: int) -> dict:
    out = {"after": _reconcile_case(st, rows, [("after", trees["after"])], tries)}
    if "before" in trees:
        out["before_small"] = _reconcile_case(st, before_rows, [("after", trees["after"]),
                                                                ("before", trees["before"])], 1)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="100,000 copies, 110,000 rows")
    p.add_argument("--copies", type=int, default=1_000_000)
    p.add_argument("--rows", type=int, default=1_100_000)
    p.add_argument("--only", choices=["retention", "reconcile"])
    p.add_argument("--before", type=Path, help="a checkout whose code is measured as 'before' (e.g. /work/main)")
    p.add_argument("--before-rows", type=int, default=100_000)
    p.add_argument("--tries", type=int, default=2)
    a = p.parse_args(argv)
    copies, rows = (100_000, 110_000) if a.quick else (a.copies, a.rows)
    trees = {"after": common.ROOT, **({"before": a.before.resolve()} if a.before else {})}
    st = common.stack()
    path = common.OUT / "retention.json"
    data = json.loads(path.read_text()) if path.exists() and a.only else {}
    data.update(date=common.now_iso(), goals=GOALS)
    if a.only in (None, "retention"):
        common.say(f"retention: {copies:,} copies")
        data["retention"] = {**bench_retention(st, copies, trees, a.tries), "quick": a.quick}
        common.write_json("retention", data)
    if a.only in (None, "reconcile"):
        common.say(f"reconcile: {rows:,} rows")
        data["reconcile"] = {**bench_reconcile(st, rows, trees, a.before_rows, a.tries), "quick": a.quick}
        common.write_json("retention", data)
    common.say(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
