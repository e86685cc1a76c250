"""The faust app: consume ``callvault.recordings``, store, emit events, dead-letter rejects.

Delivery is at least once and nothing is lost:

- a message the sender got wrong (``IngestError``) goes to the dead-letter topic, in
  quarantine (``ingest.sealing``): the original encrypted under a key of its own, kept in the
  catalog and filed under the caller's number, so an erasure of that number purges it; its
  reason code, tenant and a PII-free message in the headers; the worker moves on;
- a failure of ours or of a server (object store, database down) is retried with backoff,
  forever, without acknowledging the event, so its offset is never committed;
- an unexpected exception (a bug) is retried a few times, then dead-lettered as
  ``internal_error`` (the message is kept whole there, ready to be replayed);
- the offset of an event is committed only after its recording is durably stored (or its
  dead-letter record is acknowledged by Kafka), because faust commits acknowledged events
  only, and an event is acknowledged when the agent has finished with it.

Logs carry recording ids and reason codes, never a phone number or audio.

Besides the shared topic, the worker reads every per-tenant topic (``callvault.tenant.<tenant>
.recordings``; found every ``CALLVAULT_KAFKA_TENANT_TOPICS_REFRESH_SECONDS``, so a tenant granted
while it runs is picked up within seconds), and there takes the tenant from the topic, which
only that tenant's principal may write: a body naming another is dead-lettered ``tenant_mismatch``.

Before the first message is handled, the erasure ledger is replayed (``lifecycle.erasures``),
so a catalog restored from a backup never revives an erased caller.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial

import faust
import sqlalchemy as sa

from core.config import callvault_home
from lifecycle.erasures import replay_ledger
from storage.anchors import AuditAnchors
from storage.catalog.db import make_engine
from storage.exceptions import StorageError
from storage.keys import KeyRing
from storage.ledger import ErasureLedger
from storage.objectstore import ObjectStore
from storage.residency import check_all
from storage.settings import StorageSettings, get_catalog_settings, get_storage_settings

from . import attempts, metrics, pushes, sealing
from .exceptions import AudioEncodingFailed, IngestError, IngestErrorCode
from .kafka_client import client_options, faust_credentials
from . import drop_agent
from .service import IngestDeps, Subject, drop_refused_landing, identify, ingest
from .settings import IngestSettings, KafkaSettings, get_ingest_settings, get_kafka_settings
from .topics import ensure_topics, topic_configs

log = logging.getLogger("callvault.ingest")
MAX_BACKOFF_SECONDS = 30.0


@dataclass
class Topics:
    recordings: faust.TopicT
    dlq: faust.TopicT
    events: faust.TopicT


def _transient(exc: BaseException) -> bool:
    """Errors of a server or of this host, not of the message: retry, never dead-letter."""
    return isinstance(exc, (AudioEncodingFailed, sa.exc.OperationalError, sa.exc.InterfaceError)) or (
        isinstance(exc, StorageError) and not isinstance(exc, IngestError))


def _fault_injection(event: faust.EventT) -> None:
    """Testing aid: ``CALLVAULT_FAULT_KILL_ON_KEY=<Kafka key>`` makes the worker SIGKILL itself when it
    starts on that message (a stand-in for the out-of-memory killer). Unset in every deployment."""
    victim = os.environ.get("CALLVAULT_FAULT_KILL_ON_KEY")
    if victim and event.key == victim.encode():
        os.kill(os.getpid(), signal.SIGKILL)


def build_deps(storage: StorageSettings, ingest_settings: IngestSettings, catalog_url: str) -> IngestDeps:
    store = ObjectStore.from_settings(storage)
    check_all(store.client, storage)  # residency: refuse to start before a single byte moves
    engine = make_engine(catalog_url, pool_size=ingest_settings.concurrency + 2) if not catalog_url.startswith(
        "sqlite") else make_engine(catalog_url)
    keys = KeyRing.from_settings(storage)
    # Before the first call is stored: a restored catalog must first lose what was erased.
    replay_ledger(engine, store, keys, ErasureLedger.from_settings(store, storage), now=datetime.now(timezone.utc),
                  say=lambda line: log.info("%s", line))
    return IngestDeps(engine=engine, store=store, keys=keys, storage=storage, settings=ingest_settings,
                      kafka=get_kafka_settings())


def create_app(kafka: KafkaSettings | None = None, ingest_settings: IngestSettings | None = None,
               deps: IngestDeps | None = None) -> faust.App:
    kafka = kafka or get_kafka_settings()
    ingest_settings = ingest_settings or get_ingest_settings()
    app = faust.App(
        ingest_settings.app_id,
        broker=f"kafka://{kafka.bootstrap_servers}",
        broker_credentials=faust_credentials(kafka),
        store="memory://",
        datadir=str(callvault_home() / "faust"),
        topic_partitions=kafka.partitions,
        consumer_auto_offset_reset="earliest",
        web_enabled=ingest_settings.web_port > 0,
        web_port=ingest_settings.web_port or 6066,
        web_host="127.0.0.1",
        producer_max_request_size=17 * 1024 * 1024,  # a dead letter: the largest message, quarantined
        producer_acks=-1,
        broker_commit_every=100,
        broker_commit_interval=1.0,
    )
    configs = topic_configs(kafka)
    topics = Topics(
        recordings=app.topic(kafka.recordings_topic, key_serializer="raw", value_serializer="raw",
                             partitions=kafka.partitions, internal=True,
                             config=configs[kafka.recordings_topic]),
        dlq=app.topic(kafka.dlq_topic, key_serializer="raw", value_serializer="raw",
                      partitions=kafka.partitions, internal=True, config=configs[kafka.dlq_topic]),
        events=app.topic(kafka.events_topic, key_serializer="raw", value_serializer="raw",
                         partitions=kafka.partitions, internal=True, config=configs[kafka.events_topic]),
    )
    # One list shared by the recordings topic and the agent's clones of it (faust copies the
    # reference): per-tenant topics are appended as they appear (faust 0.15's `pattern=` subscribes
    # to nothing), and a short lock makes the resubscription follow within a second or so.
    subscribed = topics.recordings.topics = [kafka.recordings_topic]
    app.topics._resubscribe_sleep_lock_seconds = 1.0  # noqa: SLF001 - faust default 45 s
    pool = ThreadPoolExecutor(max_workers=ingest_settings.concurrency, thread_name_prefix="ingest")
    state: dict[str, IngestDeps] = {}
    building = threading.Lock()  # pool threads ask at once; deps (and the ledger replay) are built once

    def get_deps() -> IngestDeps:
        with building:
            if "deps" not in state:
                state["deps"] = deps or build_deps(get_storage_settings(), ingest_settings, get_catalog_settings().url)
        return state["deps"]

    async def send_until_acked(topic: faust.TopicT, *, key: bytes | None, value: bytes,
                               headers: dict[str, bytes] | None = None) -> None:
        """Kafka must acknowledge an event or a dead letter before its message is acknowledged:
        a failed send is retried with backoff, never dropped (the message would be lost)."""
        attempt = 0
        while True:
            attempt += 1
            try:
                delivered = await topic.send(key=key, value=value, headers=headers)
                await delivered
                return
            except Exception as exc:  # noqa: BLE001 - broker errors of any kind: retry
                metrics.RETRIES.labels(f"send-{type(exc).__name__}").inc()
                delay = min(MAX_BACKOFF_SECONDS, 0.5 * 2 ** min(attempt, 6))
                log.warning("retrying send to %s in %.1fs: %s", topic.get_topic_name(), delay, type(exc).__name__)
                await asyncio.sleep(delay)

    def quarantined(event: faust.EventT, code: str, subject: Subject | None = None
                    ) -> tuple[bytes, dict[str, bytes], object]:
        """The dead-letter record: the original encrypted under a new quarantine key (filed under
        the caller's number when the message says one), never the message as it arrived."""
        d = get_deps()
        subject = subject or identify(event.value, d)
        with d.engine.begin() as conn:
            now = datetime.now(timezone.utc)
            dl = d.quarantine.new(conn, reason=code, now=now, tenant=subject.tenant,
                                  number_hash=subject.number_hash, recording_id=subject.recording_id)
            pushes.settle(conn, subject.recording_id, "dead-lettered", reason=code, now=now)  # its status
        value = sealing.quarantine(subject.original, dead_letter_id=dl.id, key=dl.key)
        headers = {"callvault-dead-letter": str(dl.id).encode()}
        if subject.tenant:
            headers["callvault-tenant"] = subject.tenant.encode()
        return value, headers, subject

    async def dead_letter(event: faust.EventT, code: str, message: str, about: Subject | None = None) -> None:
        loop = asyncio.get_running_loop()
        value, headers, subject = await _until_done(loop, lambda: quarantined(event, code, about))
        headers = {"callvault-reason": code.encode(), "callvault-error": message[:1000].encode(), **headers}
        await send_until_acked(topics.dlq, key=event.key, value=value, headers=headers)
        # Refused: its landing object goes too, unless a replay may still need it (a tenant added
        # later, a bug of ours fixed); those expire with the landing bucket's lifecycle rule.
        await _until_done(loop, lambda: drop_refused_landing(subject, code, get_deps()))
        metrics.REJECTED.labels(code).inc()
        log.warning("dead-lettered partition=%s offset=%s reason=%s", event.message.partition,
                    event.message.offset, code)

    async def handle(event: faust.EventT) -> None:
        loop = asyncio.get_running_loop()
        metrics.CONSUMED.inc()
        with metrics.LATENCY.time():
            await _handle(event, loop)

    async def _handle(event: faust.EventT, loop: asyncio.AbstractEventLoop) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                result = await loop.run_in_executor(
                    pool, partial(ingest, topic_tenant=kafka.tenant_of(event.message.topic)), event.value,
                    get_deps())
            except IngestError as exc:
                if isinstance(exc, AudioEncodingFailed):
                    pass  # this host cannot encode: retry below, never blame the message
                else:
                    await dead_letter(event, str(exc.code), str(exc))
                    return
                error: BaseException = exc
            except Exception as exc:  # noqa: BLE001 - classified below
                error = exc
            else:
                await send_until_acked(topics.events, key=str(result.recording_id).encode(),
                                       value=json.dumps(result.event()).encode())
                metrics.OUTCOMES.labels(result.outcome.value).inc()
                if result.outcome.value == "stored" and event.message.timestamp:
                    metrics.PRODUCE_TO_STORED.observe(max(0.0, time.time() - event.message.timestamp))
                log.info("%s recording=%s tenant=%s", result.outcome.value, result.recording_id, result.tenant)
                return
            if not _transient(error) and attempt >= ingest_settings.max_retries_unknown_error:
                await dead_letter(event, IngestErrorCode.INTERNAL_ERROR.value,
                                  f"{type(error).__name__} after {attempt} attempts")
                return
            metrics.RETRIES.labels(type(error).__name__).inc()
            delay = min(MAX_BACKOFF_SECONDS, 0.5 * 2 ** min(attempt, 6))
            log.warning("retrying partition=%s offset=%s in %.1fs: %s", event.message.partition,
                        event.message.offset, delay, type(error).__name__)
            await asyncio.sleep(delay)

    @app.task
    async def declare_output_topics() -> None:
        metrics.serve(ingest_settings.metrics_port, ingest_settings.metrics_host)
        try:  # at start, not at the first message: a restored catalog is erased again at once
            await asyncio.get_running_loop().run_in_executor(pool, get_deps)
        except Exception as exc:  # noqa: BLE001 - a server down: the first message builds them again
            metrics.RETRIES.labels(f"start-{type(exc).__name__}").inc()
            log.warning("start-up checks and ledger replay failed, retried with the first call: %s",
                        type(exc).__name__)
        # faust creates the topics its agents consume; the ones it only writes to are ours to declare.
        for topic in (topics.dlq, topics.events):
            await topic.maybe_declare()
        try:  # every topic's retention set explicitly, also on topics made before this version
            await ensure_topics(kafka)
        except Exception as exc:  # noqa: BLE001 - the broker refused (ACLs): say so, keep ingesting
            log.warning("could not set the topics' retention: %s", type(exc).__name__)

    @app.task
    async def follow_tenant_topics() -> None:
        """Subscribe to each per-tenant topic as it appears (``callvault kafka grant-telephony``)."""
        from aiokafka.admin import AIOKafkaAdminClient

        admin = None
        while True:
            try:
                if admin is None:
                    admin = AIOKafkaAdminClient(**client_options(kafka))
                    await admin.start()
                found = sorted(t for t in await admin.list_topics() if kafka.tenant_of(t) and t not in subscribed)
                if found:
                    subscribed.extend(found)
                    log.info("subscribing to %d new per-tenant topics", len(found))
                if any(t not in app.topics._topic_name_index for t in subscribed):  # noqa: SLF001
                    app.topics._flag_changes()  # noqa: SLF001 - resubscribe with the longer list
            except Exception as exc:  # noqa: BLE001 - a broker hiccup: look again at the next tick
                log.warning("listing per-tenant topics failed: %s", type(exc).__name__)
                if admin is not None:
                    await admin.close()
                admin = None
            await asyncio.sleep(kafka.tenant_topics_refresh_seconds)

    # One agent taking batches, not `concurrency=N` agents: faust acknowledges a batch only when
    # all of it is done, so no offset is committed past a call still being processed (with N
    # agents, calls finish out of order and faust 0.15 can commit past a lower, unfinished one).
    @app.agent(topics.recordings, name="callvault.ingest")
    async def ingest_agent(stream):
        async for events in stream.take_events(ingest_settings.concurrency, within=0.05):
            await handle_batch(events)

    async def handle_batch(events: list[faust.EventT]) -> None:
        """A batch, with its attempts counted first (``ingest.attempts``): a message that killed
        a worker before is handled alone, and past ``max_crash_attempts`` dead-lettered."""
        loop = asyncio.get_running_loop()
        delivery = {id(e): (e.message.topic, e.message.partition, e.message.offset) for e in events}
        now = datetime.now(timezone.utc)
        seen = await _until_done(loop, lambda: attempts.start(get_deps().engine, list(delivery.values()), now=now))
        fresh = [e for e in events if delivery[id(e)] not in seen]
        for event in (e for e in events if delivery[id(e)] in seen):  # one at a time, each counted first
            [n] = await _until_done(loop, lambda: attempts.begin(get_deps().engine, [delivery[id(event)]], now=now))
            if n > ingest_settings.max_crash_attempts:
                await dead_letter(event, IngestErrorCode.WORKER_CRASH.value,
                                  f"the worker was killed {n - 1} times while processing this message")
            else:
                log.warning("redelivered after a worker crash partition=%s offset=%s attempt=%s: alone",
                            event.message.partition, event.message.offset, n)
                _fault_injection(event)
                await handle(event)
            await _until_done(loop, lambda: attempts.finish(get_deps().engine, [delivery[id(event)]]))
        if fresh:  # already counted once by ``start``
            for event in fresh:
                _fault_injection(event)
            await asyncio.gather(*(handle(event) for event in fresh))
            await _until_done(loop, lambda: attempts.finish(get_deps().engine, [delivery[id(e)] for e in fresh]))

    async def _until_done(loop: asyncio.AbstractEventLoop, fn):
        """The catalog bookkeeping of a batch, retried like a store: a database restart waits."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return await loop.run_in_executor(pool, fn)
            except Exception as exc:  # noqa: BLE001 - a server down: retry, never drop the batch
                metrics.RETRIES.labels(f"attempts-{type(exc).__name__}").inc()
                log.warning("catalog bookkeeping failed (attempt %d), retrying: %s", attempt, type(exc).__name__)
                await asyncio.sleep(min(MAX_BACKOFF_SECONDS, 0.5 * 2 ** min(attempt, 6)))

    if ingest_settings.sweep_interval_seconds > 0:
        anchors_of: dict[int, AuditAnchors | None] = {}  # one per process: it remembers the last anchored head

        @app.timer(ingest_settings.sweep_interval_seconds, on_leader=True)
        async def sweep_expired() -> None:
            """Retention on time: the worker sweeps every interval (one worker: the group leader),
            then anchors the audit chain's head."""
            from datetime import datetime, timezone

            from lifecycle.settings import get_lifecycle_settings
            from lifecycle.sweeper import sweep

            d = get_deps()
            if 0 not in anchors_of:
                anchors_of[0] = AuditAnchors.from_settings(d.store, d.storage)
            try:
                report = await asyncio.get_running_loop().run_in_executor(
                    pool, lambda: sweep(d.engine, d.store, now=datetime.now(timezone.utc),
                                        batch_size=get_lifecycle_settings().sweep_batch_size,
                                        anchors=anchors_of[0]))
            except Exception as exc:  # noqa: BLE001 - a server down: the next interval sweeps again
                # A sweep stopped midway converges when re-run; the timer must outlive the outage.
                metrics.RETRIES.labels(f"sweep-{type(exc).__name__}").inc()
                log.warning("sweep failed, retried at the next interval: %s", type(exc).__name__)
                return
            for event in report.events:
                await send_until_acked(topics.events, key=event["copy_id"].encode(), value=json.dumps(event).encode())
            try:  # keys of data in transit past their topics' retention
                await asyncio.get_running_loop().run_in_executor(pool, lambda: expire_transit_keys(d))
            except Exception as exc:  # noqa: BLE001 - the next interval tries again
                metrics.RETRIES.labels(f"transit-keys-{type(exc).__name__}").inc()
            if report.deleted_copies:
                log.info("sweep: %s", report.summary())

    drops = app.topic(kafka.drop_topic, key_serializer="raw", value_serializer="raw", internal=True,
                      config=configs[kafka.drop_topic])
    drop_agent.install(app, drops, kafka=kafka, settings=ingest_settings, get_deps=get_deps,
                       dead_letter=dead_letter, retry=_transient)
    app.callvault_topics = topics  # for tests
    return app


def expire_transit_keys(d: IngestDeps) -> tuple[int, int]:
    """Destroy ingest keys and dead-letter keys whose topics' retention has passed."""
    now = datetime.now(timezone.utc)
    with d.engine.begin() as conn:
        destroyed, purged = d.ingest_keys.destroy_expired(conn, now=now), d.quarantine.expire(conn, now=now)
    if destroyed or purged:
        log.info("transit keys: %d ingest keys destroyed, %d dead letters past retention purged", destroyed, purged)
    return destroyed, purged


def run_worker(loglevel: str = "info") -> None:
    """``callvault worker``: start the faust worker in this process until interrupted."""
    from faust.worker import Worker

    app = create_app()
    Worker(app, loglevel=loglevel, quiet=True).execute_from_commandline()
