"""Rewrite ``bench/RESULTS.md`` from ``bench/out/*.json`` and the machine's description.

    .venv/bin/python -m bench.report
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common  # noqa: E402

RESULTS = common.ROOT / "bench" / "RESULTS.md"


def _load(name: str) -> dict | None:
    path = common.OUT / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _f(x: float, digits: int = 2) -> str:
    return f"{x:,.{digits}f}"


def _ratio(x: float) -> str:
    return f"{x:.2f}×"


def _foreign(x: dict) -> str:
    runs = x.get("runs") or [x]
    worst = max(r.get("foreign_cores", 0.0) for r in runs)
    flagged = any(not (r.get("quiet_gate") or {}).get("quiet", True) for r in runs)
    return f"{worst:.2f}" + (" ⚠" if flagged or worst > 0.25 else "")


def _spread(x: dict) -> str:
    return f"{x['spread_pct']:.0f}%" if "spread_pct" in x else "–"


def _goal(ok: bool) -> str:
    return "met" if ok else "**missed**"


def machine_section(m: dict) -> list[str]:
    return [
        "## Machine", "",
        "| | |", "|---|---|",
        f"| CPU | {m['cpu_model']}, {m['cpu_cores']} cores (/proc/cpuinfo) |",
        f"| RAM | {m['ram_gib']} GiB |",
        f"| OS | {m['os']} |",
        f"| Python | {m['python']} |",
        f"| Kafka | {m['kafka']} |",
        f"| MinIO | {m['minio']} |",
        f"| PostgreSQL | {m['postgresql']} |",
        f"| ffmpeg | {m['ffmpeg']} |",
        "",
        "All servers are the local stack (`callvault stack up`) on the same machine as the benchmark, over "
        "loopback: the figures compare callvault with baselines that share the same servers and cores. "
        "⚠ marks a measurement during which other processes used more than a quarter of a core (or the host "
        "never became quiet): treat it with care.",
        "",
    ]


def ingest_section(r: dict) -> list[str]:
    b, cores = r["baselines"], r["cores"]
    a = r["audio"]
    lines = [
        "## Ingest throughput and produce→stored latency", "",
        f"{r['n']} calls per run ({'--quick' if r['quick'] else 'full'}; measured {r['date']}). Each call is the "
        f"same 60 s {a['format']} file ({_f(a['bytes'] / 1000, 0)} kB, {a['content']}) under a distinct recording "
        f"id and caller number; at ≤ {a['inline_max_bytes'] // 1024} KiB it travels **inline** in the Kafka "
        "message (base64), so no claim check or landing bucket is involved. Pipeline: Kafka (scratch topic, "
        f"{r['partitions']} partitions) → `callvault worker` (worker processes, `--processes`: "
        + ", ".join(f"{fmt} {m.get('worker_processes', 1)}" for fmt, m in r["modes"].items())
        + "; default calls in flight per process: "
        + ", ".join(f"{fmt} {m.get('worker_in_flight', 4)}" for fmt, m in r["modes"].items()) + ") → MinIO (client-side encrypted) → PostgreSQL catalog. Worker warm before "
        "timing. calls/s = N ÷ (last `stored` event's Kafka timestamp − first message's Kafka timestamp).",
        "",
        "### Baselines (same run, same bytes)", "",
        "Each baseline ran before and after the worker runs (ffmpeg: right before and right after the worker "
        "of its format); the figure is the mean, the spread is (max − min) ÷ mean. \"Foreign load\": CPU "
        "used meanwhile by processes that are neither this benchmark's nor the stack servers' (this host is "
        "shared with other sessions' test suites), in cores; each measurement first waits for a quiet host.",
        "",
        "| Baseline | calls/s | per core | spread | foreign load | note |", "|---|---:|---:|---:|---:|---|",
    ]
    for fmt in ("opus", "flac"):
        key = f"ffmpeg_{fmt}"
        if key in b:
            x = b[key]
            lines.append(f"| ffmpeg alone → {fmt} | {_f(x['calls_per_s'])} | {_f(x['calls_per_s_per_core'])} | "
                         f"{_spread(x)} | {_foreign(x)} | {x['parallel']} processes in parallel, worker's encoder settings, "
                         f"{_f(x['output_bytes'] / 1000, 0)} kB out |")
    for threads in (1, 4):
        key = f"raw_floor_{threads}"
        if key in b:
            x = b[key]
            lines.append(f"| raw I/O floor, {threads} thread{'s' if threads > 1 else ''} | {_f(x['calls_per_s'], 1)} "
                         f"| – | {_spread(x)} | {_foreign(x)} | boto3 `put_object` of the {_f(x['bytes_per_call'] / 1000, 0)} kB + one INSERT "
                         "(own transaction) into PostgreSQL |")
    lines += ["", "### callvault worker vs baselines", "",
              "| Mode | Measure | callvault | Baseline | Baseline value | Ratio | Goal (issue 9) |",
              "|---|---|---:|---|---:|---:|---|"]
    for fmt, mode in r["modes"].items():
        rate = mode["backlog"]["calls_per_s"]
        ff = b.get(f"ffmpeg_{fmt}")
        if ff:
            ratio = rate / ff["calls_per_s"]
            goal = f"≥ 0.8× per core: {_goal(ratio >= 0.8)}" if fmt == "opus" else "–"
            lines.append(f"| {fmt} | calls/s (per core) | {_f(rate)} ({_f(rate / cores)}) | ffmpeg alone → {fmt} "
                         f"(per core) | {_f(ff['calls_per_s'])} ({_f(ff['calls_per_s_per_core'])}) | "
                         f"{_ratio(ratio)} | {goal} |")
        for threads in (1, 4):
            fl = b.get(f"raw_floor_{threads}")
            if fl:
                ratio = rate / fl["calls_per_s"]
                goal = f"≥ 0.8× (pass-through): {_goal(ratio >= 0.8)}" if fmt == "passthrough" else "–"
                lines.append(f"| {fmt} | calls/s | {_f(rate)} | raw I/O floor, {threads} thr | "
                             f"{_f(fl['calls_per_s'], 1)} | {_ratio(ratio)} | {goal} |")
        if ff:
            ff_cpu = ff.get("cpu_s_per_call") or ff["parallel"] / ff["calls_per_s"]
            bl = mode["backlog"]
            cpu = bl["worker_cpu_s_per_call"]
            split = (f" = {_f(bl['worker_python_cpu_s_per_call'], 3)} Python + "
                     f"{_f(bl['worker_ffmpeg_cpu_s_per_call'], 3)} ffmpeg") if "worker_python_cpu_s_per_call" in bl else ""
            lines.append(f"| {fmt} | CPU s per call (worker process + its ffmpeg children) | {_f(cpu, 3)}{split} | "
                         f"ffmpeg alone (its processes' CPU ÷ N) | {_f(ff_cpu, 3)} | {_ratio(ff_cpu / cpu)} | – |")
    lines += ["", "calls/s ratios depend on how much of the host the worker got (Kafka, MinIO, PostgreSQL and the "
              "benchmark's own producer/consumer share the same cores, see the host/foreign load below); the CPU-per-"
              "call ratio does not, and is the efficiency figure to compare.",
              "", "### produce→stored latency", "",
              "Per call: the `stored` event's Kafka timestamp − the produced message's Kafka timestamp. Under a "
              "backlog (all N produced at once) it is dominated by queueing; the low-rate run sends one call "
              "every 0.5 s; the isolated run sends each call once the previous one is stored (the latency of one "
              "call through an idle pipeline).", "",
              "| Mode | Run | calls | calls/s | p50 ms | p99 ms | max ms | Goal p99 < 250 ms | host CPU busy | "
              "foreign load |", "|---|---|---:|---:|---:|---:|---:|---|---:|---:|"]
    for fmt, mode in r["modes"].items():
        for run, label in (("backlog", "backlog (all at once)"), ("low_rate", "low rate (1 per 0.5 s)"),
                           ("isolated", "isolated (1 at a time)")):
            if run not in mode:
                continue
            x = mode[run]
            lat = x["latency_ms"]
            goal = _goal(lat["p99"] < 250) if run != "backlog" else "– (queueing)"
            lines.append(f"| {fmt} | {label} | {x['n']} | {_f(x['calls_per_s'])} | {_f(lat['median'], 0)} | "
                         f"{_f(lat['p99'], 0)} | {_f(lat['max'], 0)} | {goal} | {_f(x['host_cpu_busy_pct'], 0)}% | "
                         f"{_foreign(x)} |")
    lines += ["", "Worker share of the host during the backlog runs: " + "; ".join(
        f"{fmt} worker {_f(m['backlog'].get('worker_cores', 0))} cores, stack servers "
        f"{_f(sum(m['backlog'].get('servers_cores', {}).values()))}, foreign {_f(m['backlog']['foreign_cores'])}"
        for fmt, m in r["modes"].items()) + ".",
        "", "Stored objects (average, encrypted): " + ", ".join(
        f"{fmt} {_f(m['catalog']['avg_stored_bytes'] / 1000, 1)} kB" for fmt, m in r["modes"].items())
        + "; every run checked: all calls `stored`, none dead-lettered, catalog rows = objects = calls.", ""]
    return lines


def _floor_1(r: dict | None) -> float | None:
    """The 1-thread raw floor of a run: the faster of its runs (before and after the worker), the less
    disturbed one on a shared host (the mean would reward a run whose floor was slowed down)."""
    fl = (r or {}).get("baselines", {}).get("raw_floor_1")
    return max(x["calls_per_s"] for x in fl.get("runs", [fl])) if fl else None


def _either(before, after, show) -> tuple[str, str]:
    return (show(before) if before is not None else "–"), show(after)


def _passthrough_rows(r: dict, before: dict | None) -> list[str]:
    pt, b_pt = r["modes"]["passthrough"], (before or {}).get("modes", {}).get("passthrough")
    fl, fl_b = _floor_1(r), _floor_1(before)
    ratio = pt["backlog"]["calls_per_s"] / fl
    b_ratio = b_pt["backlog"]["calls_per_s"] / fl_b if b_pt and fl_b else None
    rows = [("worker processes (`--processes`)", *_either(b_pt, pt, lambda m: str(m.get("worker_processes", 1))), "–"),
            ("calls in flight per process", *_either(b_pt, pt, lambda m: str(m.get("worker_in_flight", 4))), "–"),
            ("backlog calls/s", *_either(b_pt, pt, lambda m: _f(m["backlog"]["calls_per_s"])), "–"),
            ("raw I/O floor, 1 thread, calls/s (same run, faster of its two runs)",
             *_either(fl_b, fl, lambda x: _f(x, 1)), "–"),
            ("ratio to the floor", *_either(b_ratio, ratio, _ratio), f"≥ 0.8×: {_goal(ratio >= 0.8)}"),
            ("worker cores during the backlog", *_either(b_pt, pt, lambda m: _f(m["backlog"]["worker_cores"])), "–"),
            ("foreign load during the backlog (cores)",
             *_either(b_pt, pt, lambda m: _f(m["backlog"]["foreign_cores"])), "–")]
    return [f"| passthrough | {a} | {b} | {c} | {d} |" for a, b, c, d in rows]


def _trip_rows(trips: dict, trips_before: dict | None) -> list[str]:
    rows = []
    for fmt, x in trips["modes"].items():
        xb = (trips_before or {}).get("modes", {}).get(fmt)
        for what, label in (("service", "catalog statements per call in `ingest()` (of which BEGIN…COMMIT "
                                         "transactions)"),
                            ("bookkeeping", "acknowledgement bookkeeping statements per take (transactions)")):
            b, a = _either(xb, x, lambda m: f"{_f(m[what + '_statements_per_call'], 0)} "
                                            f"({_f(m[what + '_transactions_per_call'], 0)})")
            rows.append(f"| {fmt} | {label} | {b} | {a} | as few as the protocol allows |")
    return rows


def _ab_rows(ab: dict) -> list[str]:
    b, a = ab["before"], ab["after"]
    runs = ", ".join(f"{x['code']} {_f(x['calls_per_s'], 1)}/{_f(x['floor_calls_per_s'], 1)}" for x in ab["runs"])
    return [f"| passthrough | A B B A, each backlog ({ab['n']} calls) right after its own 1-thread floor: mean "
            f"ratio to the floor ({runs} calls/s) | {_ratio(b['ratio'])} | {_ratio(a['ratio'])} | "
            f"≥ 0.8×: {_goal(a['ratio'] >= 0.8)} |",
            f"| passthrough | A B B A: backlog calls/s, mean | {_f(b['calls_per_s'])} | {_f(a['calls_per_s'])} | – |",
            f"| passthrough | A B B A: isolated produce→stored p50 / p99 ms, mean | {_f(b['isolated_p50_ms'], 0)} / "
            f"{_f(b['isolated_p99_ms'], 0)} | {_f(a['isolated_p50_ms'], 0)} / {_f(a['isolated_p99_ms'], 0)} | – |"]


def _opus_rows(r: dict, before: dict | None, latency_before: dict | None,
               latency_after: dict | None = None) -> list[str]:
    op = r.get("modes", {}).get("opus", {})
    iso = (latency_after or {}).get("modes", {}).get("opus", {}).get("isolated") or op["isolated"]
    b_iso = (latency_before or {}).get("modes", {}).get("opus", {}).get("isolated")
    ms = lambda d: f"{_f(d['median'], 0)} / {_f(d['p99'], 0)}"  # noqa: E731
    over = lambda x: f"{_f(x['latency_ms']['median'] - x['paired_ffmpeg_ms']['median'], 0)} / "  # noqa: E731
    rows = []
    if "paired_ffmpeg_ms" in iso:
        gap = iso["latency_ms"]["p99"] - iso["paired_ffmpeg_ms"]["p99"]
        rows += [("isolated: produce→stored p50 / p99 ms", *_either(b_iso, iso, lambda x: ms(x["latency_ms"])), "–"),
                 ("isolated: ffmpeg alone encoding the same call between two calls, wall p50 / p99 ms",
                  *_either(b_iso, iso, lambda x: ms(x["paired_ffmpeg_ms"])), "–"),
                 ("isolated: callvault's overhead, p50 / p99 difference (ms)",
                  *_either(b_iso, iso, lambda x: over(x) + _f(x["latency_ms"]["p99"] - x["paired_ffmpeg_ms"]["p99"],
                                                                0)),
                  f"p99 ≤ ffmpeg alone + 150 ms: {_goal(gap <= 150)}")]
    ff, b_ff = r["baselines"].get("ffmpeg_opus_single"), (before or {}).get("baselines", {}).get("ffmpeg_opus_single")
    low, b_low = op.get("low_rate"), (before or {}).get("modes", {}).get("opus", {}).get("low_rate")
    if ff and low:
        rows += [("ffmpeg alone, one call at a time, 20–30 in a row, wall p50 / p99 ms",
                  *_either(b_ff, ff, lambda x: ms(x["wall_ms"])), "–"),
                 ("low rate (1 per 0.5 s): produce→stored p50 / p99 ms",
                  *_either(b_low, low, lambda x: ms(x["latency_ms"])), "–"),
                 ("low rate: p99 minus ffmpeg alone one at a time p99 (ms)",
                  _f(b_low["latency_ms"]["p99"] - b_ff["wall_ms"]["p99"], 0) if b_low and b_ff else "–",
                  _f(low["latency_ms"]["p99"] - ff["wall_ms"]["p99"], 0),
                  f"p99 ≤ ffmpeg alone + 150 ms: {_goal(low['latency_ms']['p99'] - ff['wall_ms']['p99'] <= 150)}")]
    return [f"| opus | {a} | {b} | {c} | {d} |" for a, b, c, d in rows]


def ingest_issue20_section(r: dict | None, before: dict | None, trips: dict | None, trips_before: dict | None,
                           latency_before: dict | None = None, latency_after: dict | None = None,
                           ab: dict | None = None) -> list[str]:
    """Issue 20: pass-through against the 1-thread floor, Opus latency against ffmpeg alone; before → after."""
    lines = ["### Issue 20: pass-through rate and the Opus latency floor (before → after)", "",
             "\"before\" is main's code as it was when the work started (batches of 4 calls, a batch acknowledged "
             "when its slowest call is done), measured by the same benchmark with the same N just before; "
             "\"after\" is the sliding acknowledgement window, the calls in flight by storage format and fewer "
             "catalog statements. Each figure is against its baseline measured in the same run: the raw floor of "
             "each run; for Opus, ffmpeg alone encoding the same call with the worker's encoder settings, run "
             "between two isolated calls (so both see the same load), and one at a time after the worker.", "",
             "| Mode | Measure | before | after | Goal (issue 20) |", "|---|---|---:|---:|---|"]
    r = r or {"modes": {}, "baselines": {}}
    if "passthrough" in r["modes"]:
        lines += _passthrough_rows(r, before)
    if ab:
        lines += _ab_rows(ab)
    if trips:
        lines += _trip_rows(trips, trips_before)
    if "opus" in r["modes"] or latency_after:
        lines += _opus_rows(r, before, latency_before, latency_after)
    lines += ["", "This host is shared with other sessions' test suites and benchmarks (one built a million-row "
              "catalog in the same PostgreSQL meanwhile): the quiet-host gate waited at most "
              "`BENCH_MAX_QUIET_WAIT`=45 s, then measured and flagged; each measurement was repeated while others "
              "used more than a quarter of a core (the least disturbed kept); foreign load as in the tables above.",
              ""]
    return lines


def encryption_section(r: dict) -> list[str]:
    lines = [
        "## Client-side encryption overhead (issue 3)", "",
        f"Measured {r['date']} ({'--quick' if r['quick'] else 'full'}), median of {r['reps']} interleaved "
        f"repetitions; MB = 10^6 bytes. Baseline: `ObjectStore.put/get` of the raw bytes. Encrypted: "
        "`put_encrypted` (AES-256-GCM, " f"{r['frame_size'] // 1024} KiB frames) and `read_copy` (catalog row on "
        "SQLite, key unwrap, SHA-256 check, decrypt). Bucket: " f"{r['bucket_config']}.",
        "", "### Stored bytes", "",
        "| Payload | raw bytes | encrypted bytes | overhead |", "|---|---:|---:|---:|",
    ]
    for s in r["sizes"]:
        sb = s["stored_bytes"]
        lines.append(f"| {s['label']} | {sb['raw']:,} | {sb['encrypted']:,} | +{sb['overhead_bytes']:,} B "
                     f"(+{sb['overhead_pct']:.3f}%) |")
    lines += ["", "### Throughput against MinIO", "",
              "| Payload | put raw MB/s | put encrypted MB/s | ratio | get raw MB/s | get encrypted MB/s | ratio | "
              "foreign load |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for s in r["sizes"]:
        p, g = s["put"], s["get"]
        lines.append(f"| {s['label']} | {_f(p['raw_mb_s'], 0)} ({_f(p['raw_ms'], 1)} ms) | "
                     f"{_f(p['encrypted_mb_s'], 0)} ({_f(p['encrypted_ms'], 1)} ms) | {_ratio(p['ratio'])} | "
                     f"{_f(g['raw_mb_s'], 0)} ({_f(g['raw_ms'], 1)} ms) | {_f(g['encrypted_mb_s'], 0)} "
                     f"({_f(g['encrypted_ms'], 1)} ms) | {_ratio(g['ratio'])} | {_foreign(s)} |")
    lines += ["", "Ratio = raw time ÷ encrypted time (1.00× = no cost).", "",
              "### Pure CPU (no I/O)", "",
              "| Payload | `encrypt_bytes` MB/s | `encrypt_stream`, 1 MiB chunks (as `put_encrypted`) MB/s | "
              "`decrypt_bytes` MB/s | SHA-256 MB/s (context) |", "|---|---:|---:|---:|---:|"]
    for s in r["sizes"]:
        c = s["cpu"]
        lines.append(f"| {s['label']} | {_f(c['encrypt_mb_s'], 0)} | {_f(c.get('encrypt_stream_mb_s', 0), 0)} | "
                     f"{_f(c['decrypt_mb_s'], 0)} | {_f(c['sha256_mb_s'], 0)} |")
    rg = r.get("range")
    if rg:
        lines += ["", "### Ranged read", "",
                  f"{rg['length'] // 1024} KiB from byte {rg['start']:,} of a {rg['object_bytes'] >> 20} MiB object "
                  f"(not frame-aligned: {rg['frames_fetched']} frames), {rg['reps']} reads each, interleaved. "
                  "`read_copy_range` includes the catalog row, the key unwrap and the ranged GET of the frames "
                  "(plus one of the header before issue 20).",
                  "", "| | p50 ms | p90 ms | p99 ms | GETs |", "|---|---:|---:|---:|---:|",
                  f"| raw ranged GET (baseline) | {_f(rg['raw_ms']['median'])} | {_f(rg['raw_ms']['p90'])} | "
                  f"{_f(rg['raw_ms']['p99'])} | {rg['requests']['raw']} |",
                  f"| `read_copy_range` | {_f(rg['encrypted_ms']['median'])} | {_f(rg['encrypted_ms']['p90'])} | "
                  f"{_f(rg['encrypted_ms']['p99'])} | {rg['requests']['encrypted']} |",
                  "", f"Ratio (p50, raw ÷ encrypted): {_ratio(rg['ratio_median'])}.", ""]
    return lines


def sweep_section(r: dict) -> list[str]:
    if "cases" not in r:  # written by the hand-run sweep.py of before: nothing to render it from
        return []
    base, large = r["cases"]["baseline"], r["cases"]["large"]
    e, n = r["expired"], r["total"]
    lines = [
        "## Sweep cost against catalog size (issue 5) and against DeleteObjects by version (issue 20)", "",
        f"Measured {r['date']} ({'--quick' if r['quick'] else 'full'}). {e:,} expired copies, each with a real "
        f"object (1-byte body) in a bucket configured like the recordings bucket "
        f"({r['bucket_config'].replace(' (storage.admin.init_buckets)', ', `storage.admin.init_buckets`')}), swept by "
        f"`lifecycle.sweeper.sweep` (batch size {r['batch_size']}) from a PostgreSQL catalog holding only them "
        f"(baseline) and from one holding {n:,} copies (the expired rows spread evenly through it; the others expire "
        "1 to 34 months ahead and have no object). Both were set up first (not timed: rows generated by PostgreSQL, "
        "`VACUUM ANALYZE`, objects uploaded as MinIO snowball archives), then swept in alternating rounds of "
        f"{r['batches_per_round']} batch{'es' if r['batches_per_round'] > 1 else ''}, so that the host's drift "
        "weighs on both alike. \"object store\" = "
        + ("`ObjectStore.delete_located` (DeleteObjects naming each copy's recorded version, no listing); "
           if "raw" in r else "`ObjectStore.delete_located` (one version listing per key, DeleteObjects); ")
        + "\"catalog\" = the rest (mark, "
        "delete rows, audit). Checked after: every expired copy and its recording gone, no object version left, "
        "every unexpired row kept.",
        "", "| Catalog | expired | seconds | copies/s | object store s | catalog s | batches |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for x, label in ((base, f"{e:,} copies (baseline)"), (large, f"{n:,} copies")):
        lines.append(f"| {label} | {x['expired']:,} | {_f(x['seconds'], 1)} | {_f(x['copies_per_s'], 0)} | "
                     f"{_f(x['object_store_s'], 1)} | {_f(x['catalog_s'], 1)} | {x['batches']} |")
    if "raw" in r:
        raw = r["raw"]
        lines.append(f"| raw floor: boto3 DeleteObjects naming (key, version), 1,000 a call, no catalog | "
                     f"{raw['keys']:,} | {_f(raw['seconds'], 1)} | {_f(raw['copies_per_s'], 0)} | "
                     f"{_f(raw['seconds'], 1)} | – | {-(-raw['keys'] // 1000)} calls |")
    ratio = r["ratio"]
    lines += ["", f"Ratio (seconds among {n:,} ÷ among {e:,}): **{_ratio(ratio)}**; goal ≤ {r['goal_ratio']}×: "
              f"{_goal(ratio <= r['goal_ratio'])}. By part: object store {_ratio(r['object_store_ratio'])}, catalog "
              f"{_ratio(r['catalog_ratio'])}. Host CPU busy {_f(r['host_busy_pct'], 0)}%, foreign load "
              f"{_foreign(r)} cores.", ""]
    if "raw" in r:
        explain = large["setup"].get("count_explain", {})
        lines += [f"Sweep among {n:,} against the raw floor (copies/s ÷ raw keys/s, the raw loop run in the same "
                  f"alternating rounds over {r['raw']['keys']:,} keys set up the same way): **{_ratio(r['vs_raw'])}**; "
                  f"goal ≥ {r['goal_vs_raw']}×: {_goal(r['vs_raw'] >= r['goal_vs_raw'])} (among {e:,}: "
                  f"{_ratio(r['baseline_vs_raw'])}). The sweep's opening count (`count_due`, `EXPLAIN ANALYZE` on "
                  f"the {n:,}-row catalog): "
                  + ("a sequential scan of `copies` (**missed**)." if explain.get("seq_scan")
                     else "partial-index scans only, no sequential scan of `copies`."), ""]
    lines += [
              "Setup (not timed): catalog " + ", ".join(
                  f"{_f(x['setup']['catalog_s'], 0)} s for {x['total']:,} rows" for x in (base, large))
              + "; objects " + ", ".join(f"{_f(x['setup']['objects_per_s'], 0)}/s" for x in (base, large)) + ".", ""]
    return lines


def access_section(r: dict) -> list[str]:
    d, goals = r["decision"], r["goals"]
    p, b = d["policy_us"], d["baseline_us"]
    lines = [
        "## Access: policy decision and Range playback", "",
        f"Measured {r['date']} ({'--quick' if r['quick'] else 'full'}).", "",
        "### Policy decision (`access.policy.decide`)", "",
        f"{d['n']:,} decisions over a mix like the API's (search and metadata checks, playback, copies, holds; every "
        f"role, in and out of scope, other tenants, restricted recordings, IT with and without break-glass, revoked "
        f"and departed users; {100 * d['allowed_share']:.0f}% allowed). Baseline: the same cases through a function "
        f"of the same signature that looks the answer up in a dict keyed by (role, action, tier) "
        f"({d['distinct_baseline_keys']} keys). Each call timed alone (`perf_counter_ns`, whose own cost, p50 "
        f"{_f(d['timer_overhead_us']['p50'], 2)} µs, is in both); the two alternate in blocks of 1,000.",
        "", "| | p50 µs | p99 µs | p99.9 µs | max µs | calls/s (untimed loop) |", "|---|---:|---:|---:|---:|---:|",
        f"| dict lookup, same call shape (baseline) | {_f(b['p50'])} | {_f(b['p99'])} | {_f(b['p99_9'])} | "
        f"{_f(b['max'], 0)} | {_f(d['baseline_calls_per_s'], 0)} |",
        f"| `decide()` | {_f(p['p50'])} | {_f(p['p99'])} | {_f(p['p99_9'])} | {_f(p['max'], 0)} | "
        f"{_f(d['policy_calls_per_s'], 0)} |",
        "", f"Ratio `decide` ÷ baseline: p50 {_ratio(d['ratio_p50'])}, p99 {_ratio(d['ratio_p99'])}. Goal p99 < "
        f"{goals['decision_p99_ms']:g} ms: {_goal(p['p99'] < 1000 * goals['decision_p99_ms'])} "
        f"({_f(p['p99'])} µs). Foreign load {_foreign(d)} cores.", "",
        "### Range playback: time to first byte", "",
        "`GET /copies/{id}/audio` with `Range: bytes=a-b` (64 KiB from the middle of the recording, not "
        "frame-aligned: two 64 KiB frames), bearer token, keep-alive connection, to `callvault api` (uvicorn, in "
        "a subprocess) over PostgreSQL and MinIO. Each request: token check, user loaded from the catalog, copy "
        "row with its recording (and, since issue 20, the encryption header), policy decision, key unwrap, one "
        "ranged GET of the frames (two before issue 20: header, frames), decryption, hash-chained audit entry "
        "committed. TTFB = request sent → first body byte received. Baseline: a boto3 ranged GET of the same "
        "64 KiB of an unencrypted object of the same size in the same bucket, to its first body byte. Context: "
        "`read_copy_range` called in-process (the storage share of a request). Interleaved, bytes checked.", "",
        "| Object | Measure | p50 ms | p90 ms | p99 ms | max ms | foreign load |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for x in r["playback"]:
        label = f"{x['label']}, {_f(x['object_bytes'] / 1e6, 1)} MB"
        for key, name in (("raw_ttfb_ms", "raw boto3 ranged GET, TTFB (baseline)"),
                          ("api_ttfb_ms", "API, TTFB"), ("api_total_ms", "API, whole 64 KiB"),
                          ("storage_ms", "`read_copy_range` in-process (context)"),
                          ("floor_ttfb_ms", "audited floor: SELECT user + copy, durable INSERT, raw GET (second "
                                            "baseline), TTFB")):
            if key not in x:
                continue
            m = x[key]
            lines.append(f"| {label} | {name} | {_f(m['median'])} | {_f(m['p90'])} | {_f(m['p99'])} | "
                         f"{_f(m['max'])} | {_foreign(x)} |")
    lines += [""]
    for x in r["playback"]:
        api = x["api_ttfb_ms"]
        lines.append(f"- {x['label']}: TTFB ratio API ÷ raw GET p50 {_ratio(x['ratio_p50'])}, p99 "
                     f"{_ratio(x['ratio_p99'])}; goal p99 < {goals['ttfb_p99_ms']:g} ms: "
                     f"{_goal(api['p99'] < goals['ttfb_p99_ms'])} ({_f(api['p99'])} ms); API server CPU "
                     f"{_f(x['server_cpu_ms_per_request'], 1)} ms per request; {x['reps']} requests each.")
        if "ttfb_p99_ratio" in goals:
            lines.append(f"  Goal (issue 20) API p99 ≤ {goals['ttfb_p99_ratio']:g}× the raw GET's: "
                         f"{_goal(x['ratio_p99'] <= goals['ttfb_p99_ratio'])}.")
        if "floor_ratio_p99" in x:
            lines.append(f"  API ÷ the audited floor: p50 {_ratio(x['floor_ratio_p50'])}, p99 "
                         f"{_ratio(x['floor_ratio_p99'])} (context: the share of the gap that is the durable "
                         "audit entry every listen must commit first).")
    c = r.get("playback_concurrent")
    if c:
        lines += ["", f"### Range playback with {c['listeners']} concurrent listeners", "",
                  f"{c['listeners']} threads, each with its own keep-alive connection, each sending {c['per_listener']} "
                  f"Range requests back to back ({c['label']}, the same 64 KiB), all released together; then "
                  f"{c['listeners']} threads of raw boto3 ranged GETs (one client, a pool of a connection per "
                  "thread); API, raw, raw, API. TTFB per request; API server, PostgreSQL, MinIO and the client "
                  "threads share the host's 2 cores.", "",
                  "| Measure | p50 ms | p90 ms | p99 ms | max ms | requests/s |", "|---|---:|---:|---:|---:|---:|"]
        for key, rate, name in (("raw_ttfb_ms", "raw_requests_per_s", "raw boto3 ranged GET, TTFB (baseline)"),
                                ("api_ttfb_ms", "api_requests_per_s", "API, TTFB")):
            m = c[key]
            lines.append(f"| {name} | {_f(m['median'])} | {_f(m['p90'])} | {_f(m['p99'])} | {_f(m['max'])} | "
                         f"{_f(c[rate], 0)} |")
        failed = c.get("api_failed", 0)
        lines += ["", f"Ratio API ÷ raw GET: p50 {_ratio(c['ratio_p50'])}, p99 {_ratio(c['ratio_p99'])}; API requests "
                  f"failed: {failed}{' (status ' + ', '.join(map(str, c['api_failed_statuses'])) + '; 0 = cut)' if failed else ''}"
                  f"; goal p99 ≤ {goals.get('ttfb_p99_ratio_concurrent', 3):g}× and none failed: "
                  f"{_goal(c['ratio_p99'] <= goals.get('ttfb_p99_ratio_concurrent', 3) and not failed)}. API server CPU "
                  f"{_f(c['server_cpu_ms_per_request'], 1)} ms per request; {c['requests']} requests each side; "
                  f"foreign load {_foreign(c)} cores."]
    return lines + [""]


def rss_section(r: dict) -> list[str]:
    a = r["audio"]
    lines = [
        "## Worker memory: one 1-hour call", "",
        f"Measured {r['date']} ({'--quick' if r['quick'] else 'full'}). A real `callvault worker` (default settings, "
        f"scratch topics/buckets/schema) ingests one 3,600 s {a['format']} call ({_f(a['hour_bytes'] / 1e6, 1)} MB: "
        f"above the {a['inline_max_bytes'] // 1024} KiB inline limit, so it travels by claim check through the "
        "landing bucket). Memory from /proc every "
        f"{int(1000 * r['sample_interval_s'])} ms: the worker's peak RSS (the larger of VmHWM, reset just before the "
        "call, and the highest VmRSS sampled), and its children (ffmpeg) apart, as sampled (a child living less "
        "than a sample's interval may be missed or caught before its peak). Baselines, same worker: its RSS idle "
        "after start-up, and its peak while "
        f"ingesting one 60 s call ({_f(a['minute_bytes'] / 1e6, 2)} MB, inline). MB = 10^6 bytes.", "",
        "| Format | idle after start-up (baseline) | peak, 60 s call (baseline) | peak, 1 h call | ÷ idle | "
        "÷ 60 s call | largest ffmpeg child | worker + children at once | Goal < 300 MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for fmt, m in r["modes"].items():
        h, one = m["one_hour"], m["one_minute"]
        lines.append(f"| {fmt} | {_f(m['idle_mb'], 0)} MB | {_f(one['worker_peak_mb'], 0)} MB | "
                     f"**{_f(h['worker_peak_mb'], 0)} MB** | {_ratio(m['ratio_vs_idle'])} | "
                     f"{_ratio(m['ratio_vs_one_minute'])} | {_f(h['child_peak_mb'], 0)} MB ({h['children']} "
                     f"process{'es' if h['children'] != 1 else ''}) | {_f(h['tree_max_mb'], 0)} MB | "
                     f"{_goal(h['worker_peak_mb'] < r['goal_mb'])} |")
    lines += ["", "After the 1-hour call the worker holds " + "; ".join(
        f"{fmt} {_f(m['rss_after_hour_idle_mb'], 0)} MB (ingest took {_f(m['one_hour']['seconds'], 0)} s)"
        for fmt, m in r["modes"].items()) + ".", ""]
    return lines


def _run_row(label: str, x: dict, goal_ratio: float | None, goal_mb: float) -> str:
    verdict = "" if goal_ratio is None else _goal(x["ratio"] <= goal_ratio and x["vmhwm_mb"] < goal_mb)
    return (f"| {label} | {_f(x['seconds'], 1)} | {_ratio(x['ratio'])} | {_f(x['vmhwm_mb'], 0)} MB | "
            f"{_foreign(x)} | {verdict} |")


def retention_section(r: dict) -> list[str]:
    g = r["goals"]
    lines = ["## Retention changes and reconcile at catalog scale (issue 20, items 3 and 4)", "",
             f"Measured {r['date']}. Each operation runs in its own "
             "process; time = the operation inside it, peak RSS = that process's VmHWM. \"before\" = the code of "
             "main when this work started, measured in the same run.", ""]
    if "retention" in r:
        x = r["retention"]
        runs = x["runs"]
        lines += [f"### `set-retention` over {x['copies']:,} copies (production, {x['months'][0]} → "
                  f"{x['months'][1]} months; every copy changes){' — `--quick`' if x.get('quick') else ''}", "",
                  "Baseline: one SQL UPDATE writing the same expiries, no counts. Expiries reset and the table "
                  "vacuumed before each run (not timed).", "",
                  "| Run | seconds | ÷ baseline | peak RSS | foreign load | goal ≤ "
                  f"{g['retention_ratio']}× and < {g['rss_mb']:.0f} MB |", "|---|---:|---:|---:|---:|---|",
                  _run_row("single UPDATE (baseline)", runs["baseline"], None, g["rss_mb"])]
        for key, label, goal in (("before", "before: `set_retention`", g["retention_ratio"]),
                                 ("after", "after: `set_retention`", g["retention_ratio"]),
                                 ("before_dry_run", "before: dry run", None),
                                 ("after_dry_run", "after: dry run", None)):
            if key in runs:
                lines.append(_run_row(label, runs[key], goal, g["rss_mb"]))
        lines.append("")
    if "reconcile" in r:
        for key, x in r["reconcile"].items():
            if key == "quick":
                continue
            runs = x["runs"]
            lines += [f"### `storage reconcile` (report) over {x['rows']:,} rows, {x['objects']:,} with their object",
                      "", "Baseline: one key-ordered SELECT of every key + one bucket listing, their set difference, "
                      "in one process.", "",
                      "| Run | seconds | ÷ baseline | peak RSS | foreign load | goal ≤ "
                      f"{g['reconcile_ratio']}× and < {g['rss_mb']:.0f} MB |", "|---|---:|---:|---:|---:|---|",
                      _run_row("SELECT + listing set difference (baseline)", runs["baseline"], None, g["rss_mb"])]
            for label in ("before", "after"):
                if label in runs:
                    lines.append(_run_row(f"{label}: `reconcile`", runs[label], g["reconcile_ratio"], g["rss_mb"]))
            lines.append("")
    return lines


def search_section(r: dict) -> list[str]:
    c, sc = r["catalog"], r["scale"]
    lines = [
        "## Search at catalog scale", "",
        f"Measured {r['date']} ({'--quick' if r['quick'] else 'full'}). One tenant, {c['recordings']:,} recordings "
        f"({c['copies']:,} copies: production, monitoring, training, complaint extracts; some expired, held, being "
        f"deleted, restricted) over 90 days, {sc['agents']} agents in {sc['teams']} teams, {sc['numbers']:,} numbers "
        "with real caller keys and sealed numbers; built by `generate_series`, migrated with the real migrations, "
        f"`VACUUM ANALYZE`. `callvault api` in a subprocess, {r['page']} per page, keep-alive, bearer token. A deep "
        "page is asked with the cursor of the recording just before it. Baseline, interleaved with each request: "
        "the search's own SQL scope for the same user and filters (same rows, same keyset predicate, same LIMIT) "
        "sent by psycopg on an open connection. Each API page is checked against its SELECT. Goal: API p99 ≤ "
        f"{r['goal_p99_ratio']:g}× the SELECT's p99.", "",
        "| Search | depth (of) | API p50 ms | API p99 ms | SELECT p50 ms | SELECT p99 ms | p99 ratio | audited "
        "floor p99 ms (API ÷ it) | API CPU ms/request | n | foreign cores |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def row(m: dict, label: str) -> str:
        a, b = m["api_ms"], m["select_ms"]
        floor = (f"{_f(m['floor_ms']['p99'])} ({_ratio(m['floor_ratio_p99'])})" if "floor_ms" in m else "—")
        return (f"| {label} | {m['depth']:,} ({m['result_set']:,}) | {_f(a['p50'], 1)} | {_f(a['p99'], 1)} | "
                f"{_f(b['p50'])} | {_f(b['p99'])} | {_ratio(m['ratio_p99'])} | {floor} | "
                f"{_f(m['api_cpu_ms_per_request'], 1)} | {a['n']} | {m['foreign_cores']:.2f}"
                f"{' ⚠' if m['foreign_cores'] > 0.25 else ''} |")

    for m in r["after"]:
        lines.append(row(m, m["case"] + (" — context, not a goal" if m.get("context") else "")))
    worst = max((m for m in r["after"] if not m.get("context")), key=lambda m: m["ratio_p99"])
    lines += ["", f"Worst p99 ratio: {_ratio(worst['ratio_p99'])} ({worst['case']} at depth {worst['depth']:,}); "
              f"goal ≤ {r['goal_p99_ratio']:g}×: {_goal(r['goal_met'])}.", ""]
    if r.get("before"):
        lines += [f"### Before: the API of {r['before_rev']} on the same catalog, same run", "",
                  "Same cases at page 1 and depth 10,000 (fewer requests; its old DISTINCT-over-join query with "
                  "this revision's indexes present, which can only help it). Offsets are the issue's figures "
                  "(before keyset pagination): 6–13 s at offset 10,000, 315 s at offset 100,000.", "",
                  "| Search | depth (of) | API p50 ms | API p99 ms | SELECT p50 ms | SELECT p99 ms | p99 ratio | "
                  "audited floor p99 ms (API ÷ it) | API CPU ms/request | n | foreign cores |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        lines += [row(m, m["case"] + ("" if m.get("matches_select", True) else " (page ≠ SELECT)"))
                  for m in r["before"]]
        lines.append("")
    return lines


def render(machine: dict, ingest: dict | None, encryption: dict | None, sweep: dict | None = None,
           access: dict | None = None, rss: dict | None = None, search: dict | None = None,
           retention: dict | None = None) -> str:
    dates = [x["date"] for x in (ingest, encryption, sweep, access, rss, search, retention) if x and "date" in x]
    lines = ["# Benchmark results", "",
             f"Written by `bench/run` on {max(dates) if dates else common.now_iso()} (UTC). Every figure is "
             "set against a baseline measured in the same run on the same machine; ratios are what to compare "
             "across machines, not absolute numbers. Raw data: `bench/out/*.json` (not committed). How to run and "
             "what each benchmark measures: [README.md](README.md).", ""]
    lines += machine_section(machine)
    if ingest:
        lines += ingest_section(ingest)
    if ingest or _load("ingest-ab"):
        lines += ingest_issue20_section(ingest, _load("ingest-before"), _load("ingest-round-trips"),
                                        _load("ingest-round-trips-before"), _load("ingest-latency-before"),
                                        _load("ingest-latency"), _load("ingest-ab"))
    if encryption:
        lines += encryption_section(encryption)
    if sweep:
        lines += sweep_section(sweep)
    if access:
        lines += access_section(access)
    if rss:
        lines += rss_section(rss)
    if search:
        lines += search_section(search)
    if retention:
        lines += retention_section(retention)
    notes = common.ROOT / "bench" / "NOTES.md"
    if notes.exists():
        lines += ["## Analysis", "", "See [NOTES.md](NOTES.md) (profiles: what limits the worker, encrypted reads, "
                  "playback and memory).", ""]
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    machine = common.machine()
    common.write_json("machine", machine)
    RESULTS.write_text(render(machine, _load("ingest"), _load("encryption"), _load("sweep"), _load("access"),
                              _load("rss"), _load("search"), _load("retention")))
    common.say(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
