"""Ingest in transit: SASL_SSL + sealed messages vs PLAINTEXT + plain v1 messages (issue 15).

The same calls, through the same real ``callvault worker`` on the same scratch topics, buckets
and schema (``bench.ingest.scratch_pipeline``), in two configurations measured in one run:

- **A, baseline** (what callvault did before issue 15): producer and worker on the PLAINTEXT
  listener; each call is ``Producer.message_for(call).to_bytes()`` sent with ``send_raw`` to the
  shared recordings topic (a plain v1 message, number and inline audio readable on the topic);
- **B, secured**: producer and worker on the SASL_SSL listener (SCRAM-SHA-512, TLS with the
  stack's CA); the producer is a telephony principal granted by ``grant_telephony`` and sends,
  with ``per_tenant_topics``, to its tenant's topic only; ``Producer.push_many`` seals every
  message with HPKE to the tenant's ingest key (``catalog_seal_keys``); the worker takes the
  tenant from the topic and opens the seal.

Call mix (identical for A and B): one-minute 8 kHz mono calls with two redaction spans; 9 in 10
are µ-law WAV (~480 KB, inline); 1 in 10 is the same minute in 16-bit PCM (~960 KB, above the
512 KiB inline limit), so it goes by claim check through the landing bucket. Note that
``message_for`` encrypts landing objects in A as well (it always does now): the A/B difference
covers transport security and sealing, and the landing encryption is priced by the micro-measure.

Rate: calls/s = N ÷ (last ``stored`` event's Kafka timestamp − the moment the producer, already
connected, starts producing). Production (message building, claim-check uploads, sealing) is
inside the window. Runs alternate A B B A (``--rounds 2``); the worker restarts only when the
configuration changes, and each configuration is warmed up first. Stored format: passthrough by
default (no transcoding), so the worker's own work is small and a transit cost shows; with opus
~0.5 s of ffmpeg CPU per call would hide it.

Micro-measure (no I/O): HPKE seal and open of the largest inline message (512 KiB of audio) and
framed AES-GCM encrypt/decrypt of a 5 MB landing object, per op, each against one raw AES-GCM
pass over the same bytes.

    .venv/bin/python -m bench.transit [--calls 200] [--rounds 2] [--format passthrough] [--append] [--render]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common  # noqa: E402
from bench import ingest as harness  # noqa: E402

HEADING = "## Ingest in transit: SASL_SSL + sealed vs plaintext (issue 15)"
TENANT = "acme"
CLAIM_EVERY = 10  # one call in ten goes by claim check
REDACTIONS = ((12_000, 19_500), (41_000, 47_250))
LANDING_BYTES = 5 * common.MB
FRAME = 64 * 1024  # storage.crypto.FRAME_SIZE
CONFIGS = {"A": "PLAINTEXT, plain v1, shared topic", "B": "SASL_SSL, HPKE-sealed, tenant topic"}


# -- the calls --------------------------------------------------------------------------------
def make_audio(tmpdir: Path) -> tuple[bytes, bytes]:
    """(inline µ-law minute, claim-check 16-bit PCM minute of the same speech)."""
    ulaw = harness.make_call_wav(tmpdir)
    pcm = tmpdir / "call-s16.wav"
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", str(ulaw),
                    "-c:a", "pcm_s16le", "-map_metadata", "-1", "-fflags", "+bitexact", str(pcm)],
                   check=True, capture_output=True)
    return ulaw.read_bytes(), pcm.read_bytes()


def make_calls(inline: bytes, claim: bytes, n: int, tag: str):
    from ingest.producer import Call

    started = datetime.now(timezone.utc) - timedelta(minutes=2)
    return [Call(audio=claim if i % CLAIM_EVERY == CLAIM_EVERY - 1 else inline, tenant=TENANT,
                 agent_id=f"agent-{i % 20}", caller_number=f"+336{10_000_000 + next(harness._NUMBERS):08d}",
                 started_at=started, recording_id=f"bench-{tag}-{i:05d}-{uuid.uuid4().hex[:8]}", team_id="team-1",
                 redactions=REDACTIONS, audio_format="wav") for i in range(n)]


# -- the two producers ------------------------------------------------------------------------
def plain_sender(pipe, calls):
    """A: plain v1 messages with ``send_raw`` on PLAINTEXT, pipelined as ``push_many`` is."""
    from ingest.producer import Producer

    async def send() -> dict[str, float]:
        async with Producer(pipe.kafka, pipe.storage, inline_max_bytes=harness.INLINE_MAX,
                            store=pipe.store) as producer:
            t0, pending = time.time(), []
            for call in calls:
                msg = producer.message_for(call)
                pending.append(asyncio.ensure_future(producer.send_raw(msg.recording_id.encode(), msg.to_bytes())))
                await asyncio.sleep(0)  # let the send start, as push_many's `await send()` does
            await asyncio.gather(*pending)
        return {c.recording_id: t0 for c in calls}
    return send


def sealed_sender(pipe, telephony, calls):
    """B: ``push_many`` as the tenant's telephony principal over SASL_SSL (seals by default)."""
    from ingest.producer import Producer

    async def send() -> dict[str, float]:
        async with Producer(telephony, pipe.storage, inline_max_bytes=harness.INLINE_MAX, store=pipe.store,
                            seal_keys=pipe.seal_keys) as producer:
            producer.seal_key(TENANT)  # a long-lived producer has its tenant's key cached
            t0 = time.time()
            await producer.push_many(calls)
        return {c.recording_id: t0 for c in calls}
    return send


def sasl_settings(env: dict[str, str], **overrides):
    """KafkaSettings for the SASL_SSL listener from `callvault stack env` variables."""
    from pydantic import SecretStr

    from ingest.settings import KafkaSettings

    return KafkaSettings(bootstrap_servers=env["CALLVAULT_KAFKA_BOOTSTRAP_SERVERS"], security_protocol="SASL_SSL",
                         sasl_mechanism=env["CALLVAULT_KAFKA_SASL_MECHANISM"],
                         sasl_username=env["CALLVAULT_KAFKA_SASL_USERNAME"],
                         sasl_password=SecretStr(env["CALLVAULT_KAFKA_SASL_PASSWORD"]),
                         ssl_cafile=env["CALLVAULT_KAFKA_SSL_CAFILE"], **overrides)


# -- the end-to-end runs ----------------------------------------------------------------------
def pipeline_runs(st, audio: tuple[bytes, bytes], n: int, rounds: int, fmt: str, out_dir: Path) -> dict:
    from ingest.kafka_admin import KafkaAdmin, grant_telephony

    order = [c for r in range(rounds) for c in (("A", "B") if r % 2 == 0 else ("B", "A"))]
    runs: dict[str, list[dict]] = {"A": [], "B": []}
    pushed = {"A": 0, "B": 0}
    with harness.scratch_pipeline(st, fmt, out_dir / "transit-worker.log") as scratch:
        pipe = scratch.pipe
        sasl_env = st.kafka_client_env()
        tenant_prefix = f"{scratch.prefix}.tenant."  # under the scratch prefix: dropped with it
        admin = sasl_settings(sasl_env, tenant_topic_prefix=tenant_prefix, partitions=harness.PARTITIONS)
        user = f"telephony-{TENANT}-{uuid.uuid4().hex[:8]}"
        grant = asyncio.run(grant_telephony(admin, tenant=TENANT, user=user, partitions=harness.PARTITIONS))
        from pydantic import SecretStr

        telephony = admin.model_copy(update={"sasl_username": grant.user, "sasl_password": SecretStr(grant.password),
                                             "per_tenant_topics": True})
        # Both workers look for tenant topics under the scratch prefix only (never other people's).
        base = {**pipe.env, "CALLVAULT_KAFKA_TENANT_TOPIC_PREFIX": tenant_prefix}
        envs = {"A": base, "B": {**base, **sasl_env, "CALLVAULT_KAFKA_TENANT_TOPICS_REFRESH_SECONDS": "1"}}

        def sender(cfg: str, calls):
            return plain_sender(pipe, calls) if cfg == "A" else sealed_sender(pipe, telephony, calls)

        def one(cfg: str, count: int, tag: str, timeout: float) -> dict:
            calls = make_calls(*audio, count, tag)
            ids = [(None, None, c.recording_id) for c in calls]
            ru0 = resource.getrusage(resource.RUSAGE_SELF)
            out = harness.measure(scratch, ids, interval=None, timeout=timeout, send=sender(cfg, calls))
            ru1 = resource.getrusage(resource.RUSAGE_SELF)
            pushed[cfg] += count
            out["bench_cpu_s_per_call"] = (ru1.ru_utime - ru0.ru_utime + ru1.ru_stime - ru0.ru_stime) / count
            out["servers_cpu_s_per_call"] = sum(out["servers_cores"].values()) * out["bench_wall_s"] / count
            out["claim_checks"] = sum(len(c.audio) > harness.INLINE_MAX for c in calls)
            return out

        try:
            current = None
            for i, cfg in enumerate(order):
                if cfg != current:
                    pipe.stop_worker()
                    pipe.env = envs[cfg]
                    common.say(f"transit[{cfg}]: worker on {CONFIGS[cfg]}, warm-up")
                    t0 = time.perf_counter()
                    pipe.start_worker()
                    one(cfg, CLAIM_EVERY, f"{cfg}-warm{i}", 240)
                    common.say(f"  worker ready and warm in {time.perf_counter() - t0:.1f}s")
                    current = cfg

                def backlog(cfg=cfg, i=i) -> dict:
                    gate = common.wait_quiet(max_wait=30)
                    return {**one(cfg, n, f"{cfg}-run{i}", max(300, 10 * n)), "quiet_gate": gate}

                r = common.least_contended(backlog, tries=2)
                r.pop("latencies_ms", None)  # every call's produce time is the window's start: not latencies
                r.pop("latency_ms", None)
                runs[cfg].append(r)
                common.say(f"  {cfg} run {len(runs[cfg])}: {r['calls_per_s']:.2f} calls/s ({n} calls, "
                           f"{r['claim_checks']} by claim check), worker CPU {r['worker_cpu_s_per_call'] * 1000:.1f}"
                           f" ms/call, bench process {r['bench_cpu_s_per_call'] * 1000:.1f} ms/call, "
                           f"foreign {r['foreign_cores']:.2f} cores")
            checks = verify(pipe, grant.topic, pushed)
        finally:
            async def drop_user() -> None:
                async with KafkaAdmin(admin) as kafka:
                    await kafka.delete_scram_user(user)
            asyncio.run(drop_user())
    return {"order": order, "runs": runs, "pushed": pushed, "checks": checks}


def verify(pipe, tenant_topic: str, pushed: dict[str, int]) -> dict:
    """Every call stored once; A's messages on the shared topic, B's on the tenant topic, and the
    landing bucket empty again (every claim-check object deleted after its call was stored)."""
    import sqlalchemy as sa
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from storage.catalog import tables as t

    async def ends() -> dict[str, int]:
        consumer = AIOKafkaConsumer(bootstrap_servers=pipe.kafka.bootstrap_servers)
        await consumer.start()
        try:
            out = {}
            for topic in (pipe.kafka.recordings_topic, tenant_topic):
                parts = [TopicPartition(topic, p) for p in range(harness.PARTITIONS)]
                out[topic] = sum((await consumer.end_offsets(parts)).values())
            return out
        finally:
            await consumer.stop()

    offsets = asyncio.run(ends())
    with pipe.engine.connect() as conn:
        recordings = conn.execute(sa.select(sa.func.count()).select_from(t.recordings)).scalar()
    landing_left = sum(1 for _ in pipe.store.list(pipe.storage.landing_bucket))
    checks = {"recordings": recordings, "shared_topic_messages": offsets[pipe.kafka.recordings_topic],
              "tenant_topic_messages": offsets[tenant_topic], "landing_objects_left": landing_left}
    expected = {"recordings": pushed["A"] + pushed["B"], "shared_topic_messages": pushed["A"],
                "tenant_topic_messages": pushed["B"], "landing_objects_left": 0}
    assert checks == expected, (checks, expected)
    return checks


# -- what sealing costs alone -----------------------------------------------------------------
def _per_op_ms(fn, reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * common.median(times)


def seal_costs(inline_audio: bytes, reps: int) -> dict:
    """Per-op medians: HPKE seal/open of the largest inline message, landing encrypt/decrypt of a
    5 MB object, each against one raw AES-256-GCM encrypt/decrypt of the same bytes."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from ingest import sealing
    from ingest.schema import build_message
    from storage.transit import PublicIngestKey

    private = X25519PrivateKey.generate()
    public = PublicIngestKey(TENANT, uuid.uuid4(), private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw),
                             datetime.now(timezone.utc) + timedelta(days=1))
    audio = (inline_audio * (harness.INLINE_MAX // len(inline_audio) + 1))[:harness.INLINE_MAX]
    message = build_message(recording_id="bench-seal", tenant=TENANT, started_at=datetime.now(timezone.utc),
                            caller_number="+33612345678", agent_id="a1", audio=audio, audio_format="wav",
                            redactions=REDACTIONS).to_bytes()
    sealed = sealing.seal(message, public)
    assert sealing.open_envelope(sealing.envelope(sealed), private) == message
    landing = os.urandom(LANDING_BYTES)
    key = f"{TENANT}/{uuid.uuid4()}"
    content_key, chunks = sealing.encrypt_landing([landing], tenant=TENANT, key=key, length=len(landing))
    blob = b"".join(chunks)
    assert sealing.decrypt_landing(blob, content_key=content_key, tenant=TENANT, key=key) == landing
    aes, nonce = AESGCM(AESGCM.generate_key(bit_length=256)), os.urandom(12)  # a benchmark: nonce reuse is moot
    raw_msg, raw_obj = aes.encrypt(nonce, message, None), aes.encrypt(nonce, landing, None)
    info, hpke_ct = b"callvault/bench", sealing.SUITE.encrypt(message, private.public_key(), info=b"callvault/bench")
    frames = range(0, len(landing), FRAME)
    framed = [aes.encrypt(nonce, landing[i:i + FRAME], key.encode()) for i in frames]
    ms = {
        "seal": _per_op_ms(lambda: sealing.seal(message, public), reps),
        "open": _per_op_ms(lambda: sealing.open_envelope(sealing.envelope(sealed), private), reps),
        "hpke_encrypt": _per_op_ms(lambda: sealing.SUITE.encrypt(message, private.public_key(), info=info), reps),
        "hpke_decrypt": _per_op_ms(lambda: sealing.SUITE.decrypt(hpke_ct, private, info=info), reps),
        "aes_msg_encrypt": _per_op_ms(lambda: aes.encrypt(nonce, message, None), reps),
        "aes_msg_decrypt": _per_op_ms(lambda: aes.decrypt(nonce, raw_msg, None), reps),
        "landing_encrypt": _per_op_ms(lambda: b"".join(sealing.encrypt_landing(
            [landing], tenant=TENANT, key=key, length=len(landing))[1]), reps),
        "landing_decrypt": _per_op_ms(lambda: sealing.decrypt_landing(blob, content_key=content_key, tenant=TENANT,
                                                                      key=key), reps),
        "aes_obj_encrypt": _per_op_ms(lambda: aes.encrypt(nonce, landing, None), reps),
        "aes_obj_decrypt": _per_op_ms(lambda: aes.decrypt(nonce, raw_obj, None), reps),
        "aes_frames_encrypt": _per_op_ms(lambda: [aes.encrypt(nonce, landing[i:i + FRAME], key.encode())
                                                  for i in frames], reps),
        "aes_frames_decrypt": _per_op_ms(lambda: [aes.decrypt(nonce, f, key.encode()) for f in framed], reps),
    }
    return {"reps": reps, "message_bytes": len(message), "sealed_bytes": len(sealed), "landing_bytes": len(landing),
            "landing_blob_bytes": len(blob), "ms": ms}


# -- report -----------------------------------------------------------------------------------
def _mean(xs) -> float:
    return sum(xs) / len(xs)


def summarise(results: dict) -> dict:
    runs = results["pipeline"]["runs"]
    out = {cfg: {"calls_per_s": _mean([r["calls_per_s"] for r in rs]),
                 "worker_cpu_ms": 1000 * _mean([r["worker_cpu_s_per_call"] for r in rs]),
                 "bench_cpu_ms": 1000 * _mean([r["bench_cpu_s_per_call"] for r in rs]),
                 "servers_cpu_ms": 1000 * _mean([r["servers_cpu_s_per_call"] for r in rs])}
           for cfg, rs in runs.items()}
    out["ratio"] = out["B"]["calls_per_s"] / out["A"]["calls_per_s"]
    return out


def _flag(run: dict) -> str:
    return " ⚠" if run["foreign_cores"] > 0.25 else ""


def markdown(results: dict) -> str:
    s, m, p = results["summary"], results["micro"]["ms"], results["pipeline"]
    mach, n = results["machine"], results["calls"]
    lines = [HEADING, "",
             f"Measured {results['date']} with `.venv/bin/python -m bench.transit --calls {n} --rounds "
             f"{results['rounds']}` on {mach['cpu_model']}, **{mach['cpu_cores']} cores**, {mach['ram_gib']} GiB, "
             f"{mach['os']}; Kafka {mach['kafka']}, MinIO, PostgreSQL {mach['postgresql']} on the same host "
             f"(local stack). Worker: default settings (concurrency 4), stored format {results['format']}, "
             f"{harness.PARTITIONS} partitions. Per run: {n} one-minute 8 kHz mono calls, 2 redaction spans each, "
             f"1 in {CLAIM_EVERY} by claim check ({results['audio']['claim_bytes'] / common.MB:.2f} MB 16-bit PCM, "
             f"encrypted landing object), the rest inline ({results['audio']['inline_bytes'] / common.MB:.2f} MB "
             f"µ-law). Runs in the order {' '.join(p['order'])}; rate = calls ÷ (last `stored` event − start of "
             "producing), production inside the window. All calls stored, none dead-lettered; "
             f"checked after the runs: {p['checks']['recordings']} recordings, "
             f"{p['checks']['shared_topic_messages']} on the shared topic (A), "
             f"{p['checks']['tenant_topic_messages']} on the tenant topic (B), landing bucket empty.", "",
             "| Configuration | calls/s per run | calls/s (mean) | worker CPU ms/call | bench process CPU ms/call "
             "(producer + event reader) | stack servers CPU ms/call (Kafka, MinIO, PostgreSQL) | foreign load (cores) |",
             "|---|---|---:|---:|---:|---:|---|"]
    for cfg in ("A", "B"):
        rs = p["runs"][cfg]
        rates = ", ".join(f"{r['calls_per_s']:.2f}{_flag(r)}" for r in rs)
        foreign = ", ".join(f"{r['foreign_cores']:.2f}{_flag(r)}" for r in rs)
        lines.append(f"| {cfg}: {CONFIGS[cfg]} | {rates} | **{s[cfg]['calls_per_s']:.2f}** | "
                     f"{s[cfg]['worker_cpu_ms']:.1f} | {s[cfg]['bench_cpu_ms']:.1f} | {s[cfg]['servers_cpu_ms']:.1f} | "
                     f"{foreign} |")
    lines += [f"| **B ÷ A** | | **{s['ratio']:.2f}×** | "
              f"{s['B']['worker_cpu_ms'] / s['A']['worker_cpu_ms']:.2f}× | "
              f"{s['B']['bench_cpu_ms'] / s['A']['bench_cpu_ms']:.2f}× | "
              f"{s['B']['servers_cpu_ms'] / s['A']['servers_cpu_ms']:.2f}× | |", "",
              "B ÷ A per round (" + ", ".join(
                  f"round {i + 1}: {b['calls_per_s'] / a['calls_per_s']:.2f}×{_flag(a) or _flag(b)}"
                  for i, (a, b) in enumerate(zip(p["runs"]["A"], p["runs"]["B"]))) + "). "
              "⚠: other processes used more than a quarter of a core during the run (kept: the least disturbed "
              "of its tries). CPU per call is per measured window (servers' share: their CPU over the window ÷ calls).",
              "",
              f"Sealing alone (one core, no I/O; median of {results['micro']['reps']} per op; raw = one AES-256-GCM "
              "pass over the same bytes, `cryptography`'s `AESGCM`):", "",
              "| Operation | bytes | ms per op | raw AES-GCM, ms | ratio |", "|---|---:|---:|---:|---:|"]
    mb, lb = results["micro"]["message_bytes"], results["micro"]["landing_bytes"]
    for label, size, ours, raw in [
        ("`sealing.seal`: HPKE + base64 + JSON envelope, message with 512 KiB inline audio", mb, m["seal"],
         m["aes_msg_encrypt"]),
        ("… of which HPKE alone (`SUITE.encrypt`: X25519, HKDF, AES-256-GCM)", mb, m["hpke_encrypt"],
         m["aes_msg_encrypt"]),
        ("`envelope` + `open_envelope`: JSON + base64 decode + HPKE", mb, m["open"], m["aes_msg_decrypt"]),
        ("… of which HPKE alone (`SUITE.decrypt`)", mb, m["hpke_decrypt"], m["aes_msg_decrypt"]),
        ("seal + open", mb, m["seal"] + m["open"], m["aes_msg_encrypt"] + m["aes_msg_decrypt"]),
        ("`encrypt_landing` (framed AES-GCM, 64 KiB frames), 5 MB object", lb, m["landing_encrypt"],
         m["aes_obj_encrypt"]),
        ("`decrypt_landing`", lb, m["landing_decrypt"], m["aes_obj_decrypt"]),
        ("landing encrypt + decrypt", lb, m["landing_encrypt"] + m["landing_decrypt"],
         m["aes_obj_encrypt"] + m["aes_obj_decrypt"]),
        ("… raw AES-GCM in the same 64 KiB frames, encrypt + decrypt (framing's crypto alone)", lb,
         m["aes_frames_encrypt"] + m["aes_frames_decrypt"], m["aes_obj_encrypt"] + m["aes_obj_decrypt"]),
    ]:
        lines.append(f"| {label} | {size:,} | {ours:.2f} | {raw:.2f} | {ours / raw:.1f}× |")
    mi = results["micro"]
    lines += ["", f"On the wire: the plain v1 message is {mi['message_bytes']:,} bytes (audio already base64), the "
              f"sealed envelope {mi['sealed_bytes']:,} ({mi['sealed_bytes'] / mi['message_bytes']:.2f}×: the sealed "
              f"bytes are base64-encoded again); the 5 MB landing object grows by "
              f"{mi['landing_blob_bytes'] - mi['landing_bytes']:,} bytes (header and 16-byte frame tags)."]
    return "\n".join(lines) + "\n"


def append_results(section: str) -> Path:
    """Put the section at the end of RESULTS.md, replacing an earlier one of the same heading."""
    path = common.ROOT / "bench" / "RESULTS.md"
    text = path.read_text()
    if HEADING in text:
        head, rest = text.split(HEADING, 1)
        nxt = rest.find("\n## ")
        text = head.rstrip() + "\n" + (rest[nxt:] if nxt >= 0 else "")
    path.write_text(text.rstrip() + "\n\n" + section)
    return path


def run(n: int, rounds: int, fmt: str, reps: int) -> dict:
    st = common.stack()
    results: dict = {"benchmark": "transit", "date": common.now_iso(), "calls": n, "rounds": rounds, "format": fmt,
                     "machine": common.machine(st)}
    with tempfile.TemporaryDirectory(prefix="bench-transit-") as tmp:
        inline, claim = make_audio(Path(tmp))
    assert len(inline) <= harness.INLINE_MAX < len(claim), (len(inline), len(claim))
    results["audio"] = {"inline_bytes": len(inline), "claim_bytes": len(claim)}
    common.say(f"sealing alone: {reps} reps per op")
    results["micro"] = seal_costs(inline, reps)
    common.OUT.mkdir(parents=True, exist_ok=True)
    results["pipeline"] = pipeline_runs(st, (inline, claim), n, rounds, fmt, common.OUT)
    results["summary"] = summarise(results)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=200, help="calls per run (default 200)")
    parser.add_argument("--rounds", type=int, default=2, help="A/B pairs, alternating order (default 2: A B B A)")
    parser.add_argument("--format", default="passthrough", choices=["passthrough", "opus", "flac"],
                        help="stored format of the worker (default passthrough: no transcoding)")
    parser.add_argument("--reps", type=int, default=30, help="repetitions per sealing micro-measure")
    parser.add_argument("--append", action="store_true", help="write the section into bench/RESULTS.md")
    parser.add_argument("--render", action="store_true", help="no run: render bench/out/transit.json again")
    args = parser.parse_args(argv)
    if args.render:
        results = json.loads((common.OUT / "transit.json").read_text())
    else:
        results = run(args.calls, args.rounds, args.format, args.reps)
    section = markdown(results)
    results["markdown"] = section
    common.say(f"wrote {common.write_json('transit', results)}\n\n{section}")
    if args.append:
        common.say(f"wrote {append_results(section)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
