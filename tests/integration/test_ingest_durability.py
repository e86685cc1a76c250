"""Durability of the ingest worker (issue 4, item 6): a member of a two-worker consumer group
SIGKILLed under load loses nothing and stores nothing twice. (A lone worker SIGKILLed while 500
calls are ingested is in the fault suite, ``faults/test_faults.py``; both use the batch, the
watching and the invariants of ``tests.support.durability``.)

The tests run real `callvault worker` processes against the real Kafka, MinIO and PostgreSQL.
After the crash they wait until the consumer group has committed the end of the recordings
topic and every call has an outcome, then check the invariants of "stored exactly once":

- one ``recordings`` row and one ``copies`` row per call, and nothing else;
- the recordings bucket holds exactly the copies' object keys (latest versions), no version of
  any other key, and ``storage reconcile`` finds no orphan object and no dangling row;
- every copy decrypts, and its duration is the call's;
- nothing was dead-lettered and the landing bucket is empty (claim checks cleaned up);
- per call, the events are exactly one ``stored`` then, after a redelivery, only ``duplicate``.

A call whose only event is ``duplicate`` is accepted when that event repeats the stored copy
(the worker died between the catalog commit and Kafka's acknowledgement of ``stored``).
Two more tests reproduce, deterministically, the losses found while writing these: a call in
flight overtaken by committed later ones, and an event or dead letter whose send failed.

Kafka notices a SIGKILLed member only when its session times out (faust's
``broker_session_timeout``, 60 s by default, which a restarted worker and a takeover both wait
for). The workers here get ``BROKER_SESSION_TIMEOUT`` (an
environment variable faust itself reads) set lower so each test stays well under two minutes;
the behaviour checked does not depend on its value.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from ingest.producer import Call
from storage.catalog import tables as t
from testbed.audio import pcm_to_wav, sine_pcm, sine_wav
from testbed.pipeline import Pipeline
from tests.support.durability import (FAST_FAILOVER, NOW, Batch, assert_stored_exactly_once, check_alive,
                                      group_assignments, group_lag, log_tail, make_batch, read_outputs,
                                      wait_for_stored, wait_until_done)

pytestmark = pytest.mark.integration


# -- the tests ------------------------------------------------------------------------------------
def _start_extra_worker(pipeline: Pipeline, log_path: Path) -> subprocess.Popen:
    """A second `callvault worker` with the same settings, hence in the same consumer group."""
    with log_path.open("ab") as log:
        return subprocess.Popen([sys.executable, "-m", "callvault.cli", "worker", "-l", "info"],
                                env=pipeline.env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)


def test_two_workers_in_one_group_lose_nothing_when_one_dies(pipeline, tmp_path):
    batch = make_batch(80, "pair")
    pipeline.stop_worker()  # the fixture's worker, restarted with faster failure detection
    pipeline.env.update(FAST_FAILOVER)
    pipeline.start_worker()
    extra_log = tmp_path / "worker-2.log"
    extra = _start_extra_worker(pipeline, extra_log)
    try:
        workers = {"worker": (pipeline.process, pipeline.log_path), "worker-2": (extra, extra_log)}
        started = time.monotonic()
        # Both members hold recordings partitions before a single call is pushed.
        deadline = time.monotonic() + 90
        while True:
            check_alive(workers)
            state, assigned = asyncio.run(group_assignments(pipeline))
            if (state == "Stable" and len(assigned) == 2 and all(assigned)
                    and set().union(*assigned) == set(range(pipeline.kafka.partitions))):
                break
            assert time.monotonic() < deadline, f"group never balanced over two workers: {state} {assigned}"
            time.sleep(0.5)
        joined = time.monotonic()

        pipeline.push(*batch.calls)
        wait_for_stored(pipeline, 10, workers)
        # Kill the second worker once it has stored calls of its own (and committed some), so it
        # dies owning partitions with calls done, calls in flight and calls not yet read.
        deadline = time.monotonic() + 30
        while extra_log.read_text(errors="replace").count("stored recording=") < 3:
            assert time.monotonic() < deadline, f"worker-2 stored too little:\n{log_tail(extra_log)}"
            time.sleep(0.1)
        _kill(extra)
        killed = time.monotonic()
        rows_at_kill = pipeline.count(t.recordings)
        assert rows_at_kill < len(batch.calls), "the calls were all stored before the kill"

        outputs = wait_until_done(pipeline, batch, {"worker": (pipeline.process, pipeline.log_path)})
        done = time.monotonic()
        state, assigned = asyncio.run(group_assignments(pipeline))
        assert len(assigned) == 1 and assigned[0] == set(range(pipeline.kafka.partitions))  # survivor has all
        counts = assert_stored_exactly_once(pipeline, batch, outputs)
        survivor_log = pipeline.log_path.read_text(errors="replace")
        print(f"\ngroup balanced in {joined - started:.1f}s; worker-2 SIGKILLed with {rows_at_kill} rows "
              f"committed; survivor done {done - killed:.1f}s later; {counts}; survivor stored "
              f"{survivor_log.count('stored recording=')}, worker-2 stored "
              f"{extra_log.read_text(errors='replace').count('stored recording=')}")
    finally:
        _kill(extra)



# -- a known loss: faust commits past a call still in flight ------------------------------------
async def _committed_offset(pipeline: Pipeline, partition: int) -> int | None:
    admin = AIOKafkaAdminClient(bootstrap_servers=pipeline.kafka.bootstrap_servers)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(pipeline.env["CALLVAULT_INGEST_APP_ID"])
        meta = committed.get(TopicPartition(pipeline.kafka.recordings_topic, partition))
        return meta.offset if meta is not None and meta.offset >= 0 else None
    finally:
        await admin.close()


def _send_to_partition(pipeline: Pipeline, calls: list[Call], partition: int) -> None:
    """Push calls (claim checks uploaded as by `callvault push`) onto one partition, in order."""
    from aiokafka import AIOKafkaProducer

    from ingest.producer import Producer

    async def run() -> None:
        async with Producer(pipeline.kafka, pipeline.storage, inline_max_bytes=pipeline.inline_max_bytes,
                            seal_keys=pipeline.seal_keys) as p:
            messages = [p.message_for(c) for c in calls]
        producer = AIOKafkaProducer(bootstrap_servers=pipeline.kafka.bootstrap_servers, acks="all",
                                    enable_idempotence=True, max_request_size=10 * 1024 * 1024)
        await producer.start()
        try:
            for m in messages:
                await producer.send_and_wait(pipeline.kafka.recordings_topic, m.to_bytes(),
                                             key=m.recording_id.encode(), partition=partition)
        finally:
            await producer.stop()
    asyncio.run(run())


def test_a_long_call_in_flight_is_not_lost_when_later_calls_are_committed_first(pipeline):
    """Deterministic: one long call then twelve short ones on one partition. The short ones are
    stored (and, today, committed) while the long one is still being encoded; SIGKILL; restart:
    every call must be stored. Today the long one never is: the group had committed past it."""
    pipeline.stop_worker()
    pipeline.env.update(FAST_FAILOVER)
    pipeline.start_worker()
    workers = lambda: {"worker": (pipeline.process, pipeline.log_path)}  # noqa: E731
    short = lambda i: Call(audio=sine_wav(1.0, freqs=(300.0 + 5 * i,)), tenant="acme",  # noqa: E731
                           agent_id="agent-1", caller_number=f"06 22 22 22 {i:02d}",
                           started_at=NOW - timedelta(minutes=30), recording_id=f"short-{i:02d}")
    # Warm-up: partition 0 has a committed offset (2) first, so the off-by-one path is the one taken.
    _send_to_partition(pipeline, [short(0), short(1)], 0)
    wait_for_stored(pipeline, 2, workers())
    deadline = time.monotonic() + 20
    while asyncio.run(_committed_offset(pipeline, 0)) != 2:
        assert time.monotonic() < deadline, "the warm-up calls were never committed"
        time.sleep(0.2)

    long_call = Call(audio=pcm_to_wav(sine_pcm(1.0) * 900), tenant="acme", agent_id="agent-1",  # 15 minutes
                     caller_number="06 11 11 11 11", started_at=NOW - timedelta(minutes=30), recording_id="long")
    _send_to_partition(pipeline, [long_call, *[short(i) for i in range(2, 14)]], 0)  # offsets 2, 3..14
    wait_for_stored(pipeline, 14, workers())
    deadline = time.monotonic() + 5  # let the 1 s commit timer run (today it commits 15)
    while (committed := asyncio.run(_committed_offset(pipeline, 0))) != 15 and time.monotonic() < deadline:
        time.sleep(0.2)
    with pipeline.engine.connect() as conn:
        long_stored = conn.execute(sa.select(t.recordings.c.id).where(
            t.recordings.c.external_id == "long")).first() is not None
    pipeline.stop_worker(sig=signal.SIGKILL)
    print(f"\nat the kill: long call stored={long_stored}, committed offset of partition 0={committed}")

    pipeline.start_worker()
    batch = Batch([], {"long": 900_000, **{f"short-{i:02d}": 1000 for i in range(14)}})
    wait_until_done(pipeline, batch, workers(), timeout=90)


async def _set_max_message_bytes(pipeline: Pipeline, topics: list[str], value: int | None) -> None:
    """Set (or, with None, reset to the broker default) ``max.message.bytes`` of topics."""
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = AIOKafkaAdminClient(bootstrap_servers=pipeline.kafka.bootstrap_servers)
    await admin.start()
    try:
        configs = {"max.message.bytes": str(value if value is not None else 1048588)}
        responses = await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, configs)
                                               for name in topics])
        for response in responses:
            assert all(r[0] == 0 for r in response.resources), response
    finally:
        await admin.close()


def test_a_failed_event_or_dead_letter_send_is_retried_not_dropped(pipeline):
    """Deterministic: the events and DLQ topics refuse every record for a while (max.message.bytes
    64), as a broker outage or a too-large record would; once they accept again, the stored
    call's `stored` event and the bad message's dead-letter record must still come."""
    pipeline.stop_worker()
    pipeline.env.update(FAST_FAILOVER)
    pipeline.start_worker()
    workers = {"worker": (pipeline.process, pipeline.log_path)}
    deadline = time.monotonic() + 60
    while "[^Worker]: Ready" not in pipeline.log_path.read_text(errors="replace"):  # topics declared
        check_alive(workers)
        assert time.monotonic() < deadline, f"worker not ready:\n{log_tail(pipeline.log_path)}"
        time.sleep(0.3)
    time.sleep(1.0)
    outputs_topics = [pipeline.kafka.events_topic, pipeline.kafka.dlq_topic]
    asyncio.run(_set_max_message_bytes(pipeline, outputs_topics, 64))
    try:
        pipeline.push(Call(audio=sine_wav(1.0), tenant="acme", agent_id="agent-1", caller_number="0633333333",
                           started_at=NOW - timedelta(minutes=30), recording_id="good"))
        pipeline.push_raw((b"bad", b"\x00 not json, and longer than the 64 bytes the topics accept now ....."))
        deadline = time.monotonic() + 30
        while pipeline.count(t.recordings) < 1:  # the call is in the catalog; its event cannot be sent
            assert time.monotonic() < deadline, f"call not stored:\n{log_tail(pipeline.log_path)}"
            time.sleep(0.3)
        time.sleep(5.0)  # the sends fail (and, today, both messages are committed meanwhile)
    finally:
        asyncio.run(_set_max_message_bytes(pipeline, outputs_topics, None))
    restored = time.monotonic()
    while True:
        check_alive(workers)
        outputs = read_outputs(pipeline)
        kinds = sorted((e["type"], e.get("external_id") or e.get("reason")) for e in outputs)
        if ("stored", "good") in kinds and ("dead-letter", "invalid_message") in kinds:
            break
        lag, waited = asyncio.run(group_lag(pipeline)), time.monotonic() - restored
        assert not (lag == 0 and waited > 10), (
            f"outcomes still missing ({kinds}) {waited:.0f}s after the topics accept records again, and both "
            f"messages are committed: nothing will ever send them\n{log_tail(pipeline.log_path)}")
        assert waited < 40, f"outcomes never sent: {kinds} (lag {lag})\n{log_tail(pipeline.log_path)}"
        time.sleep(1.0)
