"""Shared helpers of the benchmarks: the local stack, scratch buckets/schemas, statistics,
the machine description and JSON output. Nothing here times anything by itself."""

from __future__ import annotations

import base64
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Sequence

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/x.py` as well as `python -m bench.x`
    sys.path.insert(0, str(ROOT))

OUT = ROOT / "bench" / "out"
MB = 1_000_000  # throughput figures are in MB/s with MB = 10^6 bytes


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def stack():
    """The local stack, brought up if needed (idempotent)."""
    from deploy.local.stack import Stack

    s = Stack.from_settings()
    s.up(say=lambda _m: None)
    return s


def storage_settings(st, prefix: str):
    """StorageSettings for the stack's MinIO, three fresh bucket names and a fresh master key."""
    from pydantic import SecretStr

    from storage.settings import StorageSettings

    secrets = st.minio.secrets
    return StorageSettings(
        endpoint_url=f"http://{st.minio.address}", region=st.settings.minio_region,
        access_key=SecretStr(secrets["minio_root_user"]), secret_key=SecretStr(secrets["minio_root_password"]),
        master_key=SecretStr(base64.b64encode(os.urandom(32)).decode()),
        recordings_bucket=f"{prefix}-rec", landing_bucket=f"{prefix}-land", exports_bucket=f"{prefix}-exp",
    )


def delete_buckets(settings, buckets: Iterable[str]) -> None:
    """Empty (every version, bypassing governance retention) and delete each bucket that exists."""
    from storage.objectstore import s3_client

    s3 = s3_client(settings)
    existing = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    for bucket in buckets:
        if bucket not in existing:
            continue
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            doomed = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                      for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
            for i in range(0, len(doomed), 1000):
                s3.delete_objects(Bucket=bucket, Delete={"Objects": doomed[i:i + 1000], "Quiet": True},
                                  BypassGovernanceRetention=True)
        s3.delete_bucket(Bucket=bucket)


def pg_schema(st, prefix: str) -> tuple[str, str]:
    """Create a fresh PostgreSQL schema; return (schema, URL whose search_path is that schema)."""
    import sqlalchemy as sa

    schema = prefix.replace("-", "_")
    admin = sa.create_engine(st.postgres_url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    return schema, f"{st.postgres_url}?options=-csearch_path%3D{schema}"


def drop_pg_schema(st, schema: str) -> None:
    import sqlalchemy as sa

    admin = sa.create_engine(st.postgres_url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    admin.dispose()


# -- the floor of an audited request ----------------------------------------------------------------
# Every search and every listen must write its audit entry durably before it answers (DESIGN.md
# §Roles): a second baseline, beside the bare one, is that write alone done as cheaply as
# PostgreSQL allows: one INSERT of an audit-sized row on an open psycopg connection in autocommit
# (one round trip, the WAL flushed at its commit), no hash chain, no lock, no framework.
FLOOR_AUDIT = "bench_floor_audit"
FLOOR_DETAIL = ('{"recording_id": "6f1c0b0e-3c55-4f0e-9a43-3d1f5b1b7c21", "tier": "production", '
                '"total": 7200000, "start": 3604096, "end": 3669631, "decision": "allowed"}')


def floor_audit_table(raw) -> None:
    """The floor's table, in the connection's schema (the bench's scratch one)."""
    with raw.cursor() as cur:
        cur.execute(f"CREATE TABLE IF NOT EXISTS {FLOOR_AUDIT} (id bigserial PRIMARY KEY, "
                    "at timestamptz NOT NULL DEFAULT now(), actor text NOT NULL, detail jsonb NOT NULL)")
    if not raw.autocommit:
        raw.commit()


def floor_audit_append(cur) -> None:
    """The one durable write an audited request cannot skip (``cur``'s connection in autocommit)."""
    cur.execute(f"INSERT INTO {FLOOR_AUDIT} (actor, detail) VALUES (%s, %s)", ("bench-user", FLOOR_DETAIL))


# -- statistics ------------------------------------------------------------------------------
def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def percentile(xs: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100): a value that was actually observed."""
    s = sorted(xs)
    if not s:
        return float("nan")
    rank = max(1, -(-len(s) * p // 100))
    return s[int(min(rank, len(s))) - 1]


def summary(xs: Sequence[float]) -> dict:
    return {"n": len(xs), "median": median(xs), "min": min(xs), "max": max(xs),
            "p90": percentile(xs, 90), "p99": percentile(xs, 99)}


# -- CPU accounting -----------------------------------------------------------------------------
def host_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of the whole host from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def process_cpu_seconds(pid: int, *, split: bool = False):
    """utime + stime + cutime + cstime of a process (its reaped children, e.g. ffmpeg, included);
    with ``split``, (own, children) separately."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    tck = os.sysconf("SC_CLK_TCK")
    own = (int(fields[11]) + int(fields[12])) / tck
    children = (int(fields[13]) + int(fields[14])) / tck
    return (own, children) if split else own + children


def tree_cpu_seconds(pid: int) -> tuple[float, float]:
    """(own, children) of ``process_cpu_seconds`` summed over ``pid`` and its live descendants:
    a ``callvault worker --processes N`` supervisor and its N members (their reaped ffmpeg
    processes in "children")."""
    table = _proc_table()
    kids: dict[int, list[int]] = {}
    for (p, _start), (_name, ppid, _cpu) in table.items():
        kids.setdefault(ppid, []).append(p)
    own = children = 0.0
    todo, seen = [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            o, c = process_cpu_seconds(p, split=True)
        except OSError:  # exited meanwhile
            continue
        own, children = own + o, children + c
        todo += kids.get(p, [])
    return own, children


# -- other people's load ------------------------------------------------------------------------
# This machine may be shared (other sessions run test suites that start workers and ffmpeg).
# Each measurement records how much CPU processes *not ours* used meanwhile, and each one
# starts only once the host is quiet (or after a bounded wait, flagged in the results).
SHARED_SERVERS = {"java", "minio", "postgres"}  # the stack: shared infrastructure, not "foreign"


def _proc_table() -> dict[tuple[int, int], tuple[str, int, int]]:
    """(pid, start time) -> (name, ppid, cpu ticks incl. reaped children)."""
    table = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        f = stat[stat.rindex(")") + 2:].split()
        table[(int(d), int(f[19]))] = (name, int(f[1]), sum(int(f[i]) for i in (11, 12, 13, 14)))
    return table


def _own_pids(table) -> set[int]:
    children: dict[int, list[int]] = {}
    for (pid, _start), (_name, ppid, _cpu) in table.items():
        children.setdefault(ppid, []).append(pid)
    own, todo = set(), [os.getpid()]
    while todo:
        pid = todo.pop()
        if pid not in own:
            own.add(pid)
            todo += children.get(pid, [])
    return own


class CpuWatch:
    """CPU used during a window: the whole host, and processes outside this benchmark's tree
    and outside the stack's servers ("foreign": other sessions' tests, workers, ffmpeg)."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.host0 = host_cpu()
        self.table0 = _proc_table()

    def stop(self) -> dict:
        wall = max(1e-6, time.monotonic() - self.t0)
        host1, table1 = host_cpu(), _proc_table()
        own = _own_pids(table1) | _own_pids(self.table0)
        tck = os.sysconf("SC_CLK_TCK")
        foreign: dict[str, float] = {}
        servers: dict[str, float] = {}
        me = 0.0
        for key, (name, _ppid, cpu) in table1.items():
            before = self.table0.get(key)
            used = ((cpu - before[2]) if before else cpu) / tck
            if used <= 0:
                continue
            if key[0] == os.getpid():
                me += used
            elif name in SHARED_SERVERS:
                servers[name] = servers.get(name, 0.0) + used
            elif key[0] not in own:
                foreign[name] = foreign.get(name, 0.0) + used
        return {"wall_s": wall,
                "host_busy_pct": 100.0 * (host1[0] - self.host0[0]) / max(1, host1[1] - self.host0[1]),
                "foreign_cores": sum(foreign.values()) / wall,
                "foreign_top": {k: round(v, 2) for k, v in sorted(foreign.items(), key=lambda kv: -kv[1])[:4]},
                "servers_cores": {k: round(v / wall, 3) for k, v in servers.items()},
                "bench_process_cores": me / wall}


def wait_quiet(max_wait: float | None = None, busy_pct: float = 20.0, window: float = 3.0) -> dict:
    """Wait until the whole host is below ``busy_pct`` for two windows in a row (the idle stack
    uses a few %), at most ``max_wait`` s (env BENCH_MAX_QUIET_WAIT, default 900)."""
    max_wait = float(os.environ.get("BENCH_MAX_QUIET_WAIT", 900)) if max_wait is None else max_wait
    t0, calm, told = time.monotonic(), 0, False
    last = {}
    while True:
        w = CpuWatch()
        time.sleep(window)
        last = w.stop()
        calm = calm + 1 if last["host_busy_pct"] < busy_pct else 0
        waited = time.monotonic() - t0
        if calm >= 2:
            return {"waited_s": waited, "quiet": True, "host_busy_pct": last["host_busy_pct"]}
        if waited > max_wait:
            say(f"  host still busy after {waited:.0f}s ({last['host_busy_pct']:.0f}%, foreign "
                f"{last['foreign_top']}): measuring anyway, flagged")
            return {"waited_s": waited, "quiet": False, "host_busy_pct": last["host_busy_pct"]}
        if not told and waited > 10:
            say(f"  waiting for a quiet host ({last['host_busy_pct']:.0f}% busy; foreign: "
                f"{', '.join(last['foreign_top']) or 'stack servers'})")
            told = True


def least_contended(measure, tries: int = 3, limit: float = 0.25) -> dict:
    """Run ``measure()`` (returns a dict with "foreign_cores") until other processes used at most
    ``limit`` cores meanwhile, at most ``tries`` times; keep the least contended run."""
    best = None
    for attempt in range(1, tries + 1):
        result = measure()
        result["attempt"] = attempt
        if best is None or result["foreign_cores"] < best["foreign_cores"]:
            best = result
        if result["foreign_cores"] <= limit:
            break
        say(f"  other processes used {result['foreign_cores']:.2f} cores meanwhile "
            f"({', '.join(result.get('foreign_top', {}))}): measuring again")
    best["attempts"] = attempt
    return best


# -- machine ---------------------------------------------------------------------------------------
def _cpuinfo() -> tuple[str, int]:
    text = Path("/proc/cpuinfo").read_text()
    models = re.findall(r"^model name\s*:\s*(.+)$", text, re.M)
    return (models[0].strip() if models else platform.processor() or "unknown"), len(
        re.findall(r"^processor\s*:", text, re.M))


def _first_line(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "unknown"


def machine(st=None) -> dict:
    """What the figures were measured on."""
    import sqlalchemy as sa

    st = st or stack()
    model, cores = _cpuinfo()
    mem_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
    os_name = "unknown"
    if Path("/etc/os-release").exists():
        m = re.search(r'^PRETTY_NAME="?([^"\n]+)', Path("/etc/os-release").read_text(), re.M)
        os_name = m.group(1) if m else os_name
    engine = sa.create_engine(st.postgres_url)
    with engine.connect() as conn:
        pg = conn.execute(sa.text("SHOW server_version")).scalar()
    engine.dispose()
    kafka_jar = st.kafka.libs / f"kafka_2.13-{st.settings.kafka_version}.jar"
    try:
        minio_out = subprocess.run([str(st.minio.binary), "--version"], capture_output=True, text=True,
                                   timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        minio_out = ""
    minio_go = re.search(r"go\d[\d.]*", minio_out)
    return {
        "cpu_model": model,
        "cpu_cores": cores,
        "ram_gib": round(mem_kb / 1024 / 1024, 1),
        "os": f"{os_name}, Linux {platform.release()}",
        "python": platform.python_version(),
        "kafka": f"{st.settings.kafka_version} (KRaft, single node" + (")" if kafka_jar.exists() else "; jar not found)"),
        "minio": f"{st.settings.minio_version}" + (f" (built with {minio_go.group(0)})" if minio_go else ""),
        "postgresql": str(pg),
        "ffmpeg": _first_line(["ffmpeg", "-version"]).replace("ffmpeg version ", "").split(" Copyright")[0],
    }


# -- output -------------------------------------------------------------------------------------------
def now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def write_json(name: str, data: dict) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path


def say(msg: str) -> None:
    print(msg, flush=True)
