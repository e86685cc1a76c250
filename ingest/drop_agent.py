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
from typing import Awaitable, Callable

import anyio
import faust

from . import drop, metrics
from .exceptions import IngestError, IngestErrorCode
from .producer import Producer, catalog_seal_keys
from .service import IngestDeps, Subject
from .settings import IngestSettings, KafkaSettings

log = logging.getLogger("callvault.ingest")
MAX_BACKOFF_SECONDS = 30.0
DeadLetter = Callable[..., Awaitable[None]]


def install(app: faust.App, topic: faust.TopicT, *, kafka: KafkaSettings, settings: IngestSettings,
            get_deps: Callable[[], IngestDeps], dead_letter: DeadLetter,
            retry: Callable[[BaseException], bool]) -> None:
    producers: dict[str, Producer] = {}

    async def producer() -> Producer:
        if "p" not in producers:
            d = await anyio.to_thread.run_sync(get_deps)
            p = Producer(kafka, d.storage, store=d.store, seal_keys=catalog_seal_keys(d.engine, d.storage,
                                                                                       kafka=kafka))
            producers["p"] = await p.__aenter__()
        return producers["p"]

    async def refuse(event: faust.EventT, item: drop.Dropped | None, exc: IngestError | None, code: str,
                     message: str) -> None:
        subject = Subject(event.value, tenant=item.tenant if item else None,
                          recording_id=drop.recording_of(item) if item else None)
        await dead_letter(event, code, message, subject)
        if item is not None:
            d = await anyio.to_thread.run_sync(get_deps)
            await anyio.to_thread.run_sync(lambda: drop.discard(item, d.store))

    async def one(event: faust.EventT, item: drop.Dropped) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                d = await anyio.to_thread.run_sync(get_deps)
                receipt = await drop.take(item, await producer(), d.engine, max_bytes=settings.max_audio_bytes,
                                          default_region=settings.default_region, now=datetime.now(timezone.utc))
                log.info("drop %s tenant=%s: %s", receipt.state.value if receipt else "already handled",
                         item.tenant, "replay" if receipt and receipt.replay else "sent")
                return
            except IngestError as exc:
                await refuse(event, item, exc, str(exc.code), str(exc))
                return
            except Exception as exc:  # noqa: BLE001 - classified below
                if not retry(exc) and attempt >= settings.max_retries_unknown_error:
                    await refuse(event, item, None, IngestErrorCode.INTERNAL_ERROR.value,
                                 f"{type(exc).__name__} after {attempt} attempts")
                    return
                metrics.RETRIES.labels(f"drop-{type(exc).__name__}").inc()
                log.warning("retrying drop in %.1fs: %s", min(MAX_BACKOFF_SECONDS, 0.5 * 2 ** attempt),
                            type(exc).__name__)
                await asyncio.sleep(min(MAX_BACKOFF_SECONDS, 0.5 * 2 ** min(attempt, 6)))

    @app.agent(topic, name="callvault.drop")
    async def drop_agent(stream):
        async for event in stream.events():
            d = await anyio.to_thread.run_sync(get_deps)
            try:
                items = drop.dropped(event.value or b"", d.storage.landing_bucket)
            except IngestError as exc:
                await refuse(event, None, exc, str(exc.code), str(exc))
                continue
            for item in items:
                await one(event, item)

