"""The telephony side: push a finished call onto ``callvault.recordings``, or with
``CALLVAULT_KAFKA_PER_TENANT_TOPICS`` onto its tenant's own topic (the only one its SASL
principal may write: ``callvault kafka grant-telephony``).

Small audio travels inline (base64 in the message). Larger audio is uploaded first to the
EU landing bucket and the message carries a claim check (bucket, key, size, SHA-256), so
Kafka messages stay far below the broker's size limit. The landing bucket is checked for
residency before the upload; its lifecycle rule expires stragglers within a day.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Iterable

from aiokafka import AIOKafkaProducer

from storage.objectstore import ObjectStore
from storage.residency import check_bucket, check_settings
from storage.settings import StorageSettings

from .kafka_client import client_options, kafka_errors
from .schema import AudioRef, RecordingMessage, build_message, guess_format
from .settings import KafkaSettings


@dataclass(frozen=True)
class Call:
    audio: bytes
    tenant: str
    agent_id: str
    caller_number: str | None  # None: withheld
    started_at: datetime
    recording_id: str | None = None
    team_id: str | None = None
    direction: str = "inbound"
    redactions: tuple[tuple[int, int], ...] = ()
    audio_format: str | None = None


class Producer:
    """Builds v1 messages and sends them with acks=all; usable as an async context manager."""

    def __init__(self, kafka: KafkaSettings, storage: StorageSettings, *, inline_max_bytes: int = 512 * 1024,
                 store: ObjectStore | None = None) -> None:
        self.kafka = kafka
        self.storage = storage
        self.inline_max_bytes = inline_max_bytes
        self._store = store
        self._producer: AIOKafkaProducer | None = None
        self._landing_checked = False

    async def __aenter__(self) -> "Producer":
        self._producer = AIOKafkaProducer(**client_options(self.kafka), acks="all",
                                          enable_idempotence=True, max_request_size=10 * 1024 * 1024,
                                          linger_ms=5)
        try:
            async with kafka_errors(self.kafka):
                await self._producer.start()
        except BaseException:
            await self._producer.stop()
            raise
        return self

    async def __aexit__(self, *exc) -> None:
        if self._producer is not None:
            await self._producer.stop()

    @property
    def store(self) -> ObjectStore:
        if self._store is None:
            self._store = ObjectStore.from_settings(self.storage)
        return self._store

    def _claim_check(self, call: Call, recording_id: str) -> AudioRef:
        if not self._landing_checked:  # residency before the first byte moves
            check_settings(self.storage)
            check_bucket(self.store.client, self.storage.landing_bucket, self.storage,
                         setting="CALLVAULT_STORAGE_LANDING_BUCKET")
            self._landing_checked = True
        key = f"{call.tenant}/{uuid.uuid4()}"  # never the number, never the telephony id verbatim
        self.store.put(self.storage.landing_bucket, key, call.audio)
        return AudioRef(bucket=self.storage.landing_bucket, key=key, size=len(call.audio),
                        sha256=hashlib.sha256(call.audio).hexdigest())

    def message_for(self, call: Call) -> RecordingMessage:
        recording_id = call.recording_id or f"cv-{uuid.uuid4()}"
        audio: bytes | AudioRef = call.audio
        if len(call.audio) > self.inline_max_bytes:
            audio = self._claim_check(call, recording_id)
        return build_message(recording_id=recording_id, tenant=call.tenant, started_at=call.started_at,
                             caller_number=call.caller_number, agent_id=call.agent_id, audio=audio,
                             audio_format=call.audio_format or guess_format(call.audio), direction=call.direction, team_id=call.team_id,
                             redactions=call.redactions)

    async def push(self, call: Call) -> str:
        """Send one call; returns the recording id once Kafka has acknowledged it."""
        msg = self.message_for(call)
        await self.send_raw(msg.recording_id.encode(), msg.to_bytes(), topic=self.kafka.topic_for(call.tenant))
        return msg.recording_id

    async def push_many(self, calls: Iterable[Call]) -> list[str]:
        pending, ids = [], []
        async with kafka_errors(self.kafka):
            for call in calls:
                msg = self.message_for(call)
                ids.append(msg.recording_id)
                pending.append(await self._producer.send(self.kafka.topic_for(call.tenant), msg.to_bytes(),
                                                         key=msg.recording_id.encode()))
            await asyncio.gather(*pending)
        return ids

    async def send_raw(self, key: bytes | None, value: bytes, *, topic: str | None = None) -> None:
        """Send bytes as they are (also how tests deliver malformed messages); default: the shared topic."""
        assert self._producer is not None, "use `async with Producer(...)`"
        async with kafka_errors(self.kafka):
            await self._producer.send_and_wait(topic or self.kafka.recordings_topic, value, key=key)


def push_call(call: Call, kafka: KafkaSettings, storage: StorageSettings, *, inline_max_bytes: int) -> str:
    async def run() -> str:
        async with Producer(kafka, storage, inline_max_bytes=inline_max_bytes) as producer:
            return await producer.push(call)

    return asyncio.run(run())
