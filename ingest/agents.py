"""The ingest agent: take calls off the recordings topics, store them, announce or dead-letter them.

One agent keeping up to ``IngestSettings.in_flight`` calls in flight, not ``concurrency=N``
agents: with N agents calls finish out of order and faust 0.15 can commit past a lower,
unfinished one. Here acknowledgements are manual (``Stream.noack_take``) and go through an
``ingest.window.AckWindow``: a call is acknowledged as soon as it and every call taken before it
from its partition are finished, so no offset is committed past an unfinished call, and a slow
call holds back only the acknowledgements behind it, never the calls behind it: the next call
starts as soon as one finishes (a sliding window, not a batch barrier).

The calls taken together have their attempts counted first, in one statement (``ingest.attempts``):
a message that killed a worker before is handled alone (once every call in progress is finished),
and past ``max_crash_attempts`` dead-lettered ``worker_crash``. A call's attempts row goes, in one
statement with those of the calls acknowledged with it, just before they are acknowledged.
A message the sender got wrong is dead-lettered at once; a failure of a server or of this host is
retried forever; an unexpected exception (a bug) a few times, then dead-lettered ``internal_error``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
from datetime import datetime, timezone
from typing import Callable

import faust
import sqlalchemy as sa

from storage.exceptions import StorageError

from . import attempts, metrics
from .attempts import Delivery
from .dead_letters import DeadLetterSender
from .exceptions import AudioEncodingFailed, IngestError, IngestErrorCode
from .runtime import WorkerRuntime
from .service import IngestResult, ingest
from .window import AckWindow

log = logging.getLogger("callvault.ingest")


def transient(exc: BaseException) -> bool:
    """Errors of a server or of this host, not of the message: retry, never dead-letter."""
    return isinstance(exc, (AudioEncodingFailed, sa.exc.OperationalError, sa.exc.InterfaceError)) or (
        isinstance(exc, StorageError) and not isinstance(exc, IngestError))


def _fault_injection(event: faust.EventT) -> None:
    """Testing aid: ``CALLVAULT_FAULT_KILL_ON_KEY=<Kafka key>`` makes the worker SIGKILL itself when it
    starts on that message (a stand-in for the out-of-memory killer). Unset in every deployment."""
    victim = os.environ.get("CALLVAULT_FAULT_KILL_ON_KEY")
    if victim and event.key == victim.encode():
        os.kill(os.getpid(), signal.SIGKILL)


TAKE_WITHIN = 0.02  # s: how long a take waits for more calls than have arrived: a lone call's added latency,
# and the agent's idle wake-ups (faust polls its take buffer at this period; 5 ms cost ~0.1 s of CPU per second)


def _delivery(event: faust.EventT) -> Delivery:
    return event.message.topic, event.message.partition, event.message.offset


class BatchAgent:
    def __init__(self, runtime: WorkerRuntime, events: faust.TopicT, dead_letters: DeadLetterSender) -> None:
        self.runtime = runtime
        self.events = events
        self.dead_letters = dead_letters
        self.settings = runtime.deps.settings
        self.kafka = runtime.deps.kafka
        self.in_flight = self.settings.in_flight
        self.window: AckWindow[faust.EventT] = AckWindow()
        self._slots = asyncio.Semaphore(self.in_flight)
        self._running = 0  # calls taken and not finished (waiting for a slot included)
        self._changed = asyncio.Event()  # a call finished, or calls were acknowledged
        self._ready: list[faust.EventT] = []  # finished, in order, to acknowledge
        self._acking: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()

    async def consume(self, stream: faust.StreamT) -> None:
        """The faust agent: take what has arrived (up to ``in_flight`` calls), then more as soon as
        fewer than twice that many are waiting for their acknowledgement."""
        async for events in stream.noack_take(self.in_flight, within=TAKE_WITHIN):
            await self.take(stream, events)
            await self._until(lambda: len(self.window) < 2 * self.in_flight)

    async def take(self, stream: faust.StreamT, events: list[faust.EventT]) -> None:
        now = datetime.now(timezone.utc)
        delivery = {id(e): _delivery(e) for e in events}
        seen = await self.runtime.bookkeeping(self._start, list(delivery.values()), now)
        for event in events:  # in offset order within each partition: acknowledged in that order
            self.window.add(event.message.tp, event)
        for event in events:
            if delivery[id(event)] in seen:  # one at a time, each counted first
                await self._until(lambda: self._running == 0)
                self._running += 1
                await self._handle_suspect(event, delivery[id(event)], now)
                self._finished(stream, event)
            else:  # already counted once by ``start``
                _fault_injection(event)
                self._running += 1
                task = asyncio.create_task(self._run(stream, event))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _run(self, stream: faust.StreamT, event: faust.EventT) -> None:
        async with self._slots:
            await self.handle(event)
        self._finished(stream, event)

    def _finished(self, stream: faust.StreamT, event: faust.EventT) -> None:
        """``event`` is done: acknowledge what the window lets go, one acknowledger at a time (so
        offsets are acknowledged in order, and the calls finished meanwhile go together)."""
        self._running -= 1
        self._ready.extend(self.window.finish(event))
        self._changed.set()
        if self._ready and (self._acking is None or self._acking.done()):
            self._acking = asyncio.create_task(self._acknowledge(stream))

    async def _acknowledge(self, stream: faust.StreamT) -> None:
        while self._ready:
            ready, self._ready = self._ready, []
            await self.runtime.bookkeeping(self._finish, [_delivery(e) for e in ready])
            for event in ready:
                await stream.ack(event)
            self._changed.set()

    async def _until(self, condition: Callable[[], bool]) -> None:
        while not condition():
            self._changed.clear()
            await self._changed.wait()

    async def _handle_suspect(self, event: faust.EventT, delivery: Delivery, now: datetime) -> None:
        """A message started before by a worker that did not finish it: maybe the one that killed it."""
        [n] = await self.runtime.bookkeeping(self._begin, [delivery], now)
        if n > self.settings.max_crash_attempts:
            await self.dead_letters.send(event, IngestErrorCode.WORKER_CRASH.value,
                                         f"the worker was killed {n - 1} times while processing this message")
        else:
            log.warning("redelivered after a worker crash partition=%s offset=%s attempt=%s: alone",
                        event.message.partition, event.message.offset, n)
            _fault_injection(event)
            await self.handle(event)

    async def handle(self, event: faust.EventT) -> None:
        metrics.CONSUMED.inc()
        with metrics.LATENCY.time():
            await self._handle(event)

    async def _handle(self, event: faust.EventT) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                result = await self.runtime.run(self._ingest, event)
            except IngestError as exc:
                if not isinstance(exc, AudioEncodingFailed):  # this host cannot encode: retried below
                    await self.dead_letters.send(event, str(exc.code), str(exc))
                    return
                error: BaseException = exc
            except Exception as exc:  # noqa: BLE001 - classified below
                error = exc
            else:
                await self._announce(event, result)
                return
            if not transient(error) and attempt >= self.settings.max_retries_unknown_error:
                await self.dead_letters.send(event, IngestErrorCode.INTERNAL_ERROR.value,
                                             f"{type(error).__name__} after {attempt} attempts")
                return
            await self._wait_to_retry(event, attempt, error)

    async def _wait_to_retry(self, event: faust.EventT, attempt: int, error: BaseException) -> None:
        metrics.RETRIES.labels(type(error).__name__).inc()
        delay = self.runtime.retry.delay(attempt)
        log.warning("retrying partition=%s offset=%s in %.1fs: %s", event.message.partition,
                    event.message.offset, delay, type(error).__name__)
        await asyncio.sleep(delay)

    async def _announce(self, event: faust.EventT, result: IngestResult) -> None:
        """The outcome on the events topic, acknowledged before the message is."""
        await self.runtime.send(self.events, key=str(result.recording_id).encode(),
                                value=json.dumps(result.event()).encode())
        metrics.OUTCOMES.labels(result.outcome.value).inc()
        if result.outcome.value == "stored" and event.message.timestamp:
            metrics.PRODUCE_TO_STORED.observe(max(0.0, time.time() - event.message.timestamp))
        log.info("%s recording=%s tenant=%s", result.outcome.value, result.recording_id, result.tenant)

    # -- blocking work, run in the pool ---------------------------------------------------
    def _ingest(self, event: faust.EventT) -> IngestResult:
        # On a per-tenant topic the tenant is the topic's (only its principal may write there).
        # A record with no value (a tombstone) is an empty message: refused, never a TypeError retried.
        return ingest(event.value or b"", self.runtime.ready(), topic_tenant=self.kafka.tenant_of(event.message.topic))

    def _start(self, deliveries: list[Delivery], now: datetime) -> set[Delivery]:
        return attempts.start(self.runtime.ready().engine, deliveries, now=now)

    def _begin(self, deliveries: list[Delivery], now: datetime) -> list[int]:
        return attempts.begin(self.runtime.ready().engine, deliveries, now=now)

    def _finish(self, deliveries: list[Delivery]) -> None:
        attempts.finish(self.runtime.ready().engine, deliveries)
