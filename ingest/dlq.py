"""Dead-letter operations: see why calls were refused, send them again once the cause is fixed.

The dead-letter topic keeps each refused message in quarantine (``ingest.sealing``): encrypted
under a key of its own that the catalog keeps, with its reason code, tenant and a PII-free error
in the headers (``ingest.worker``). Here it is read from the first offset to the current end
without a consumer group (nothing is committed, nothing moves for the worker):

- ``summary``: counts by reason and tenant (from the headers: no key needed), oldest first;
- ``show``: one dead letter released from quarantine (``release``: the catalog's key), the number
  masked and the audio reduced to its size; "purged" once its caller was erased or its
  quarantine's retention passed;
- ``replay``: the selected messages sent again to the recordings topic, sealed again to their
  tenant's current ingest key (``reseal``). Ingest is idempotent on the recording id, so a replay
  of a call already stored since is a ``duplicate``, never a second copy; a purged one is skipped;
- ``purge``: Kafka's DeleteRecords up to the first dead letter younger than a cutoff, per partition.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from core.phone import is_withheld, mask_number, normalise_number
from storage.crypto import DecryptionError

from . import sealing
from .kafka_client import client_options, kafka_errors
from .settings import KafkaSettings

Release = Callable[[uuid.UUID], bytes | None]  # dead letter id -> its quarantine key (None: purged)
Reseal = Callable[[bytes], bytes]               # a plain v1 message -> sealed to its tenant's key


@dataclass(frozen=True)
class DeadLetter:
    partition: int
    offset: int
    at: datetime
    key: bytes | None
    reason: str
    error: str
    value: bytes = field(repr=False)
    tenant_header: str | None = None
    original: bytes | None = field(default=None, repr=False)  # released from quarantine; None: not (yet)

    @property
    def quarantine_id(self) -> uuid.UUID | None:
        return sealing.quarantine_id(self.value)

    @property
    def purged(self) -> bool:
        """In quarantine, and its key is gone (caller erased, or past retention): unreadable."""
        return self.quarantine_id is not None and self.original is None

    @property
    def message(self) -> bytes | None:
        """The message as it arrived (a plain record of an older worker is its own message)."""
        return self.original if self.quarantine_id is not None else self.value

    @property
    def fields(self) -> dict:
        try:
            data = json.loads(self.message or b"")
        except (ValueError, UnicodeDecodeError, RecursionError):  # a hostile message nests deeper than the parser
            return {}
        return data if isinstance(data, dict) else {}

    @property
    def tenant(self) -> str:
        tenant = self.tenant_header or self.fields.get("tenant")
        return tenant if isinstance(tenant, str) and len(tenant) <= 64 else "?"

    def _recording_id(self, data: dict) -> str:
        """The Kafka key (the schema's recording_id); a producer that sent none: the message's own."""
        said = self.key.decode(errors="replace") if self.key else data.get("recording_id")
        return said[:200] if isinstance(said, str) else ""

    @property
    def position(self) -> str:
        return f"{self.partition}:{self.offset}"

    def masked(self) -> dict:
        """What an operator may see: ids, reason, error, a masked number, sizes; never audio."""
        data = self.fields
        number = data.get("caller_number")
        if not data:  # no JSON object: the number is not known, not withheld
            shown = "-"
        elif is_withheld(number):
            shown = "withheld"
        else:
            try:
                shown = mask_number(normalise_number(str(number)))
            except Exception:  # noqa: BLE001 - an invalid number is shown fully masked
                shown = mask_number("")
        audio = data.get("audio") if isinstance(data.get("audio"), dict) else {}
        inline = audio.get("inline")
        if self.purged:
            shown = "purged"
        elif data.get("schema") == sealing.SEALED_V1:
            shown = "sealed (its ingest key is gone)"
        return {"position": self.position, "at": self.at.isoformat(), "reason": self.reason, "error": self.error,
                "recording_id": self._recording_id(data), "tenant": self.tenant,
                "started_at": str(data.get("started_at", ""))[:40], "caller_number": shown,
                "audio": ("purged" if self.purged else f"inline, {len(inline) * 3 // 4} bytes"
                          if isinstance(inline, str) else "by reference" if audio.get("ref") else "none"),
                "message_bytes": len(self.value)}


async def read(kafka: KafkaSettings, release: Release | None = None) -> list[DeadLetter]:
    """Every dead letter now in the topic, oldest first (by time, then position); released from
    quarantine when ``release`` gives keys (counts by reason and tenant need none)."""
    partitions = await _partitions(kafka)
    if not partitions:
        return []
    consumer = AIOKafkaConsumer(**client_options(kafka), enable_auto_commit=False,
                                group_id=None, max_partition_fetch_bytes=20 * 1024 * 1024,
                                fetch_max_bytes=64 * 1024 * 1024)
    async with kafka_errors(kafka):
        await consumer.start()
    try:
        tps = [TopicPartition(kafka.dlq_topic, p) for p in partitions]
        consumer.assign(tps)
        starts, ends = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
        for tp in tps:  # explicit offsets: seek_to_beginning is lazy and a position() may race it
            consumer.seek(tp, starts[tp])
        out: list[DeadLetter] = []
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            batch = await consumer.getmany(timeout_ms=1000)
            for tp, records in batch.items():
                for r in records:
                    if r.offset >= ends[tp]:
                        continue
                    headers = {k: v.decode(errors="replace") for k, v in (r.headers or ())}
                    value = r.value or b""
                    out.append(DeadLetter(r.partition, r.offset, datetime.fromtimestamp(r.timestamp / 1000, timezone.utc),
                                          r.key, headers.get("callvault-reason", "?"),
                                          headers.get("callvault-error", ""), value,
                                          tenant_header=headers.get("callvault-tenant"),
                                          original=_released(value, release)))
        return sorted(out, key=lambda d: (d.at, d.partition, d.offset))
    finally:
        await consumer.stop()


def _released(value: bytes, release: Release | None) -> bytes | None:
    dead_letter_id = sealing.quarantine_id(value)
    if dead_letter_id is None or release is None:
        return None
    key = release(dead_letter_id)
    if key is None:
        return None
    try:
        return sealing.release(value, key=key)
    except (DecryptionError, ValueError, KeyError, TypeError):  # tampered or malformed: shown as unreadable
        return None


async def _partitions(kafka: KafkaSettings) -> list[int]:
    """The dead-letter topic's partitions; none when the topic does not exist yet."""
    admin = AIOKafkaAdminClient(**client_options(kafka))
    async with kafka_errors(kafka):
        await admin.start()
    try:
        if kafka.dlq_topic not in set(await admin.list_topics()):
            return []
        [described] = await admin.describe_topics([kafka.dlq_topic])
        return sorted(p["partition"] for p in described["partitions"])
    finally:
        await admin.close()


def summary(letters: list[DeadLetter]) -> list[tuple[str, str, int, datetime]]:
    """(reason, tenant, count, oldest) per reason and tenant, oldest group first."""
    counts = Counter((d.reason, d.tenant) for d in letters)
    oldest: dict[tuple[str, str], datetime] = {}
    for d in letters:
        oldest.setdefault((d.reason, d.tenant), d.at)
    return sorted(((r, tn, n, oldest[(r, tn)]) for (r, tn), n in counts.items()), key=lambda row: row[3])


def select(letters: list[DeadLetter], *, reason: str | None = None, tenant: str | None = None) -> list[DeadLetter]:
    return [d for d in letters if (reason is None or d.reason == reason) and (tenant is None or d.tenant == tenant)]


async def replay(kafka: KafkaSettings, letters: list[DeadLetter], reseal: Reseal | None = None) -> int:
    """Send the messages again to the recordings topic, sealed again (``reseal``) when they are
    plain; how many were sent. Purged ones (unreadable by design) are skipped.

    A ``tenant_mismatch`` is never replayed: on the shared topic its body's tenant would be
    believed, which is what the per-tenant topic refused."""
    letters = [d for d in letters if d.reason != "tenant_mismatch"]
    producer = AIOKafkaProducer(**client_options(kafka), acks="all", max_request_size=17 * 1024 * 1024)
    async with kafka_errors(kafka):
        await producer.start()
    try:
        sent = 0
        async with kafka_errors(kafka):
            for d in letters:
                message = d.message
                if message is None:
                    continue
                if reseal is not None and not sealing.is_sealed(message):
                    try:
                        message = reseal(message)
                    except Exception:  # noqa: BLE001 - not sealable (no tenant, tenant unknown): never sent in clear
                        continue
                await producer.send_and_wait(kafka.recordings_topic, message, key=d.key)
                sent += 1
    finally:
        await producer.stop()
    return sent


async def purge(kafka: KafkaSettings, letters: list[DeadLetter], *, older_than: datetime) -> int:
    """Delete, per partition, every dead letter before the first one at or after ``older_than``."""
    cut: dict[int, int] = {}
    for d in sorted(letters, key=lambda d: (d.partition, d.offset)):
        if d.at < older_than and cut.get(d.partition, d.offset) == d.offset:
            cut[d.partition] = d.offset + 1  # contiguous from the oldest: Kafka deletes a prefix
    if not cut:
        return 0
    admin = AIOKafkaAdminClient(**client_options(kafka))
    async with kafka_errors(kafka):
        await admin.start()
    try:
        await admin.delete_records({TopicPartition(kafka.dlq_topic, p): RecordsToDelete(before_offset=o)
                                    for p, o in cut.items()})
    finally:
        await admin.close()
    first = {p: min(d.offset for d in letters if d.partition == p) for p in cut}
    return sum(o - first[p] for p, o in cut.items())
