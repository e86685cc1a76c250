"""What became of a pushed call: the worker's event or dead letter about it.

``callvault push`` waits for it by default. The watcher takes the current end of the events
and dead-letter topics *before* the call is sent, so the answer cannot slip past however fast
the worker is, then reads on from there until the record about this call arrives: an event
(``stored``, ``duplicate``, ``suppressed``, ``expired-on-arrival``, ``erased-on-arrival``)
naming the call's tenant and telephony id, or a dead letter keyed by its telephony id (reason
code and PII-free error in its headers). No consumer group: nothing is committed, nothing moves for anyone else.

Reading those topics takes READ on them: a telephony principal, which may only write its own
topic, pushes with ``--no-wait``.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from core.vocabulary import PushOutcome
from storage.settings import StorageSettings

from .exceptions import KafkaAccessError
from .kafka_client import client_options, kafka_errors
from .producer import Call, Producer
from .settings import KafkaSettings
from .topics import ensure_topics


@dataclass(frozen=True)
class CallOutcome:
    kind: str  # an ``ingest.service.Outcome`` value (the event's type), or ``PushOutcome.DEAD_LETTERED``
    event: dict = field(default_factory=dict)  # the event (ids and facts only)
    reason: str = ""  # a dead letter's reason code and error
    error: str = ""
    position: str = ""  # a dead letter's PARTITION:OFFSET, as `callvault dlq show` takes it


class OutcomeWatcher:
    """``async with OutcomeWatcher(kafka) as w: <send>; outcome = await w.wait(tenant, id, timeout)``."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self.kafka = kafka
        self._consumer = AIOKafkaConsumer(**client_options(kafka), enable_auto_commit=False, group_id=None)

    async def __aenter__(self) -> "OutcomeWatcher":
        async with kafka_errors(self.kafka):
            try:
                await self._consumer.start()
                await self._assign_at_end()
            except BaseException:
                await self._consumer.stop()  # also after a failed start: no "Unclosed AIOKafkaConsumer"
                raise
        return self

    async def __aexit__(self, *exc) -> None:
        await self._consumer.stop()

    async def _assign_at_end(self) -> None:
        tps = [TopicPartition(topic, p) for topic, partitions in (await _partitions(self.kafka)).items()
               for p in partitions]
        self._consumer.assign(tps)
        for tp, offset in (await self._consumer.end_offsets(tps)).items():
            self._consumer.seek(tp, offset)

    async def wait(self, tenant: str, telephony_id: str, timeout: float) -> CallOutcome | None:
        """The outcome for this call, or None when nothing came within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        key = telephony_id.encode()
        async with kafka_errors(self.kafka):
            while (left := deadline - time.monotonic()) > 0:
                batch = await self._consumer.getmany(timeout_ms=int(min(left, 1.0) * 1000))
                for records in batch.values():
                    for r in records:
                        found = self._match(r, tenant, telephony_id, key)
                        if found is not None:
                            return found
        return None

    def _match(self, r, tenant: str, telephony_id: str, key: bytes) -> CallOutcome | None:
        if r.topic == self.kafka.dlq_topic:
            headers = {k: v.decode(errors="replace") for k, v in (r.headers or ())}
            if r.key != key or headers.get("callvault-tenant", tenant) != tenant:
                return None
            return CallOutcome(PushOutcome.DEAD_LETTERED, reason=headers.get("callvault-reason", "?"),
                               error=headers.get("callvault-error", ""), position=f"{r.partition}:{r.offset}")
        try:
            event = json.loads(r.value)
        except (TypeError, ValueError):
            return None
        if isinstance(event, dict) and event.get("tenant") == tenant and event.get("external_id") == telephony_id:
            return CallOutcome(str(event.get("type")), event=event)
        return None


async def _partitions(kafka: KafkaSettings) -> dict[str, list[int]]:
    """The events and dead-letter topics' partitions, the topics made first on a fresh stack
    (the worker makes them too, but may not have run yet)."""
    topics = [kafka.events_topic, kafka.dlq_topic]
    admin = AIOKafkaAdminClient(**client_options(kafka))
    await admin.start()
    try:
        for _ in range(50):
            if not set(topics) <= set(await admin.list_topics()):
                await ensure_topics(kafka)
            described = {d["topic"]: sorted(p["partition"] for p in d["partitions"])
                         for d in await admin.describe_topics(topics) if not d.get("error_code")}
            if all(described.get(topic) for topic in topics):
                return described
            await asyncio.sleep(0.2)  # just created: the metadata catches up
        raise KafkaAccessError(f"the topics {', '.join(topics)} have no partitions yet", hint="try again")
    finally:
        await admin.close()


def push_and_wait(call: Call, kafka: KafkaSettings, storage: StorageSettings, *, inline_max_bytes: int,
                  timeout: float) -> CallOutcome | None:
    """Send the call (its ``recording_id`` set) and wait up to ``timeout`` seconds for its outcome."""
    assert call.recording_id, "the watcher needs the telephony id before sending"

    async def run() -> CallOutcome | None:
        async with OutcomeWatcher(kafka) as watcher:
            async with Producer(kafka, storage, inline_max_bytes=inline_max_bytes) as producer:
                await producer.push(call)
            return await watcher.wait(call.tenant, call.recording_id or "", timeout)

    return asyncio.run(run())
