"""The worker's dead-letter sender: a refused message goes to the dead-letter topic quarantined.

The record is never the message as it arrived: the original is encrypted under a quarantine
key of its own (``ingest.sealing``), kept in the catalog and filed under the caller's number
when the message says one, so an erasure of that number purges it. The headers carry the reason
code, a PII-free message and the tenant; a front door's push learns it was dead-lettered
(``ingest.pushes``). Reading and replaying dead letters: ``ingest.dlq``.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone

import faust

from . import metrics, pushes, sealing
from .exceptions import IngestErrorCode
from .landing import drop_refused_landing
from .runtime import WorkerRuntime
from .service import Subject, identify

log = logging.getLogger("callvault.ingest")


class DeadLetterSender:
    def __init__(self, runtime: WorkerRuntime, topic: faust.TopicT) -> None:
        self.runtime = runtime
        self.topic = topic

    async def send(self, event: faust.EventT, code: str, message: str, about: Subject | None = None) -> None:
        """Dead-letter ``event`` for reason ``code``; returns once Kafka has acknowledged it.
        ``about``: who it is about when the sender knows (default: read from the message)."""
        raw = event.value or b""  # a record with no value (a tombstone) is quarantined as empty
        if code == IngestErrorCode.CLAIM_CHECK_FAILED and await self.runtime.bookkeeping(self._settled, raw, about):
            # A redelivery (after a rebalance) of a pushed call this worker already settled: its
            # landing object went with the first refusal. That dead letter stands; no second one.
            log.info("claim check of an already settled push skipped partition=%s offset=%s",
                     event.message.partition, event.message.offset)
            return
        value, headers, subject = await self.runtime.bookkeeping(self._quarantine, raw, code, about)
        headers = {"callvault-reason": code.encode(), "callvault-error": message[:1000].encode(), **headers}
        await self.runtime.send(self.topic, key=event.key, value=value, headers=headers)
        # Refused: its landing object goes too, unless a replay may still need it (a tenant added
        # later, a bug of ours fixed); those expire with the landing bucket's lifecycle rule.
        await self.runtime.bookkeeping(self._drop_landing, subject, code)
        metrics.REJECTED.labels(code).inc()
        log.warning("dead-lettered partition=%s offset=%s reason=%s", event.message.partition,
                    event.message.offset, code)

    def _quarantine(self, raw: bytes, code: str, about: Subject | None) -> tuple[bytes, dict[str, bytes], Subject]:
        """The record and its headers: the original encrypted under a new quarantine key."""
        d = self.runtime.ready()
        subject = about or identify(raw, d)
        with d.engine.begin() as conn:
            now = datetime.now(timezone.utc)
            dl = d.quarantine.new(conn, reason=code, now=now, tenant=subject.tenant,
                                  number_hash=subject.number_hash, recording_id=subject.recording_id)
            pushes.settle(conn, subject.recording_id, "dead-lettered", reason=code, now=now)  # its status
        value = sealing.quarantine(subject.original or b"", dead_letter_id=dl.id, key=dl.key)  # a tombstone: b""
        headers = {"callvault-dead-letter": str(dl.id).encode()}
        if subject.tenant:
            headers["callvault-tenant"] = subject.tenant.encode()
        return value, headers, subject

    def _settled(self, raw: bytes, about: Subject | None) -> bool:
        d = self.runtime.ready()
        subject = about or identify(raw, d)
        if subject.recording_id is None:
            return False
        with d.engine.connect() as conn:
            pushed = pushes.find(conn, subject.recording_id)
        return pushed is not None and pushed.outcome is not None

    def _drop_landing(self, subject: Subject, code: str) -> None:
        drop_refused_landing(subject, code, self.runtime.ready())
