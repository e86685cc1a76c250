"""What the worker is given, and what its pieces share while it runs.

``WorkerDeps`` is built by the one composition root (``callvault.bootstrap.build_worker_deps``):
building it opens no connection. The worker's first duty (``prepare``: the buckets' actual
location checked, then the erasure ledger replayed) runs once, in a pool thread, before any call
is handled; while a server is down it fails and the next caller tries again.

``WorkerRuntime`` holds the thread pool that blocking work (catalog, object store, ffmpeg) runs
in, off the event loop, and the retry policy: catalog bookkeeping and Kafka sends are retried
until they succeed, never dropped (a message acknowledged without them would be lost).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, TypeVar

import faust

from lifecycle.erasures import replay_ledger
from storage.anchors import AuditAnchors
from storage.ledger import ErasureLedger
from storage.residency import check_all

from . import metrics
from .retry import RetryPolicy
from .service import IngestDeps
from .settings import IngestSettings, KafkaSettings

log = logging.getLogger("callvault.ingest")
T = TypeVar("T")


@dataclass
class WorkerDeps:
    """The worker's dependencies: the ingest service's (engine, object store, key ring, storage,
    ingest and Kafka settings), the erasure ledger replayed at start, the audit anchors and the
    batch size of the sweep it runs on a timer."""

    ingest: IngestDeps
    ledger: ErasureLedger
    anchors: AuditAnchors | None = None  # None: no anchor key configured
    sweep_batch_size: int = 500

    @property
    def settings(self) -> IngestSettings:
        return self.ingest.settings

    @property
    def kafka(self) -> KafkaSettings:
        return self.ingest.kafka


def prepare(deps: WorkerDeps) -> None:
    """Before the first call: refuse buckets outside the allowed regions (where they actually
    are, not only what the settings say), then replay the erasure ledger, so a catalog restored
    from a backup loses again what was erased before a single call is stored into it."""
    d = deps.ingest
    check_all(d.store.client, d.storage)
    replay_ledger(d.engine, d.store, d.keys, deps.ledger, now=d.clock(), say=partial(log.info, "%s"))


def _bookkeeping_failed(attempt: int, _delay: float, exc: Exception) -> None:
    metrics.RETRIES.labels(f"attempts-{type(exc).__name__}").inc()
    log.warning("catalog bookkeeping failed (attempt %d), retrying: %s", attempt, type(exc).__name__)


def _send_failed(topic: str, _attempt: int, delay: float, exc: Exception) -> None:
    metrics.RETRIES.labels(f"send-{type(exc).__name__}").inc()
    log.warning("retrying send to %s in %.1fs: %s", topic, delay, type(exc).__name__)


class WorkerRuntime:
    """The thread pool, the retry policy and the dependencies, made ready once."""

    def __init__(self, deps: WorkerDeps, retry: RetryPolicy | None = None) -> None:
        self.deps = deps
        self.retry = retry or RetryPolicy()
        # A thread per call in flight, and two for the bookkeeping and the drop agent, so acknowledging a
        # finished call never waits for a slow one to leave the pool.
        self.pool = ThreadPoolExecutor(max_workers=deps.settings.in_flight + 2, thread_name_prefix="ingest")
        self._prepared = False
        self._preparing = threading.Lock()  # pool threads ask at once; the ledger is replayed once

    def ready(self) -> IngestDeps:
        """The ingest service's dependencies once ``prepare`` has succeeded (blocking: call it
        in the pool). A failure is raised to this caller and tried again by the next."""
        with self._preparing:
            if not self._prepared:
                prepare(self.deps)
                self._prepared = True
        return self.deps.ingest

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in the pool, once."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, partial(fn, *args))

    async def bookkeeping(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in the pool until it succeeds: a database restart waits, the batch is kept."""
        return await self.retry.until_done(partial(self.run, fn, *args), _bookkeeping_failed)

    async def send(self, topic: faust.TopicT, *, key: bytes | None, value: bytes,
                   headers: dict[str, bytes] | None = None) -> None:
        """Kafka must acknowledge an event or a dead letter before its message is acknowledged:
        a failed send is retried with backoff, never dropped (the message would be lost)."""
        await self.retry.until_done(partial(_send_once, topic, key, value, headers),
                                    partial(_send_failed, topic.get_topic_name()))


async def _send_once(topic: faust.TopicT, key: bytes | None, value: bytes, headers: dict[str, bytes] | None) -> None:
    delivered = await topic.send(key=key, value=value, headers=headers)
    await delivered
