"""The telephony side: push a finished call onto ``callvault.recordings``, or with
``CALLVAULT_KAFKA_PER_TENANT_TOPICS`` onto its tenant's own topic (the only one its SASL
principal may write: ``callvault kafka grant-telephony``).

Small audio travels inline (base64 in the message). Larger audio is uploaded first to the
EU landing bucket, under the tenant's prefix, and the message carries a claim check (bucket,
key, size, SHA-256), so Kafka messages stay far below the broker's size limit. The landing
bucket is checked for residency before the upload; its lifecycle rule expires stragglers
within a day.

Nothing leaves readable (``ingest.sealing``): the landing object is encrypted under a fresh
content key, and the whole message (number, inline audio, content key) is sealed to the
tenant's current ingest key, which ``seal_keys`` gives (by default from the catalog).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable, Iterator

from aiokafka import AIOKafkaProducer

from storage.objectstore import ObjectStore
from storage.residency import check_bucket, check_settings
from storage.settings import StorageSettings
from storage.transit import PublicIngestKey

from . import sealing
from .exceptions import FieldError, InvalidMessage
from .kafka_client import client_options, kafka_errors
from .schema import EARLIEST_START, AudioRef, RecordingMessage, build_message, guess_format
from .settings import KafkaSettings

SealKeys = Callable[[str], PublicIngestKey]  # tenant -> the ingest key to seal to now
KEY_CACHE_SECONDS = 60.0
# Marks callvault's own (encrypted) landing objects: the S3 drop's notification skips them.
LANDING_METADATA = {"callvault-landing": "sealed-v1"}


def catalog_seal_keys(engine, storage: StorageSettings, *, lifetime_hours: float | None = None,
                      kafka: KafkaSettings | None = None) -> SealKeys:
    """Ingest keys straight from the catalog (made on first use): for producers running where
    callvault runs (`callvault push`, the HTTP front door, tests)."""
    from storage.keys import KeyRing

    from .service import ingest_keys_for
    from .settings import IngestSettings

    settings = IngestSettings() if lifetime_hours is None else IngestSettings(ingest_key_hours=lifetime_hours)
    keys = ingest_keys_for(KeyRing.from_settings(storage), settings, kafka or KafkaSettings())

    def current(tenant: str) -> PublicIngestKey:
        with engine.begin() as conn:
            return keys.current(conn, tenant, now=datetime.now(timezone.utc))
    return current


def resealer(seal_keys: SealKeys) -> Callable[[bytes], bytes]:
    """Seal a plain v1 message again to its tenant's current key (a dead letter replayed)."""
    import json

    def reseal(message: bytes) -> bytes:
        tenant = json.loads(message).get("tenant")
        if not isinstance(tenant, str):
            raise ValueError("a message without a tenant cannot be sealed")
        return sealing.seal(message, seal_keys(tenant))
    return reseal


def default_seal_keys(storage: StorageSettings, kafka: KafkaSettings) -> SealKeys:
    from storage.catalog.db import make_engine
    from storage.settings import get_catalog_settings

    return catalog_seal_keys(make_engine(get_catalog_settings().url), storage, kafka=kafka)


def new_recording_id() -> str:
    """A telephony id for a call pushed without one."""
    return f"cv-{uuid.uuid4()}"


def check_start(started_at: datetime, *, now: datetime, max_ahead: timedelta) -> None:
    """Refuse, before anything is sent, a start the worker would dead-letter: before 2000 (a reset
    clock) or further in the future than the worker's clock-skew tolerance."""
    if started_at < EARLIEST_START:
        raise InvalidMessage(f"the call's start {started_at.isoformat()} is before 2000: a reset clock, not a call",
                             errors=[FieldError(("started_at",), "too_early")],
                             hint="give the time the call really started")
    if started_at > now + max_ahead:
        ahead = started_at - now
        raise InvalidMessage(f"the call's start {started_at.isoformat()} is {_span(ahead)} ahead of now (the worker "
                             f"accepts {_span(max_ahead)} of clock skew)",
                             errors=[FieldError(("started_at",), "in_future")],
                             hint="check its date and its UTC offset")


def _span(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


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
                 store: ObjectStore | None = None, seal_keys: SealKeys | None = None) -> None:
        self.kafka = kafka
        self.storage = storage
        self.inline_max_bytes = inline_max_bytes
        self._store = store
        self._producer: AIOKafkaProducer | None = None
        self._landing_checked = False
        self._seal_keys = seal_keys
        self._key_cache: dict[str, tuple[float, PublicIngestKey]] = {}

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

    def seal_key(self, tenant: str) -> PublicIngestKey:
        """The tenant's ingest key, asked again at most once a minute (keys live a day)."""
        cached = self._key_cache.get(tenant)
        if cached is None or time.monotonic() - cached[0] > KEY_CACHE_SECONDS:
            if self._seal_keys is None:
                self._seal_keys = default_seal_keys(self.storage, self.kafka)
            cached = (time.monotonic(), self._seal_keys(tenant))
            self._key_cache[tenant] = cached
        return cached[1]

    def _check_landing(self) -> None:
        if not self._landing_checked:  # residency before the first byte moves
            check_settings(self.storage)
            check_bucket(self.store.client, self.storage.landing_bucket, self.storage,
                         setting="CALLVAULT_STORAGE_LANDING_BUCKET")
            self._landing_checked = True

    def land(self, tenant: str, chunks: Iterable[bytes], length: int) -> AudioRef:
        """Stream ``length`` bytes of audio into the landing bucket, encrypted under a fresh
        content key (one chunk in memory at a time); the claim check names it. A stream longer
        or shorter than ``length`` raises ValueError and leaves no object."""
        self._check_landing()
        key = f"{tenant}/{uuid.uuid4()}"  # never the number, never the telephony id verbatim
        plain, cipher, size = hashlib.sha256(), hashlib.sha256(), 0

        def hashed(source: Iterable[bytes], digest) -> Iterator[bytes]:
            nonlocal size
            for chunk in source:
                digest.update(chunk)
                if digest is cipher:
                    size += len(chunk)
                yield chunk

        content_key, encrypted = sealing.encrypt_landing(hashed(chunks, plain), tenant=tenant, key=key, length=length)
        self.store.put(self.storage.landing_bucket, key, hashed(encrypted, cipher), metadata=LANDING_METADATA)
        return AudioRef(bucket=self.storage.landing_bucket, key=key, size=size, sha256=cipher.hexdigest(),
                        content_key=content_key, plain_sha256=plain.hexdigest())

    def _claim_check(self, call: Call) -> AudioRef:
        return self.land(call.tenant, [call.audio], len(call.audio))

    def sealed(self, msg: RecordingMessage) -> bytes:
        """What goes on the topic: the message sealed to its tenant's ingest key."""
        return sealing.seal(msg.to_bytes(), self.seal_key(msg.tenant))

    def message_for(self, call: Call) -> RecordingMessage:
        recording_id = call.recording_id or new_recording_id()
        audio: bytes | AudioRef = call.audio
        if len(call.audio) > self.inline_max_bytes:
            audio = self._claim_check(call)
        return build_message(recording_id=recording_id, tenant=call.tenant, started_at=call.started_at,
                             caller_number=call.caller_number, agent_id=call.agent_id, audio=audio,
                             audio_format=call.audio_format or guess_format(call.audio), direction=call.direction, team_id=call.team_id,
                             redactions=call.redactions)

    async def push(self, call: Call) -> str:
        """Send one call; returns the recording id once Kafka has acknowledged it."""
        msg = self.message_for(call)
        await self.send_raw(msg.recording_id.encode(), self.sealed(msg), topic=self.kafka.topic_for(call.tenant))
        return msg.recording_id

    async def push_many(self, calls: Iterable[Call]) -> list[str]:
        pending, ids = [], []
        async with kafka_errors(self.kafka):
            for call in calls:
                msg = self.message_for(call)
                ids.append(msg.recording_id)
                pending.append(await self._producer.send(self.kafka.topic_for(call.tenant), self.sealed(msg),
                                                         key=msg.recording_id.encode()))
            await asyncio.gather(*pending)
        return ids

    async def send(self, msg: RecordingMessage, *, topic: str | None = None) -> None:
        """Seal one message and send it (default: where ``topic_for`` its tenant says)."""
        await self.send_raw(msg.recording_id.encode(), self.sealed(msg), topic=topic or self.kafka.topic_for(msg.tenant))

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
