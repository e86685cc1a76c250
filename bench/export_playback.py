"""Playback during a data-subject export (issue 16): Range TTFB with and without an export running,
and the export's memory and duration for 10 vs 100 recordings.

World: the real API (``callvault api`` in a subprocess, ``bench.access.api_server``) over a
scratch schema and buckets. ``bench.access._world`` stores the playback target (a 1-hour Opus
call, 7.2 MB, the worker's frame size) and its manager; two more callers have 10 and 100
recordings of ``--size`` bytes (default 300 kB: a 2.5-minute Opus call) each; ``control-1``
(internal control) runs the exports.

Playback: a stream link (``POST /copies/{id}/stream-link`` as the manager), then GETs of 64 KiB
from the middle (not frame-aligned) with it, no bearer, keep-alive; TTFB = request sent to first
body byte; bytes checked. In ``rounds`` alternations (the host is shared: alternating keeps both
sides under the same background load): ``reps / rounds`` requests alone, then requests back to
back while one export of the 100-recording caller runs in another thread. An export is the
client's two steps: ``POST /subjects/export`` (the API makes the 100 complaint-extract copies:
decrypt, re-encrypt, upload, one transaction) then ``GET`` of the signed link (the ZIP streamed as
it is built, read by the client 64 KiB at a time, its end-of-central-directory checked). Each
sample during is labelled by the step running when it was sent, so the ZIP's share and the
extracts' share are told apart. Goal: p99 during / p99 alone <= 1.5.

Export memory: with no playback, an export of 10 then of 100 recordings; the API process's
resident memory sampled every 50 ms (``bench.rss.Sampler``) and its kernel peak (VmHWM, reset
before each export): the growth over its RSS just before, for each step; and each step's time.

    .venv/bin/python -m bench.export_playback [--quick] [--reps 300] [--size 300000]
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import access as access_bench  # noqa: E402
from bench import common  # noqa: E402
from bench import rss as rss_bench  # noqa: E402

GOAL_RATIO = 1.5
SIZE = 300_000
SUBJECTS = {10: "+33698700010", 100: "+33698700100"}  # export size -> the caller's number (never logged)


def _subjects(engine, store, keys, bucket: str, size: int) -> None:
    """Each caller of ``SUBJECTS`` with that many recordings of ``size`` random bytes."""
    import os

    from access.identities import add_user
    from storage.copies import object_key_for, put_encrypted, upsert_copy
    from testbed.catalog import add_recording

    now = datetime.now(timezone.utc)
    with engine.begin() as conn:
        add_user(conn, user_id="control-1", role="internal-control", tenants=["acme"])

    def one(number: str) -> None:
        with engine.begin() as conn:
            rid, number_hash = add_recording(conn, keys, number, started=now)
            caller = keys.caller_key(conn, tenant="acme", number_hash=number_hash)
            key = object_key_for("acme", rid, "production")
            stored = put_encrypted(conn, store, keys, caller=caller, bucket=bucket, object_key=key,
                                   audio=os.urandom(size), tags={"tier": "production", "tenant": "acme"})
            upsert_copy(conn, recording_id=rid, tier="production", stored=stored, bucket=bucket,
                        expires_at=now + timedelta(days=3650), created_by="bench")

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, [number for n, number in SUBJECTS.items() for _ in range(n)]))


class Client:
    """One keep-alive connection to the API (one per thread: http.client is not thread-safe)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)

    def fresh(self) -> None:  # uvicorn closes idle keep-alive connections after 5 s
        self.conn.close()
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)

    def post(self, path: str, token: str, body: dict) -> dict:
        self.conn.request("POST", path, body=json.dumps(body),
                          headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        resp = self.conn.getresponse()
        data = resp.read()
        assert resp.status == 200, (resp.status, data[:300])
        return json.loads(data)

    def ttfb(self, url: str, start: int, end: int, expected: bytes) -> float:
        t0 = time.perf_counter()
        self.conn.request("GET", url, headers={"Range": f"bytes={start}-{end}"})
        resp = self.conn.getresponse()
        first = resp.read(1)
        elapsed = time.perf_counter() - t0
        data = first + resp.read()
        assert resp.status == 206 and data == expected, (resp.status, len(data))
        return elapsed

    def download(self, url: str) -> tuple[int, bytes]:
        """Read the ZIP 64 KiB at a time, keeping only its tail (the end of central directory)."""
        self.conn.request("GET", url)
        resp = self.conn.getresponse()
        assert resp.status == 200, (resp.status, resp.read(300))
        total, tail = 0, b""
        while chunk := resp.read(64 * 1024):
            total += len(chunk)
            tail = (tail + chunk)[-(1 << 16):]
        return total, tail


def run_export(client: Client, token: str, number: str, stage: list[str] | None = None, pid: int | None = None) -> dict:
    """POST /subjects/export then download the ZIP; ``stage`` says which step is running; with
    ``pid`` (the API's), the CPU the API process used in each step."""
    stage = stage if stage is not None else [""]
    cpu = (lambda: common.process_cpu_seconds(pid)) if pid else (lambda: 0.0)
    stage[0] = "extracts"
    c0, t0 = cpu(), time.perf_counter()
    made = client.post("/subjects/export", token, {"tenant": "acme", "numbers": [number]})
    c1, t1 = cpu(), time.perf_counter()
    stage[0] = "zip"
    size, tail = client.download(made["download_url"])
    c2, t2 = cpu(), time.perf_counter()
    assert tail[-22:-18] == b"PK\x05\x06", "the ZIP does not end with its end-of-central-directory record"
    out = {"recordings": made["recordings"], "zip_bytes": size, "extracts_s": t1 - t0, "zip_s": t2 - t1,
           "total_s": t2 - t0}
    if pid:
        out.update(extracts_api_cpu_s=c1 - c0, zip_api_cpu_s=c2 - c1)
    return out


class AdvisoryWaits(threading.Thread):
    """Samples PostgreSQL every 20 ms: how many sessions wait on an advisory lock (the audit
    chain's), and which export step was running: whether playback queues behind the export."""

    def __init__(self, url: str, stage: list[str]) -> None:
        super().__init__(daemon=True)
        import sqlalchemy as sa

        self.engine, self.stage, self.stop_event = sa.create_engine(url), stage, threading.Event()
        self.samples: dict[str, list[int]] = {}

    def run(self) -> None:
        import sqlalchemy as sa

        query = sa.text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND wait_event = 'advisory'")
        with self.engine.connect() as conn:
            while not self.stop_event.is_set():
                running = self.stage[0]
                waiting = conn.execute(query).scalar()
                conn.rollback()
                self.samples.setdefault(running or "alone", []).append(waiting)
                self.stop_event.wait(0.02)

    def stop(self) -> dict:
        self.stop_event.set()
        self.join()
        self.engine.dispose()
        return {k: {"samples": len(v), "share_with_waiters": sum(1 for x in v if x) / len(v), "max_waiting": max(v)}
                for k, v in self.samples.items() if k != "done"}


def _ms(xs: list[float]) -> dict:
    return {k: (1000 * v if k != "n" else v) for k, v in common.summary(xs).items()}


def measure_playback(port: int, tokens: dict, target: dict, reps: int, rounds: int, pg_url: str) -> dict:
    """``rounds`` times: ``reps // rounds`` requests alone, then requests while one export of 100
    runs, each sample labelled by the export step running when it was sent. Alternating keeps
    both sides under the same background load (this host is shared)."""
    player, exporter = Client(port), Client(port)

    def link() -> str:
        player.fresh()
        return player.post(f"/copies/{target['copy_id']}/stream-link", tokens["manager-1"], {})["url"]

    def get(url: str) -> float:
        return player.ttfb(url, target["start"], target["end"], target["expected"])

    url = link()
    for _ in range(20):  # warm-up: connections, the caller key's unwrap path, the app's first request
        get(url)
    run_export(exporter, tokens["control-1"], SUBJECTS[10])
    gate = common.wait_quiet()
    watch = common.CpuWatch()
    samples: dict[str, list[float]] = {"alone": [], "extracts": [], "zip": []}
    exports: list[dict] = []
    stage: list[str] = [""]
    waits = AdvisoryWaits(pg_url, stage)
    waits.start()
    for _ in range(rounds):
        url = link()
        stage[0] = ""
        samples["alone"] += [get(url) for _ in range(reps // rounds)]
        failures: list[str] = []

        def one_export() -> None:
            try:
                exporter.fresh()
                exports.append(run_export(exporter, tokens["control-1"], SUBJECTS[100], stage))
            except Exception as exc:  # reported below
                failures.append(repr(exc))
            stage[0] = "done"

        stage[0] = "extracts"  # from the thread's start: a request sent now waits on the extracts too
        thread = threading.Thread(target=one_export, daemon=True)
        thread.start()
        while stage[0] != "done":
            running = stage[0]
            elapsed = get(url)
            if running in ("extracts", "zip"):
                samples[running].append(elapsed)
        thread.join()
        if failures:
            raise RuntimeError(f"export failed: {failures[0]}")
    advisory = waits.stop()
    load = watch.stop()
    alone = _ms(samples["alone"])
    out = {"reps_alone": len(samples["alone"]), "rounds": rounds, "alone_ms": alone,
           "during_ms": _ms(samples["extracts"] + samples["zip"]),
           "during_extracts_ms": _ms(samples["extracts"]) if samples["extracts"] else None,
           "during_zip_ms": _ms(samples["zip"]) if samples["zip"] else None,
           "exports": exports, "advisory_lock_waits": advisory, "quiet_gate": gate,
           "host_busy_pct": load["host_busy_pct"],
           "foreign_cores": load["foreign_cores"], "foreign_top": load["foreign_top"]}
    for key in ("during", "during_extracts", "during_zip"):
        out[f"ratio_p99_{key}"] = out[f"{key}_ms"]["p99"] / alone["p99"] if out[f"{key}_ms"] else None
    return out


def measure_memory(port: int, pid: int, tokens: dict) -> list[dict]:
    client, results = Client(port), []
    run_export(client, tokens["control-1"], SUBJECTS[10])  # warm: the export path's imports and pools
    for n, number in SUBJECTS.items():
        client.fresh()
        time.sleep(0.5)
        idle_kb = rss_bench._status_kb(pid).get("VmRSS", 0)
        reset = rss_bench._reset_peak(pid)
        sampler = rss_bench.Sampler(pid)
        sampler.start()
        try:
            step = run_export(client, tokens["control-1"], number, pid=pid)
        finally:
            sampler.stop()
        hwm_kb = rss_bench._status_kb(pid).get("VmHWM", 0) if reset else 0
        peak_kb = max(sampler.worker_rss_max_kb, hwm_kb)
        results.append({**step, "n": n, "idle_rss_mb": rss_bench._mb(idle_kb), "peak_rss_mb": rss_bench._mb(peak_kb),
                        "growth_mb": rss_bench._mb(peak_kb - idle_kb), "hwm_reset": reset,
                        "samples": sampler.samples})
        common.say(f"  export of {n}: {step['zip_bytes'] / 1e6:.1f} MB ZIP, extracts {step['extracts_s']:.2f} s + "
                   f"ZIP {step['zip_s']:.2f} s (API CPU {step['extracts_api_cpu_s']:.2f} + "
                   f"{step['zip_api_cpu_s']:.2f} s); API RSS {rss_bench._mb(idle_kb):.0f} -> peak "
                   f"{rss_bench._mb(peak_kb):.0f} MB")
    return results


def run(quick: bool, reps: int | None, size: int, paces: tuple[float, ...] = ()) -> dict:
    from pydantic import SecretStr

    from access.settings import AccessSettings
    from access.tokens import issue_token
    from storage.admin import init_buckets
    from storage.catalog.db import make_engine
    from storage.keys import KeyRing
    from storage.objectstore import ObjectStore
    from testbed.pipeline import service_env

    reps = reps or (100 if quick else 400)
    rounds = 2 if quick else 8
    st = common.stack()
    prefix = common.unique("bench-expplay")
    settings = common.storage_settings(st, prefix)
    init_buckets(settings, say=lambda _m: None)
    schema, url = common.pg_schema(st, prefix)
    engine = make_engine(url, echo=False)
    store, keys = ObjectStore.from_settings(settings), KeyRing.from_settings(settings)
    results: dict = {"benchmark": "export_playback", "date": common.now_iso(), "quick": quick, "size": size,
                     "goal_ratio_p99": GOAL_RATIO}
    try:
        common.say(f"export_playback: world (1-hour call, {sum(SUBJECTS)} recordings of {size / 1e3:.0f} kB)")
        target = access_bench._world(engine, store, keys, settings.recordings_bucket, access_bench.SIZES[:1])[0]
        _subjects(engine, store, keys, settings.recordings_bucket, size)
        env = {**service_env(settings, url), "CALLVAULT_ACCESS_JWT_SECRET": access_bench.SECRET}
        access = AccessSettings(jwt_secret=SecretStr(access_bench.SECRET))
        tokens = {u: issue_token(u, access, ttl=timedelta(hours=4)) for u in ("manager-1", "control-1")}
        common.OUT.mkdir(parents=True, exist_ok=True)
        results["playback"] = []
        for pace in (None, *paces):  # one API per pace (CALLVAULT_ACCESS_EXPORT_STREAM_MB_PER_S)
            api_env = {**env, **({"CALLVAULT_ACCESS_EXPORT_STREAM_MB_PER_S": str(pace)} if pace else {})}
            with access_bench.api_server(api_env, common.OUT / "export-playback-api.log") as (proc, port):
                if pace is None:
                    common.say("export_playback: export memory and time, 10 vs 100 recordings (no playback)")
                    results["memory"] = measure_memory(port, proc.pid, tokens)
                common.say(f"export_playback: 64 KiB Range TTFB, {rounds} rounds of {reps // rounds} alone then "
                           f"during an export of 100; ZIP download {f'paced at {pace} MB/s' if pace else 'unpaced'}")
                cpu0 = common.process_cpu_seconds(proc.pid)
                p = measure_playback(port, tokens, target, reps, rounds, url)
                p["api_cpu_s"] = common.process_cpu_seconds(proc.pid) - cpu0
                p["pace_mb_per_s"] = pace
                results["playback"].append(p)
            common.say(f"  TTFB p50/p99 alone {p['alone_ms']['median']:.2f}/{p['alone_ms']['p99']:.2f} ms "
                       f"(n={p['reps_alone']})")
            for key in ("during", "during_extracts", "during_zip"):
                s = p[f"{key}_ms"]
                if s:
                    common.say(f"    {key.replace('_', ' ')}: p50/p99 {s['median']:.2f}/{s['p99']:.2f} ms "
                               f"(n={s['n']}), ratio p99 {p[f'ratio_p99_{key}']:.2f}")
            zip_s = [e["zip_s"] for e in p["exports"]]
            common.say(f"    ZIP step {common.median(zip_s):.2f} s (median of {len(zip_s)}); sessions waiting on an "
                       f"advisory lock: {p['advisory_lock_waits']}")
            common.say(f"    foreign load {p['foreign_cores']:.2f} cores {p['foreign_top']}")
    finally:
        engine.dispose()
        common.drop_pg_schema(st, schema)
        common.delete_buckets(settings, [settings.recordings_bucket, settings.landing_bucket,
                                         settings.exports_bucket])
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 requests per phase")
    parser.add_argument("--reps", type=int, help="Range requests alone, over all rounds (default 400, --quick 100)")
    parser.add_argument("--size", type=int, default=SIZE, help="bytes of audio per exported recording")
    parser.add_argument("--paces", default="20", help="also measure with the ZIP download paced at these MB/s "
                                                      "(comma-separated; '' for unpaced only)")
    args = parser.parse_args(argv)
    results = run(args.quick, args.reps, args.size, tuple(float(x) for x in args.paces.split(",") if x))
    path = common.write_json("export_playback", results)
    common.say(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
