"""The HTTP front door vs the Kafka producer (issue 18): how fast each hands over 1-minute calls.

Same run, same stack, same catalog schema and buckets, same calls (1-minute 8 kHz 16-bit mono
WAV, ~960 KB, so both go by claim check through the landing bucket):

- **A, Kafka producer** (``Producer.push``, what `callvault push` does): encrypt and upload the
  landing object, seal the message to the tenant's ingest key, send to its topic, acks=all;
- **B, HTTP push**: ``POST /v1/recordings`` to a real `callvault api` (uvicorn, one process), the
  body streamed encrypted into the landing bucket, the push recorded in the catalog, the sealed
  message sent to the tenant's topic, both audited, 202.

Rate: calls/s = N ÷ wall time from the first call to the last acknowledgement (Kafka ack for A,
202 for B), with ``--concurrency`` calls in flight for each. No worker runs: this measures the
doors, not ingest (the worker's rate is ``bench.ingest``'s).

    .venv/bin/python -m bench.front_doors [--calls 40] [--concurrency 4] [--append]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common  # noqa: E402

HEADING = "## Front doors: HTTP push vs the Kafka producer (issue 18)"


def one_minute_wav() -> bytes:
    from tests.audio_fixtures import sine_wav

    return sine_wav(60.0)


async def producer_rate(kafka, storage, engine, audio: bytes, n: int, concurrency: int) -> float:
    from ingest.producer import Call, Producer, catalog_seal_keys

    started = datetime.now(timezone.utc) - timedelta(minutes=5)
    async with Producer(kafka, storage, seal_keys=catalog_seal_keys(engine, storage, kafka=kafka)) as producer:
        await producer.push(Call(audio, "acme", "a1", None, started, recording_id="warm-k"))
        gate = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with gate:
                await producer.push(Call(audio, "acme", "a1", None, started, recording_id=f"k-{i}"))
        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        return n / (time.perf_counter() - t0)


async def http_rate(url: str, token: str, audio: bytes, n: int, concurrency: int) -> float:
    import httpx

    started = (datetime.now(timezone.utc) - timedelta(minutes=5)).isoformat()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "audio/wav", "Callvault-Agent-Id": "a1",
               "Callvault-Started-At": started}
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        async def one(rid: str) -> None:
            reply = await client.post("/v1/recordings", content=audio,
                                      headers={**headers, "Callvault-Recording-Id": rid})
            assert reply.status_code == 202, reply.text
        await one("warm-h")
        gate = asyncio.Semaphore(concurrency)

        async def gated(i: int) -> None:
            async with gate:
                await one(f"h-{i}")
        t0 = time.perf_counter()
        await asyncio.gather(*(gated(i) for i in range(n)))
        return n / (time.perf_counter() - t0)


def run(n: int, concurrency: int) -> dict:
    import secrets

    import sqlalchemy as sa
    from pydantic import SecretStr

    from access.identities import add_user
    from access.settings import AccessSettings
    from access.tokens import issue_token
    from ingest.settings import KafkaSettings
    from storage.admin import init_buckets
    from storage.catalog import tables as t
    from storage.catalog.migrate import upgrade
    from tests.integration.pipeline import service_env
    from tests.support.front_doors import ApiProcess

    st = common.stack()
    prefix = common.unique("fd")
    storage = common.storage_settings(st, prefix).model_copy(update={"drop_notify_target": None})
    init_buckets(storage, say=lambda _m: None)
    schema, url = common.pg_schema(st, prefix)
    upgrade(url)
    engine = sa.create_engine(url)
    now = datetime.now(timezone.utc)
    with engine.begin() as conn:
        conn.execute(t.tenants.insert().values(id="acme", name="Acme", created_at=now))
        add_user(conn, user_id="pbx", role="telephony", tenants=["acme"], now=now)
    kafka = KafkaSettings(bootstrap_servers=st.kafka.address, tenant_topic_prefix=f"{prefix}.tenant.")
    secret = secrets.token_urlsafe(32)
    env = {**service_env(storage, url), "CALLVAULT_KAFKA_BOOTSTRAP_SERVERS": st.kafka.address,
           "CALLVAULT_KAFKA_TENANT_TOPIC_PREFIX": kafka.tenant_topic_prefix, "CALLVAULT_ACCESS_JWT_SECRET": secret}
    api = ApiProcess(env, Path(tempfile.mkdtemp()) / "api.log")
    api.start()
    audio = one_minute_wav()
    token = issue_token("pbx", AccessSettings(jwt_secret=SecretStr(secret)))
    try:
        a = asyncio.run(producer_rate(kafka.model_copy(update={"per_tenant_topics": True}), storage, engine,
                                      audio, n, concurrency))
        b = asyncio.run(http_rate(api.url, token, audio, n, concurrency))
        a2 = asyncio.run(producer_rate(kafka.model_copy(update={"per_tenant_topics": True}), storage, engine,
                                       audio, n, concurrency))
    finally:
        api.stop()
        engine.dispose()
        common.drop_pg_schema(st, schema)
        common.delete_buckets(storage, [storage.landing_bucket, storage.recordings_bucket, storage.exports_bucket])
    return {"calls": n, "concurrency": concurrency, "audio_bytes": len(audio), "producer_calls_per_s": [a, a2],
            "http_calls_per_s": b, "machine": common.machine(st), "at": common.now_iso()}


def markdown(r: dict) -> str:
    kafka = sum(r["producer_calls_per_s"]) / 2
    return "\n".join([
        HEADING, "", f"{r['at']}: {r['calls']} one-minute calls ({r['audio_bytes']:,} B WAV each, by claim check), "
        f"{r['concurrency']} in flight, producer runs before and after the HTTP run (A B A).", "",
        "| door | calls/s | vs producer |", "| --- | --- | --- |",
        f"| Kafka producer (`Producer.push`) | {kafka:.1f} ({r['producer_calls_per_s'][0]:.1f}, "
        f"{r['producer_calls_per_s'][1]:.1f}) | 1.00x |",
        f"| HTTP push (`POST /v1/recordings`, one uvicorn process) | {r['http_calls_per_s']:.1f} | "
        f"{r['http_calls_per_s'] / kafka:.2f}x |", ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--append", action="store_true", help="append the section to bench/RESULTS.md")
    args = parser.parse_args(argv)
    result = run(args.calls, args.concurrency)
    common.write_json("front_doors", result)
    text = markdown(result)
    print(text)
    if args.append:
        with (Path(__file__).with_name("RESULTS.md")).open("a") as fh:
            fh.write("\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
