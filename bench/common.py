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


def process_cpu_seconds(pid: int) -> float:
    """utime + stime + cutime + cstime of a process (its reaped children, e.g. ffmpeg, included)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))
    return ticks / os.sysconf("SC_CLK_TCK")


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
    minio_rt = _first_line([str(st.minio.binary), "--version"])
    minio_go = re.search(r"go[\d.]+", subprocess.run([str(st.minio.binary), "--version"], capture_output=True,
                                                      text=True).stdout or "")
    return {
        "cpu_model": model,
        "cpu_cores": cores,
        "ram_gib": round(mem_kb / 1024 / 1024, 1),
        "os": f"{os_name}, Linux {platform.release()}",
        "python": platform.python_version(),
        "kafka": f"{st.settings.kafka_version} (KRaft, {'jar present' if kafka_jar.exists() else 'jar missing'})",
        "minio": f"{st.settings.minio_version} ({minio_go.group(0) if minio_go else minio_rt})",
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
