"""A worker keeps running, and keeps every call, through rebalance after rebalance: a per-tenant
topic appearing while it runs, and a rebalance overtaking the seek that follows the last one."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from ingest.producer import Call
from testbed.audio import sine_wav
from testbed.pipeline import create_topics

pytestmark = pytest.mark.integration


def test_every_call_is_stored_once_through_a_storm_of_rebalances(pipeline):
    rng = random.Random(7)
    audio = sine_wav(1.0)
    started = datetime.now(timezone.utc) - timedelta(minutes=5)
    sent = []
    for i in range(20):  # each new per-tenant topic is one more resubscription, so one more rebalance
        asyncio.run(create_topics(pipeline.kafka.bootstrap_servers,
                                  [f"{pipeline.kafka.tenant_topic_prefix}t{i}.recordings"], 2))
        sent += pipeline.push(Call(audio=audio, tenant="acme", agent_id="a7", caller_number="0612345678",
                                   started_at=started, recording_id=f"storm-{i}"))
        time.sleep(rng.uniform(0.05, 0.9))
        assert pipeline.process.poll() is None, pipeline.worker_log()
    events = pipeline.wait_for(lambda e: e.get("type") == "stored", count=len(sent), timeout=120)
    assert sorted(e["external_id"] for e in events) == sorted(sent)
    log = pipeline.log_path.read_text(errors="replace")
    assert log.count("Seek stream partitions to committed offsets") >= 3  # the storm did rebalance it (start, then the topics, in batches)


def run_overtaken_app(kafka_bootstrap: str, topic: str, tmp_path: Path, **env: str) -> tuple[int, str, Path]:
    out = tmp_path / "consumed"
    env = {**os.environ, "SMOKE_BROKER": kafka_bootstrap, "SMOKE_TOPIC": topic, "SMOKE_SECOND": f"{topic}-second",
           "SMOKE_OUT": str(out), "SMOKE_DATADIR": str(tmp_path / "faust"), **env}

    async def produce() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        await admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)
                                   for name in (topic, f"{topic}-second")])
        await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        for key, value in ((b"k0", b"consumed-before"), (b"k1", b"after-the-rebalance")):
            await producer.send_and_wait(topic, value, key=key)
        await producer.stop()
        # The group has consumed the first already: its seek has an offset to go to.
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, group_id=f"rebalance-{topic}",
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        await consumer.getone()
        await consumer.commit()
        await consumer.stop()

    asyncio.run(produce())
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("faust_rebalance_app.py")), "worker",
                             "-l", "info"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        output, _ = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
    return proc.returncode, output.decode(errors="replace")[-4000:], out


def test_a_rebalance_overtaking_the_seek_to_committed_offsets_is_waited_for(kafka_bootstrap, scratch_topic, tmp_path):
    status, output, out = run_overtaken_app(kafka_bootstrap, scratch_topic, tmp_path)
    assert Path(f"{out}.overtaken").exists(), output  # the seek was overtaken indeed
    assert out.exists(), output  # and the app went on to consume, after the new assignment
    assert out.read_bytes() == b"k1=after-the-rebalance" and status == 0
