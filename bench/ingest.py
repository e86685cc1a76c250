"""Ingest throughput and produce→stored latency through the real pipeline, against baselines.

Pipeline: N one-minute 8 kHz µ-law calls → Kafka (scratch recordings topic, 4 partitions) →
a real ``callvault worker`` subprocess (default settings: calls in flight by storage format) → MinIO (scratch
buckets made by ``storage.admin.init_buckets``) → PostgreSQL catalog (scratch schema migrated
to head), exactly as the ``pipeline`` test fixture sets it up. One 60 s call is synthesised
(ffmpeg's flite voice looped to 60 s, µ-law WAV, ~480 KB) and sent N times under distinct
recording ids and caller numbers. At ~480 KB it is below the default 512 KiB inline limit,
so the audio travels inline (base64, ~640 KB messages): no claim check, no landing bucket.

Measured, per storage format (``passthrough``: the µ-law WAV kept as it came, spans silenced in
place, no ffmpeg run; ``opus``: decode + Opus encode, the default; ``flac``: decode + FLAC):

- backlog run: all N messages produced at once (messages built beforehand), a warm worker;
  calls/s = N / (last stored event's Kafka timestamp − first produced message's timestamp);
  produce→stored latency per call = stored event's Kafka timestamp − its message's timestamp;
- low-rate run: one call every 0.5 s, the same latency (little queueing);
- isolated run: each call sent once the previous one is stored (no queueing at all).

Baselines, same run, same bytes:

- raw I/O floor: boto3 ``put_object`` of each call's bytes to an identically configured
  bucket plus one INSERT (own transaction) per call into a PostgreSQL table; sequential, and
  with a pool of 4 threads;
- ffmpeg alone: the same WAV → Ogg/Opus (or FLAC) with the worker's encoder settings, N
  times, ``nproc`` processes in parallel; per core = calls/s ÷ nproc;
- ffmpeg alone, one call at a time: the latency floor of one call (issue 20): the wall time of
  one such ffmpeg process, max(20, low-n) times in a row; the worker's produce→stored latency
  in the low-rate and isolated runs minus it is callvault's overhead.

``--round-trips``: only the catalog statements of one call, counted in process.

    .venv/bin/python -m bench.ingest [--quick] [--n N] [--modes passthrough,opus,flac]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common  # noqa: E402

SPEECH = ("Hello, thank you for calling customer support. My name is Anna, how can I help you today? "
          "I would like to check the status of my order please. Of course, can you give me your order number? "
          "It is four five seven, one two nine. Thank you, one moment please, I am looking it up.")
INLINE_MAX = 512 * 1024  # the product default (IngestSettings.inline_max_bytes)
PARTITIONS = 4


def processes_for(storage_format: str) -> int:
    """Worker processes as deployed (``deploy/README.md``): one per core, up to the partitions, where
    one worker is bound by its own Python (pass-through); one where ffmpeg already uses every core."""
    return min(os.cpu_count() or 1, PARTITIONS) if storage_format == "passthrough" else 1
ENCODER_ARGS = {  # what ingest.audio.normalise runs for an 8 kHz mono call
    "opus": ["-c:a", "libopus", "-application", "voip", "-b:a", "16k", "-ar", "8000", "-f", "ogg"],
    "flac": ["-c:a", "flac", "-compression_level", "5", "-f", "flac"],
}
SUFFIX = {"opus": ".ogg", "flac": ".flac"}
_NUMBERS = itertools.count()  # a distinct caller number per call (a caller key each, as in real traffic)


# -- the audio -----------------------------------------------------------------------------------
def make_call_wav(directory: Path) -> Path:
    """One 60 s, 8 kHz mono µ-law WAV of synthetic speech (flite), looped to length."""
    speech, call = directory / "speech.wav", directory / "call.wav"
    base = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    text = SPEECH.replace("'", "").replace(":", " ").replace(",", " ")
    try:
        subprocess.run([*base, "-f", "lavfi", "-i", f"flite=text='{text}':voice=slt", str(speech)],
                       check=True, capture_output=True)
        src = ["-stream_loop", "-1", "-i", str(speech)]
    except subprocess.CalledProcessError:  # ffmpeg without libflite: a tone instead
        src = ["-f", "lavfi", "-i", "sine=frequency=440:duration=60"]
    subprocess.run([*base, *src, "-t", "60", "-ar", "8000", "-ac", "1", "-c:a", "pcm_mulaw",
                    "-map_metadata", "-1", "-fflags", "+bitexact", str(call)], check=True, capture_output=True)
    return call


# -- baselines -------------------------------------------------------------------------------------
def ffmpeg_alone(src: Path, n: int, fmt: str, parallel: int, workdir: Path) -> dict:
    """Transcode the same file n times, ``parallel`` ffmpeg processes at a time."""
    def one(i: int) -> None:
        out = workdir / f"ff-{fmt}-{i % (2 * parallel)}{SUFFIX[fmt]}"
        subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", str(src),
                        *ENCODER_ARGS[fmt], "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:a", "+bitexact",
                        str(out)], check=True, capture_output=True)

    one(0)  # warm the page cache
    quiet = common.wait_quiet()
    watch = common.CpuWatch()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(one, range(n)))
    wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = watch.stop()
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)  # the ffmpeg processes' own CPU
    out_bytes = (workdir / f"ff-{fmt}-0{SUFFIX[fmt]}").stat().st_size
    return {"n": n, "parallel": parallel, "wall_s": wall, "calls_per_s": n / wall,
            "calls_per_s_per_core": n / wall / parallel, "output_bytes": out_bytes, "quiet_gate": quiet,
            "cpu_s_per_call": cpu / n,
            "foreign_cores": load["foreign_cores"], "foreign_top": load["foreign_top"]}


def _ffmpeg_cmd(src: Path, fmt: str, out: Path) -> list[str]:
    return ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", str(src), *ENCODER_ARGS[fmt],
            "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:a", "+bitexact", str(out)]


def paired_ffmpeg(src: Path | None, fmt: str, workdir: Path):
    """ffmpeg alone encoding the call once (its wall time, s): run between two isolated calls, so
    callvault and its floor are measured alternately under the same load; None for passthrough."""
    if src is None or fmt not in ENCODER_ARGS:
        return None
    cmd = _ffmpeg_cmd(src, fmt, workdir / f"ff-paired-{fmt}{SUFFIX[fmt]}")

    def once() -> float:
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        return time.perf_counter() - t0
    return once


def ffmpeg_single(src: Path, n: int, fmt: str, workdir: Path) -> dict:
    """The latency floor of one call: ffmpeg alone transcoding the same file, one at a time
    (nothing else of this benchmark running), n times; the wall time of each process."""
    cmd = _ffmpeg_cmd(src, fmt, workdir / f"ff-single-{fmt}{SUFFIX[fmt]}")
    subprocess.run(cmd, check=True, capture_output=True)  # warm the page cache
    quiet = common.wait_quiet()
    watch = common.CpuWatch()
    walls = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        walls.append(time.perf_counter() - t0)
    load = watch.stop()
    return {"n": n, "wall_ms": {k: 1000 * v for k, v in common.summary(walls).items() if k != "n"},
            "walls_ms": [round(1000 * w, 1) for w in walls], "quiet_gate": quiet,
            "foreign_cores": load["foreign_cores"], "foreign_top": load["foreign_top"]}


def raw_floor(st, audio: bytes, n: int, threads: int) -> dict:
    """boto3 put_object of the bytes + one INSERT per call into PostgreSQL; no Kafka, no ffmpeg."""
    import psycopg

    from storage.admin import init_buckets
    from storage.objectstore import s3_client

    settings = common.storage_settings(st, common.unique("bench-raw"))
    init_buckets(settings, say=lambda _m: None)  # same bucket configuration as the worker writes to
    schema, _url = common.pg_schema(st, common.unique("bench_raw"))
    dsn = st.postgres_url.replace("postgresql+psycopg://", "postgresql://")
    s3 = s3_client(settings)
    local = threading.local()
    conns: list = []

    def conn():
        if not hasattr(local, "conn"):
            local.conn = psycopg.connect(dsn, autocommit=True, options=f"-csearch_path={schema}")
            conns.append(local.conn)
        return local.conn

    try:
        conn().execute("CREATE TABLE raw_calls (id uuid PRIMARY KEY, object_key text NOT NULL, "
                       "size_bytes bigint NOT NULL, created_at timestamptz NOT NULL DEFAULT now())")

        def one(_i: int) -> None:
            rid = uuid.uuid4()
            key = f"acme/{rid}/production"
            s3.put_object(Bucket=settings.recordings_bucket, Key=key, Body=audio)
            conn().execute("INSERT INTO raw_calls (id, object_key, size_bytes) VALUES (%s, %s, %s)",
                           (rid, key, len(audio)))

        for i in range(min(5, n)):  # warm-up: connections of every thread, the bucket
            one(i)
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, range(threads)))
        conn().execute("TRUNCATE raw_calls")
        quiet = common.wait_quiet()
        watch = common.CpuWatch()
        t0 = time.perf_counter()
        if threads == 1:
            for i in range(n):
                one(i)
        else:
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(one, range(n)))
        wall = time.perf_counter() - t0
        load = watch.stop()
        rows = conn().execute("SELECT count(*) FROM raw_calls").fetchone()[0]
        assert rows == n, f"{rows} rows, expected {n}"
    finally:
        for c in conns:
            c.close()
        common.drop_pg_schema(st, schema)
        common.delete_buckets(settings, [settings.recordings_bucket, settings.landing_bucket,
                                         settings.exports_bucket])
    return {"n": n, "threads": threads, "wall_s": wall, "calls_per_s": n / wall, "bytes_per_call": len(audio),
            "quiet_gate": quiet, "foreign_cores": load["foreign_cores"], "foreign_top": load["foreign_top"]}


def catalog_round_trips(st, fmt: str, audio: bytes, n: int) -> dict:
    """The catalog statements and transactions of one call: ``ingest.service.ingest`` in this
    process, n calls of distinct callers (each a new caller key, as in the benchmark), counted by
    SQLAlchemy's events (transactions: those opened with BEGIN and closed with COMMIT or ROLLBACK,
    not single statements in AUTOCOMMIT); with the worker's acknowledgement bookkeeping
    (``ingest.attempts``: one start and one finish per take of 1 call, the isolated case) apart;
    and the wall time of each ``ingest()`` (sequential, no Kafka)."""
    import sqlalchemy as sa

    from callvault.bootstrap import build_worker_deps
    from ingest import attempts
    from ingest.runtime import prepare
    from ingest.service import ingest
    from ingest.settings import IngestSettings

    counts = {"statements": 0, "transactions": 0}

    def statement(*_a, **_k) -> None:
        counts["statements"] += 1

    def transaction(conn, *_a, **_k) -> None:  # BEGIN ... COMMIT: two round trips more (not in AUTOCOMMIT)
        if conn.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
            counts["transactions"] += 1

    with scratch_pipeline(st, fmt, common.OUT / f"ingest-{fmt}-statements.log") as scratch:
        pipe = scratch.pipe
        worker = build_worker_deps(pipe.storage, pipe.env["CALLVAULT_CATALOG_URL"], IngestSettings(storage_format=fmt))
        prepare(worker)
        deps = worker.ingest
        for _k, value, _rid in build_messages(pipe, audio, 2, f"{fmt}-swarm"):
            ingest(value, deps)
        msgs = build_messages(pipe, audio, n, f"{fmt}-stmts")
        sa.event.listen(deps.engine, "before_cursor_execute", statement)
        sa.event.listen(deps.engine, "begin", transaction)
        walls = []
        for _k, value, _rid in msgs:
            t0 = time.perf_counter()
            assert ingest(value, deps).outcome.value == "stored"
            walls.append(time.perf_counter() - t0)
        service = dict(counts)
        counts.update(statements=0, transactions=0)
        now = datetime.now(timezone.utc)
        for i in range(n):
            delivery = [("bench", 0, i)]
            attempts.start(deps.engine, delivery, now=now)
            attempts.finish(deps.engine, delivery)
        bookkeeping = dict(counts)
        deps.engine.dispose()
    return {"n": n, "format": fmt,
            "service_statements_per_call": service["statements"] / n,
            "service_transactions_per_call": service["transactions"] / n,
            "bookkeeping_statements_per_call": bookkeeping["statements"] / n,
            "bookkeeping_transactions_per_call": bookkeeping["transactions"] / n,
            "ingest_ms": {k: 1000 * v for k, v in common.summary(walls).items() if k != "n"}}


# -- the pipeline --------------------------------------------------------------------------------
@dataclass
class Scratch:
    pipe: object  # testbed.pipeline.Pipeline
    prefix: str
    schema: str


@contextmanager
def scratch_pipeline(st, storage_format: str, log_path: Path):
    """A real worker (not started) on scratch topics, buckets and schema, as the `pipeline` test
    fixture builds it (``testbed.pipeline.scratch_pipeline``); the buckets and schema dropped after."""
    from storage.catalog.migrate import upgrade
    from testbed.pipeline import scratch_pipeline as pipeline

    prefix = common.unique(f"bench-{storage_format}")
    storage = common.storage_settings(st, prefix)
    schema, url = common.pg_schema(st, prefix)
    try:
        upgrade(url)
        with pipeline(st.kafka.address, storage, url, log_path, prefix=prefix, partitions=PARTITIONS,
                      inline_max_bytes=INLINE_MAX, env={"CALLVAULT_INGEST_STORAGE_FORMAT": storage_format,
                                                        "CALLVAULT_INGEST_PROCESSES": str(processes_for(storage_format))}
                      ) as pipe:
            pipe.env.pop("CALLVAULT_INGEST_CONCURRENCY", None)  # the product default
            yield Scratch(pipe, prefix, schema)
    finally:
        common.drop_pg_schema(st, schema)
        common.delete_buckets(storage, [storage.recordings_bucket, storage.landing_bucket, storage.exports_bucket])


def build_messages(pipe, audio: bytes, count: int, tag: str) -> list[tuple[bytes, bytes, str]]:
    """(key, value, recording id) per call: distinct recording ids and caller numbers."""
    from ingest.producer import Call, Producer

    producer = Producer(pipe.kafka, pipe.storage, inline_max_bytes=INLINE_MAX, seal_keys=pipe.seal_keys)
    started = datetime.now(timezone.utc) - timedelta(minutes=2)
    out = []
    for i in range(count):
        rid = f"bench-{tag}-{i:05d}-{uuid.uuid4().hex[:8]}"
        msg = producer.message_for(Call(audio=audio, tenant="acme", agent_id=f"agent-{i % 20}",
                                        caller_number=f"+336{10_000_000 + next(_NUMBERS):08d}",
                                        started_at=started, recording_id=rid, team_id="team-1",
                                        audio_format="wav"))
        assert msg.audio.inline is not None, "expected inline audio"
        out.append((rid.encode(), msg.to_bytes(), rid))
    return out


async def _produce_and_observe(pipe, messages, *, interval: float | None, timeout: float,
                               one_at_a_time: bool = False, send=None, paired=None) -> dict:
    """Send messages (all at once, one per ``interval`` s, or each once the previous one is
    stored); collect their stored events. ``send``: an async callable that produces the calls
    itself (another client or listener, sealed messages) and returns {recording id: produce
    timestamp}; then only the recording ids of ``messages`` are read."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    kafka = pipe.kafka
    wanted = {rid for _k, _v, rid in messages}
    consumer = AIOKafkaConsumer(kafka.events_topic, kafka.dlq_topic, bootstrap_servers=kafka.bootstrap_servers,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                fetch_max_bytes=64 * 1024 * 1024)
    # The same producer configuration as ingest.producer.Producer.
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all", enable_idempotence=True,
                                max_request_size=10 * 1024 * 1024, linger_ms=5)
    await consumer.start()
    await producer.start()
    produced: dict[str, float] = {}
    paired_s: list[float] = []
    events: dict[str, tuple[str, float]] = {}
    dead: list[dict] = []

    async def produce() -> None:
        if send is not None:
            produced.update(await send())
            return
        pending = []
        for key, value, rid in messages:
            pending.append((rid, await producer.send(kafka.recordings_topic, value, key=key)))
            if interval:
                await asyncio.sleep(interval)
            while one_at_a_time and rid not in events and not dead:
                await asyncio.sleep(0.005)
            if paired is not None:  # the baseline's turn, between two calls: nothing else in flight
                paired_s.append(await asyncio.to_thread(paired))
        for rid, fut in pending:
            produced[rid] = (await fut).timestamp / 1000.0

    try:
        task = asyncio.create_task(produce())
        deadline = time.monotonic() + timeout
        while len(events) + len(dead) < len(wanted):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(events)}/{len(wanted)} events after {timeout:.0f}s; worker log:\n"
                                   f"{pipe.worker_log()}")
            if pipe.process is not None and pipe.process.poll() is not None:
                raise RuntimeError(f"worker exited ({pipe.process.returncode}):\n{pipe.worker_log()}")
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for r in records:
                    if r.topic == kafka.dlq_topic:
                        key = (r.key or b"").decode()
                        if key in wanted:
                            dead.append({"key": key, "headers": {k: v.decode() for k, v in r.headers}})
                        continue
                    ev = json.loads(r.value)
                    if ev.get("external_id") in wanted:
                        events[ev["external_id"]] = (ev["type"], r.timestamp / 1000.0)
        await task
    finally:
        await producer.stop()
        await consumer.stop()
    return {"produced": produced, "events": events, "dead": dead, "paired_s": paired_s}


def measure(scratch: Scratch, messages, *, interval: float | None, timeout: float,
            one_at_a_time: bool = False, send=None, paired=None) -> dict:
    pipe = scratch.pipe
    pid = pipe.process.pid
    (own0, kids0), watch = common.tree_cpu_seconds(pid), common.CpuWatch()
    t0 = time.perf_counter()
    obs = asyncio.run(_produce_and_observe(pipe, messages, interval=interval, timeout=timeout,
                                           one_at_a_time=one_at_a_time, send=send, paired=paired))
    wall = time.perf_counter() - t0
    (own1, kids1), load = common.tree_cpu_seconds(pid), watch.stop()
    cpu0, cpu1 = own0 + kids0, own1 + kids1
    produced, events, dead = obs["produced"], obs["events"], obs["dead"]
    if dead:
        raise RuntimeError(f"{len(dead)} calls dead-lettered, first: {dead[0]['headers']}")
    outcomes = {}
    for kind, _ts in events.values():
        outcomes[kind] = outcomes.get(kind, 0) + 1
    if outcomes != {"stored": len(messages)}:
        raise RuntimeError(f"unexpected outcomes {outcomes}")
    lat = [events[rid][1] - produced[rid] for rid in produced]
    first, last = min(produced.values()), max(ts for _k, ts in events.values())
    n = len(messages)
    return {
        "n": n, "interval_s": interval,
        "span_s": last - first, "calls_per_s": n / (last - first),
        "produce_s": max(produced.values()) - first,
        "latency_ms": {k: 1000 * v for k, v in common.summary(lat).items() if k != "n"},
        "worker_cpu_s_per_call": (cpu1 - cpu0) / n,
        "worker_python_cpu_s_per_call": (own1 - own0) / n,
        "worker_ffmpeg_cpu_s_per_call": (kids1 - kids0) / n,
        "host_cpu_busy_pct": load["host_busy_pct"],
        "foreign_cores": load["foreign_cores"], "foreign_top": load["foreign_top"],
        "worker_cores": (cpu1 - cpu0) / (last - first), "servers_cores": load["servers_cores"],
        "bench_process_cores": load["bench_process_cores"],
        "bench_wall_s": wall,
        "latencies_ms": [round(1000 * x, 1) for x in lat],
        **({"paired_ffmpeg_ms": {k: 1000 * v for k, v in common.summary(obs["paired_s"]).items() if k != "n"},
            "paired_ffmpeg_walls_ms": [round(1000 * x, 1) for x in obs["paired_s"]]} if obs["paired_s"] else {}),
    }


def isolated_paired(scratch: Scratch, fmt: str, audio: bytes, low_n: int, wav: Path | None, tag: str) -> dict:
    """Each call sent once the previous one is stored, and (encoding formats) ffmpeg alone encoding
    the same call in between: the latency of one call and its floor, alternately."""
    pipe = scratch.pipe
    msgs = build_messages(pipe, audio, low_n, f"{fmt}-{tag}")
    gate = common.wait_quiet()
    paired = paired_ffmpeg(wav, fmt, wav.parent) if wav else None
    return {**measure(scratch, msgs, interval=None, timeout=max(120, 10 * low_n), one_at_a_time=True,
                      paired=paired), "quiet_gate": gate}


def run_latency(low_n: int, modes: list[str]) -> dict:
    """``--latency-only``: the isolated run alone, paired with ffmpeg alone (issue 20's Opus floor)."""
    st = common.stack()
    results: dict = {"benchmark": "ingest-latency", "date": common.now_iso(), "n": low_n, "modes": {}}
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        wav = make_call_wav(Path(tmp))
        audio = wav.read_bytes()
        common.OUT.mkdir(parents=True, exist_ok=True)
        for fmt in modes:
            with scratch_pipeline(st, fmt, common.OUT / f"ingest-{fmt}-latency-worker.log") as scratch:
                scratch.pipe.start_worker()
                measure(scratch, build_messages(scratch.pipe, audio, 2, f"{fmt}-lwarm"), interval=None, timeout=240)
                x = common.least_contended(lambda: isolated_paired(scratch, fmt, audio, low_n, wav, "liso"), tries=2)
                results["modes"][fmt] = {"isolated": x}
                common.say(f"ingest[{fmt}] isolated: p50 {x['latency_ms']['median']:.0f} ms, p99 "
                           f"{x['latency_ms']['p99']:.0f} ms" + (
                               f"; ffmpeg alone between them p50 {x['paired_ffmpeg_ms']['median']:.0f} ms, p99 "
                               f"{x['paired_ffmpeg_ms']['p99']:.0f} ms" if "paired_ffmpeg_ms" in x else ""))
    return results


def run_ab(before_dir: Path, n: int, rounds: int) -> dict:
    """``--ab-before DIR``: pass-through backlogs alternating the worker's code, A (DIR: a checkout of
    the code before a change) and B (this tree), in the order A B B A per round, each backlog right
    after a 1-thread raw floor of its own: on a shared host, the before/after pair under the same
    load drift. The bench process and the servers are the same; only the worker's code differs."""
    st = common.stack()
    out: dict = {"benchmark": "ingest-ab", "date": common.now_iso(), "n": n, "before_dir": str(before_dir),
                 "runs": []}
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        audio = make_call_wav(Path(tmp)).read_bytes()
        common.OUT.mkdir(parents=True, exist_ok=True)
        for code in ["before", "after", "after", "before"] * rounds:
            floor = raw_floor(st, audio, n, 1)
            with scratch_pipeline(st, "passthrough", common.OUT / f"ingest-ab-{code}-worker.log") as scratch:
                pipe = scratch.pipe
                cwd = before_dir if code == "before" else common.ROOT
                with pipe.log_path.open("ab") as log:
                    pipe.process = subprocess.Popen([sys.executable, "-m", "callvault.cli", "worker", "-l", "info"],
                                                    env=pipe.env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                                    stdin=subprocess.DEVNULL, start_new_session=True)
                measure(scratch, build_messages(pipe, audio, 2, "abwarm"), interval=None, timeout=240)
                x = measure(scratch, build_messages(pipe, audio, n, "ab"), interval=None, timeout=max(300, 10 * n))
                iso = measure(scratch, build_messages(pipe, audio, 20, "abiso"), interval=None, timeout=300,
                              one_at_a_time=True)
            x.pop("latencies_ms", None)
            x["isolated_latency_ms"], x["isolated_foreign_cores"] = iso["latency_ms"], iso["foreign_cores"]
            out["runs"].append({"code": code, "floor_calls_per_s": floor["calls_per_s"],
                                "floor_foreign_cores": floor["foreign_cores"], **x,
                                "ratio": x["calls_per_s"] / floor["calls_per_s"]})
            common.say(f"  {code}: {x['calls_per_s']:.1f} calls/s, floor {floor['calls_per_s']:.1f}, ratio "
                       f"{x['calls_per_s'] / floor['calls_per_s']:.2f}, worker {x['worker_cores']:.2f} cores, "
                       f"foreign {x['foreign_cores']:.2f}; isolated p50 {iso['latency_ms']['median']:.0f} ms "
                       f"p99 {iso['latency_ms']['p99']:.0f} ms")
    for code in ("before", "after"):
        runs = [r for r in out["runs"] if r["code"] == code]
        out[code] = {"calls_per_s": sum(r["calls_per_s"] for r in runs) / len(runs),
                     "ratio": sum(r["ratio"] for r in runs) / len(runs),
                     "isolated_p50_ms": sum(r["isolated_latency_ms"]["median"] for r in runs) / len(runs),
                     "isolated_p99_ms": sum(r["isolated_latency_ms"]["p99"] for r in runs) / len(runs)}
    return out


def run_worker_mode(st, fmt: str, audio: bytes, n: int, low_n: int, interval: float, out_dir: Path,
                    wav: Path | None = None) -> dict:
    import sqlalchemy as sa

    from storage.catalog import tables as t

    log_path = out_dir / f"ingest-{fmt}-worker.log"
    with scratch_pipeline(st, fmt, log_path) as scratch:
        pipe = scratch.pipe
        common.say(f"ingest[{fmt}]: starting worker, warm-up")
        pipe.start_worker()
        t0 = time.perf_counter()
        from testbed.pipeline import wait_for_members

        wait_for_members(pipe, processes_for(fmt))  # no rebalance left to happen during a measurement
        warm = build_messages(pipe, audio, 2, f"{fmt}-warm")
        measure(scratch, warm, interval=None, timeout=240)
        startup = time.perf_counter() - t0
        pushed = [2]
        common.say(f"ingest[{fmt}]: backlog of {n}")

        def backlog_run() -> dict:
            msgs = build_messages(pipe, audio, n, f"{fmt}-backlog")
            gate = common.wait_quiet()
            pushed[0] += n
            return {**measure(scratch, msgs, interval=None, timeout=max(300, 10 * n)), "quiet_gate": gate}

        backlog = common.least_contended(backlog_run, tries=3)
        common.say(f"  {backlog['calls_per_s']:.2f} calls/s, p50 {backlog['latency_ms']['median']:.0f} ms, "
                   f"p99 {backlog['latency_ms']['p99']:.0f} ms, worker CPU {backlog['worker_cpu_s_per_call']:.3f}"
                   f" s/call, host busy {backlog['host_cpu_busy_pct']:.0f}% (worker {backlog['worker_cores']:.2f}"
                   f" cores, servers {backlog['servers_cores']}, bench {backlog['bench_process_cores']:.2f}, "
                   f"foreign {backlog['foreign_cores']:.2f})")
        common.say(f"ingest[{fmt}]: low rate, {low_n} calls one per {interval}s")

        def low_run() -> dict:
            msgs = build_messages(pipe, audio, low_n, f"{fmt}-low")
            gate = common.wait_quiet()
            pushed[0] += low_n
            return {**measure(scratch, msgs, interval=interval, timeout=max(120, 10 * low_n)), "quiet_gate": gate}

        low = common.least_contended(low_run, tries=2)
        common.say(f"  p50 {low['latency_ms']['median']:.0f} ms, p99 {low['latency_ms']['p99']:.0f} ms")
        common.say(f"ingest[{fmt}]: isolated, {low_n} calls, each sent once the previous one is stored")

        def isolated_run() -> dict:
            pushed[0] += low_n
            return isolated_paired(scratch, fmt, audio, low_n, wav, "iso")

        isolated = common.least_contended(isolated_run, tries=2)
        common.say(f"  p50 {isolated['latency_ms']['median']:.0f} ms, p99 {isolated['latency_ms']['p99']:.0f} ms")
        with pipe.engine.connect() as conn:
            copies = conn.execute(sa.select(sa.func.count(), sa.func.avg(t.copies.c.size_bytes))
                                  .select_from(t.copies)).one()
            recordings = conn.execute(sa.select(sa.func.count()).select_from(t.recordings)).scalar()
        total = pushed[0]
        assert copies[0] == total and recordings == total, (copies, recordings, total)
        objects = sum(1 for _ in pipe.store.list(pipe.storage.recordings_bucket))
        assert objects == total, (objects, total)
        from ingest.settings import IngestSettings

        in_flight = getattr(IngestSettings(storage_format=fmt, concurrency=None), "in_flight", 4)  # main's: 4
        return {"format": fmt, "worker_processes": processes_for(fmt), "worker_in_flight": in_flight,
                "worker_startup_s": startup, "backlog": backlog,
                "low_rate": low,
                "isolated": isolated,
                "catalog": {"recordings": recordings, "copies": copies[0], "objects": objects,
                            "avg_stored_bytes": float(copies[1])},
                "worker_log": str(log_path.relative_to(common.ROOT))}


def _mean_baseline(runs: list[dict]) -> dict:
    """A baseline measured before and after the worker: the mean rate, and each run kept."""
    out = dict(runs[0])
    out["calls_per_s"] = sum(r["calls_per_s"] for r in runs) / len(runs)
    if "calls_per_s_per_core" in out:
        out["calls_per_s_per_core"] = out["calls_per_s"] / out["parallel"]
    if "cpu_s_per_call" in out:
        out["cpu_s_per_call"] = sum(r["cpu_s_per_call"] for r in runs) / len(runs)
    out["runs"] = [{k: r[k] for k in ("calls_per_s", "wall_s", "foreign_cores", "quiet_gate", "cpu_s_per_call")
                    if k in r} for r in runs]
    out["spread_pct"] = 100.0 * (max(r["calls_per_s"] for r in runs) - min(r["calls_per_s"] for r in runs)) / out[
        "calls_per_s"]
    return out


def run(n: int, quick: bool, modes: list[str], low_n: int | None = None) -> dict:
    st = common.stack()
    cores = os.cpu_count() or 1
    low_n, interval = low_n or (10 if quick else 20), 0.5
    single_n = max(20, low_n)
    results: dict = {"benchmark": "ingest", "date": common.now_iso(), "quick": quick, "n": n, "cores": cores,
                     "partitions": PARTITIONS, "worker_concurrency": "by format", "modes": {}, "baselines": {}}
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        tmpdir = Path(tmp)
        wav = make_call_wav(tmpdir)
        audio = wav.read_bytes()
        results["audio"] = {"bytes": len(audio), "seconds": 60, "format": "WAV pcm_mulaw 8 kHz mono",
                            "content": "flite speech looped" if (tmpdir / "speech.wav").exists() else "440 Hz sine",
                            "inline": len(audio) <= INLINE_MAX, "inline_max_bytes": INLINE_MAX}
        b = results["baselines"]
        floors: dict[int, list[dict]] = {1: [], 4: []}

        def floor_runs(when: str) -> None:
            for threads in (1, 4):
                common.say(f"baseline ({when}): raw I/O floor, {n} x put_object + INSERT, {threads} thread(s)")
                x = common.least_contended(lambda: raw_floor(st, audio, n, threads))
                floors[threads].append(x)
                common.say(f"  {x['calls_per_s']:.1f} calls/s (foreign load {x['foreign_cores']:.2f} cores)")

        floor_runs("before")
        for fmt in modes:
            if fmt == "passthrough":  # no encoder: its baseline is the raw I/O floor alone
                common.OUT.mkdir(parents=True, exist_ok=True)
                results["modes"][fmt] = run_worker_mode(st, fmt, audio, n, low_n, interval, common.OUT)
                continue
            runs = []
            for when in ("before", "after"):
                if when == "after":
                    common.OUT.mkdir(parents=True, exist_ok=True)
                    mode = run_worker_mode(st, fmt, audio, n, low_n, interval, common.OUT, wav)
                common.say(f"baseline ({when} worker): ffmpeg alone -> {fmt}, {n} x, {cores} parallel")
                x = common.least_contended(lambda: ffmpeg_alone(wav, n, fmt, cores, tmpdir))
                runs.append(x)
                common.say(f"  {x['calls_per_s']:.2f} calls/s (foreign load {x['foreign_cores']:.2f} cores)")
            b[f"ffmpeg_{fmt}"] = _mean_baseline(runs)
            results["modes"][fmt] = mode
            common.say(f"baseline: ffmpeg alone -> {fmt}, one call at a time, {single_n} x")
            single = common.least_contended(lambda: ffmpeg_single(wav, single_n, fmt, tmpdir), tries=2)
            b[f"ffmpeg_{fmt}_single"] = single
            common.say(f"  p50 {single['wall_ms']['median']:.0f} ms, p99 {single['wall_ms']['p99']:.0f} ms")
            mode["overhead_ms"] = {run_name: {q: mode[run_name]["latency_ms"][q] - single["wall_ms"][q]
                                              for q in ("median", "p99")}
                                   for run_name in ("low_rate", "isolated")}
        floor_runs("after")
        for threads in (1, 4):
            b[f"raw_floor_{threads}"] = _mean_baseline(floors[threads])
        for fmt, mode in results["modes"].items():
            rate = mode["backlog"]["calls_per_s"]
            mode["per_core_calls_per_s"] = rate / cores
            mode["ratios"] = {
                "vs_raw_floor_1": rate / b["raw_floor_1"]["calls_per_s"],
                "vs_raw_floor_4": rate / b["raw_floor_4"]["calls_per_s"],
            }
            if f"ffmpeg_{fmt}" in b:
                mode["ratios"][f"vs_ffmpeg_{fmt}"] = rate / b[f"ffmpeg_{fmt}"]["calls_per_s"]
            if fmt != "opus" and "ffmpeg_opus" in b:
                mode["ratios"]["vs_ffmpeg_opus"] = rate / b["ffmpeg_opus"]["calls_per_s"]
            common.say(f"{fmt} ratios: " + ", ".join(f"{k} {v:.2f}" for k, v in mode["ratios"].items()))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="N=40, 10 low-rate and 10 isolated calls")
    parser.add_argument("--n", type=int, help="calls per run (default 200, --quick 40)")
    parser.add_argument("--modes", default="passthrough,opus,flac",
                        help="storage formats to run (passthrough,opus,flac)")
    parser.add_argument("--low-n", type=int, help="calls of the low-rate and isolated runs (default 20, --quick 10)")
    parser.add_argument("--ab-before", metavar="DIR", help=(
        "only pass-through backlogs, the worker's code alternating between DIR (before) and this tree (after)"))
    parser.add_argument("--rounds", type=int, default=1, help="--ab-before: rounds of A B B A")
    parser.add_argument("--latency-only", nargs="?", const="ingest-latency", metavar="NAME",
                        help="only the isolated run, paired with ffmpeg alone; written to bench/out/NAME.json")
    parser.add_argument("--round-trips", action="store_true",
                        help="only count the catalog statements and transactions of a call (in process)")
    args = parser.parse_args(argv)
    n = args.n or (40 if args.quick else 200)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if args.ab_before:
        common.say(f"wrote {common.write_json('ingest-ab', run_ab(Path(args.ab_before), n, args.rounds))}")
        return 0
    if args.latency_only:
        results = run_latency(args.low_n or 20, modes)
        common.say(f"wrote {common.write_json(args.latency_only, results)}")
        return 0
    if args.round_trips:
        with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
            audio = make_call_wav(Path(tmp)).read_bytes()
            common.OUT.mkdir(parents=True, exist_ok=True)
            found = {fmt: catalog_round_trips(common.stack(), fmt, audio, min(n, 20)) for fmt in modes}
            for fmt in set(modes) & set(ENCODER_ARGS):  # the in-process ingest() against ffmpeg alone
                found[fmt]["ffmpeg_alone"] = ffmpeg_single(Path(tmp) / "call.wav", min(n, 20), fmt, Path(tmp))
        common.say(json.dumps(found, indent=1))
        path = common.write_json("ingest-round-trips", {"benchmark": "ingest-round-trips",
                                                        "date": common.now_iso(), "modes": found})
        common.say(f"wrote {path}")
        return 0
    results = run(n, args.quick, modes, args.low_n)
    path = common.write_json("ingest", results)
    common.say(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
