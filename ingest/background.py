"""The worker's work besides the calls: its start, the per-tenant topics it follows, its sweep.

- At start, not at the first message: the ledger replay (``WorkerRuntime.ready``), so a restored
  catalog is erased again at once; the output topics declared, every topic's retention set.
- Every ``CALLVAULT_KAFKA_TENANT_TOPICS_REFRESH_SECONDS``: per-tenant topics that appeared
  (``callvault kafka grant-telephony``) are subscribed to.
- Every ``CALLVAULT_INGEST_SWEEP_INTERVAL_SECONDS`` (one worker: the group leader): retention on
  time, the audit chain's head anchored, keys of data in transit past their topics' retention
  destroyed. A sweep stopped midway converges when run again, so an outage waits for the next.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime, timezone

import faust
from aiokafka.admin import AIOKafkaAdminClient

from lifecycle.sweeper import SweepReport, sweep

from . import metrics, pushes
from .kafka_client import client_options
from .runtime import WorkerRuntime
from .service import IngestDeps
from .topics import ensure_topics

log = logging.getLogger("callvault.ingest")


class StartUp:
    def __init__(self, runtime: WorkerRuntime, declared: list[faust.TopicT]) -> None:
        self.runtime = runtime
        self.declared = declared  # faust creates the topics its agents consume; these are ours

    async def run(self) -> None:
        settings = self.runtime.deps.settings
        metrics.serve(settings.metrics_port, settings.metrics_host)
        try:
            await self.runtime.run(self.runtime.ready)
        except Exception as exc:  # noqa: BLE001 - a server down: the first message prepares again
            metrics.RETRIES.labels(f"start-{type(exc).__name__}").inc()
            log.warning("start-up checks and ledger replay failed, retried with the first call: %s",
                        type(exc).__name__)
        for topic in self.declared:
            await topic.maybe_declare()
        try:  # every topic's retention set explicitly, also on topics made before this version
            await ensure_topics(self.runtime.deps.kafka)
        except Exception as exc:  # noqa: BLE001 - the broker refused (ACLs): say so, keep ingesting
            log.warning("could not set the topics' retention: %s", type(exc).__name__)


class TenantTopicFollower:
    """Appends each new per-tenant topic to ``subscribed``, the list the recordings topic shares
    with the agent's clones of it, and has faust resubscribe."""

    def __init__(self, app: faust.App, subscribed: list[str], runtime: WorkerRuntime) -> None:
        self.app = app
        self.subscribed = subscribed
        self.kafka = runtime.deps.kafka

    async def run(self) -> None:
        admin: AIOKafkaAdminClient | None = None
        while True:
            try:
                if admin is None:
                    admin = AIOKafkaAdminClient(**client_options(self.kafka))
                    await admin.start()
                self._follow(await admin.list_topics())
            except Exception as exc:  # noqa: BLE001 - a broker hiccup: look again at the next tick
                log.warning("listing per-tenant topics failed: %s", type(exc).__name__)
                if admin is not None:
                    await admin.close()
                admin = None
            await asyncio.sleep(self.kafka.tenant_topics_refresh_seconds)

    def _follow(self, topics: list[str]) -> None:
        found = sorted(t for t in topics if self.kafka.tenant_of(t) and t not in self.subscribed)
        if found:
            self.subscribed.extend(found)
            log.info("subscribing to %d new per-tenant topics", len(found))
        if any(t not in self.app.topics._topic_name_index for t in self.subscribed):  # noqa: SLF001
            self.app.topics._flag_changes()  # noqa: SLF001 - resubscribe with the longer list


class SweepTimer:
    def __init__(self, runtime: WorkerRuntime, events: faust.TopicT) -> None:
        self.runtime = runtime
        self.events = events

    async def run(self) -> None:
        try:
            report = await self.runtime.run(self._sweep)
        except Exception as exc:  # noqa: BLE001 - a server down: the next interval sweeps again
            metrics.RETRIES.labels(f"sweep-{type(exc).__name__}").inc()
            log.warning("sweep failed, retried at the next interval: %s", type(exc).__name__)
            return
        for event in report.events:
            await self.runtime.send(self.events, key=event["copy_id"].encode(), value=json.dumps(event).encode())
        try:
            await self.runtime.run(self._expire_transit_keys)
        except Exception as exc:  # noqa: BLE001 - the next interval tries again
            metrics.RETRIES.labels(f"transit-keys-{type(exc).__name__}").inc()
        if report.deleted_copies:
            log.info("sweep: %s", report.summary())

    def _sweep(self) -> SweepReport:
        d, deps = self.runtime.ready(), self.runtime.deps
        return sweep(d.engine, d.store, now=datetime.now(timezone.utc), batch_size=deps.sweep_batch_size,
                     anchors=deps.anchors)

    def _expire_transit_keys(self) -> None:
        d = self.runtime.ready()
        expire_transit_keys(d)
        forget_pushes(d, days=self.runtime.deps.settings.push_status_days)


def expire_transit_keys(d: IngestDeps) -> tuple[int, int]:
    """Destroy ingest keys and dead-letter keys whose topics' retention has passed."""
    now = datetime.now(timezone.utc)
    with d.engine.begin() as conn:
        destroyed, purged = d.ingest_keys.destroy_expired(conn, now=now), d.quarantine.expire(conn, now=now)
    if destroyed or purged:
        log.info("transit keys: %d ingest keys destroyed, %d dead letters past retention purged", destroyed, purged)
    return destroyed, purged


def forget_pushes(d: IngestDeps, *, days: int) -> int:
    """Pushed calls settled more than ``days`` ago: their status rows go (``pushes.forget_settled``)."""
    forgotten, now = 0, datetime.now(timezone.utc)
    while True:  # a batch a transaction
        with d.engine.begin() as conn:
            done = pushes.forget_settled(conn, now=now, days=days)
        forgotten += done
        if done < pushes.FORGET_BATCH:
            break
    if forgotten:
        log.info("push statuses: %d settled more than %d days ago forgotten", forgotten, days)
    return forgotten
