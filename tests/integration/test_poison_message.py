"""A message that kills the worker process cannot stall its partition (issue 14): after
``max_crash_attempts`` deliveries that ended with the worker SIGKILLed, it is dead-lettered
as ``worker_crash`` and the calls behind it on the same partition are stored."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone

import pytest
from aiokafka import AIOKafkaProducer

from ingest.schema import build_message
from storage.catalog import tables as t
from testbed.audio import sine_wav

pytestmark = pytest.mark.integration
BEHIND = 50


def _messages(now: datetime) -> list[tuple[bytes, bytes]]:
    return [(rid.encode(), build_message(recording_id=rid, tenant="acme", started_at=now - timedelta(minutes=1),
                                         caller_number="+33612345678", agent_id="a1",
                                         audio=sine_wav(0.3)).to_bytes())
            for rid in ["poison", *(f"behind-{i:02d}" for i in range(BEHIND))]]


def test_a_message_that_kills_the_worker_is_dead_lettered_and_the_partition_goes_on(pipeline) -> None:
    pipeline.stop_worker()
    pipeline.env["CALLVAULT_FAULT_KILL_ON_KEY"] = "poison"

    async def produce() -> None:  # all on partition 0, the poison message first
        producer = AIOKafkaProducer(bootstrap_servers=pipeline.kafka.bootstrap_servers, acks="all")
        await producer.start()
        try:
            for key, value in _messages(datetime.now(timezone.utc)):
                await producer.send_and_wait(pipeline.kafka.recordings_topic, value, key=key, partition=0)
        finally:
            await producer.stop()

    asyncio.run(produce())
    restarts = 0
    deadline = time.monotonic() + 240
    pipeline.start_worker()
    while pipeline.count(t.recordings) < BEHIND and time.monotonic() < deadline:
        if pipeline.process.poll() is not None:  # killed by the poison message: a supervisor restarts it
            restarts += 1
            pipeline.start_worker()
        time.sleep(0.5)
    assert pipeline.count(t.recordings) == BEHIND, pipeline.worker_log()
    [dead] = pipeline.wait_for(lambda e: e.get("type") == "dead-letter", count=1)
    assert (dead["key"], dead["reason"]) == (b"poison", "worker_crash")
    assert restarts == 3  # max_crash_attempts: killed three times, dead-lettered at the fourth delivery
    assert pipeline.count(t.ingest_attempts) == 0
