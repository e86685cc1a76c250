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
        f"{r['partitions']} partitions) → one `callvault worker` subprocess (default concurrency "
        f"{r['worker_concurrency']}) → MinIO (client-side encrypted) → PostgreSQL catalog. Worker warm before "
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
                goal = f"≥ 0.8× (pass-through): {_goal(ratio >= 0.8)}" if fmt == "flac" else "–"
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
        + f"; every run checked: all calls `stored`, none dead-lettered, catalog rows = objects = calls.", ""]
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
                  "`read_copy_range` includes the catalog row, the key unwrap and two ranged GETs (header, frames).",
                  "", "| | p50 ms | p90 ms | p99 ms | GETs |", "|---|---:|---:|---:|---:|",
                  f"| raw ranged GET (baseline) | {_f(rg['raw_ms']['median'])} | {_f(rg['raw_ms']['p90'])} | "
                  f"{_f(rg['raw_ms']['p99'])} | {rg['requests']['raw']} |",
                  f"| `read_copy_range` | {_f(rg['encrypted_ms']['median'])} | {_f(rg['encrypted_ms']['p90'])} | "
                  f"{_f(rg['encrypted_ms']['p99'])} | {rg['requests']['encrypted']} |",
                  "", f"Ratio (p50, raw ÷ encrypted): {_ratio(rg['ratio_median'])}.", ""]
    return lines


def render(machine: dict, ingest: dict | None, encryption: dict | None) -> str:
    dates = [x["date"] for x in (ingest, encryption) if x]
    lines = ["# Benchmark results", "",
             f"Written by `bench/run` on {max(dates) if dates else common.now_iso()} (UTC). Every figure is "
             "set against a baseline measured in the same run on the same machine; ratios are what to compare "
             "across machines, not absolute numbers. Raw data: `bench/out/*.json` (not committed). How to run and "
             "what each benchmark measures: [README.md](README.md).", ""]
    lines += machine_section(machine)
    if ingest:
        lines += ingest_section(ingest)
    if encryption:
        lines += encryption_section(encryption)
    notes = common.ROOT / "bench" / "NOTES.md"
    if notes.exists():
        lines += ["## Analysis", "", "See [NOTES.md](NOTES.md) (profile of the worker and what limits it).", ""]
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    machine = common.machine()
    common.write_json("machine", machine)
    RESULTS.write_text(render(machine, _load("ingest"), _load("encryption")))
    common.say(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
