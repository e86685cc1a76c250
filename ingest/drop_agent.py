"""The worker's agent on the drop topic (``ingest.drop``): one announced object at a time.

Like the recordings agent: a failure of a server (object store, Kafka, catalog) is retried with
backoff and the event is not acknowledged, so its offset is not committed; a refusal of the
sender's (``IngestError``: bad metadata, a conflict, a cap) is dead-lettered with its reason
code, filed under the drop's tenant and recording id (so the status URL tells it), and the
dropped plaintext deleted; an unexpected error is retried a few times, then ``internal_error``.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone

import anyio
import faust

from . import drop, metrics
from .agents import transient
from .dead_letters import DeadLetterSender
from .exceptions import IngestError, IngestErrorCode
from .producer import Producer, catalog_seal_keys
from .runtime import WorkerRuntime
from .service import IngestDeps, Subject

log = logging.getLogger("callvault.ingest")


class DropAgent:
    def __init__(self, runtime: WorkerRuntime, dead_letters: DeadLetterSender) -> None:
        self.runtime = runtime
        self.dead_letters = dead_letters
        self.settings = runtime.deps.settings
        self._producer: Producer | None = None  # started on the first drop, kept for the next

    async def consume(self, stream: faust.StreamT) -> None:
        """The faust agent."""
        async for event in stream.events():
            d = await self._ready()
            try:
                items = drop.dropped(event.value or b"", d.storage.landing_bucket)
            except IngestError as exc:
                await self._refuse(event, None, str(exc.code), str(exc))
                continue
            for item in items:
                await self._take(event, item)

    async def _take(self, event: faust.EventT, item: drop.Dropped) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                d = await self._ready()
                seen = await drop.look(item, d.store)
                if isinstance(seen, drop.Skip):
                    log.info("drop tenant=%s: %s", item.tenant, seen.value)
                    return
                item = seen  # its metadata known, a refusal is filed under its recording id
                receipt = await drop.take(item, await self._producer_for(d), d.engine,
                                          max_bytes=self.settings.max_audio_bytes,
                                          default_region=self.settings.default_region, now=datetime.now(timezone.utc))
                log.info("drop %s tenant=%s: %s", receipt.state.value, item.tenant,
                         "replay" if receipt.replay else "sent")
                return
            except IngestError as exc:
                await self._refuse(event, item, str(exc.code), str(exc))
                return
            except Exception as exc:  # noqa: BLE001 - classified below
                if not transient(exc) and attempt >= self.settings.max_retries_unknown_error:
                    await self._refuse(event, item, IngestErrorCode.INTERNAL_ERROR.value,
                                       f"{type(exc).__name__} after {attempt} attempts")
                    return
                metrics.RETRIES.labels(f"drop-{type(exc).__name__}").inc()
                delay = self.runtime.retry.delay(attempt)
                log.warning("retrying drop in %.1fs: %s", delay, type(exc).__name__)
                await asyncio.sleep(delay)

    async def _refuse(self, event: faust.EventT, item: drop.Dropped | None, code: str, message: str) -> None:
        """Dead-lettered under the drop's tenant and recording id, and its plaintext deleted."""
        subject = Subject(event.value, tenant=item.tenant if item else None,
                          recording_id=drop.recording_of(item) if item else None)
        await self.dead_letters.send(event, code, message, subject)
        if item is not None:
            d = await self._ready()
            await anyio.to_thread.run_sync(drop.discard, item, d.store)

    async def _ready(self) -> IngestDeps:
        return await anyio.to_thread.run_sync(self.runtime.ready)

    async def _producer_for(self, d: IngestDeps) -> Producer:
        if self._producer is None:
            kafka = self.runtime.deps.kafka
            producer = Producer(kafka, d.storage, store=d.store,
                                seal_keys=catalog_seal_keys(d.engine, d.storage, kafka=kafka))
            self._producer = await producer.__aenter__()
        return self._producer
