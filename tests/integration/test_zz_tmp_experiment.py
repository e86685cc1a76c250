# TEMPORARY experiment file (deleted after use)
import asyncio, time, signal
from datetime import timedelta
import sqlalchemy as sa
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from ingest.producer import Call
from storage.catalog import tables as t
from tests.audio_fixtures import sine_wav
from tests.integration.test_ingest_durability import (FAST_FAILOVER, NOW, _committed_offset, read_outputs,
                                                       _send_to_partition)

async def alter(pipeline, value):
    admin = AIOKafkaAdminClient(bootstrap_servers=pipeline.kafka.bootstrap_servers)
    await admin.start()
    try:
        if pipeline.kafka.events_topic not in await admin.list_topics():
            from aiokafka.admin import NewTopic
            await admin.create_topics([NewTopic(pipeline.kafka.events_topic, 4, 1)])
        r = await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, pipeline.kafka.events_topic,
                                                      {"max.message.bytes": value})])
        print("alter", r)
    finally:
        await admin.close()

def test_event_send_failure(pipeline):
    pipeline.stop_worker()
    pipeline.env.update(FAST_FAILOVER)
    pipeline.start_worker()
    time.sleep(8)
    asyncio.run(alter(pipeline, "64"))
    time.sleep(2)
    c = lambda i: Call(audio=sine_wav(1.0, freqs=(300.0 + 5 * i,)), tenant="acme", agent_id="a",
                       caller_number="0622222222", started_at=NOW - timedelta(minutes=30), recording_id=f"x-{i}")
    _send_to_partition(pipeline, [c(0), c(1), c(2)], 0)
    time.sleep(10)
    print("rows", pipeline.count(t.recordings), "committed p0", asyncio.run(_committed_offset(pipeline, 0)))
    print(pipeline.worker_log()[-3000:])
    asyncio.run(alter(pipeline, "1048588"))
    time.sleep(10)
    print("after restore: rows", pipeline.count(t.recordings), "committed p0", asyncio.run(_committed_offset(pipeline, 0)))
    print([ (e["type"], e["external_id"]) for e in read_outputs(pipeline)])
    pipeline.stop_worker(sig=9)
    pipeline.start_worker()
    time.sleep(20)
    print("after restart: committed p0", asyncio.run(_committed_offset(pipeline, 0)))
    print([ (e["type"], e["external_id"]) for e in read_outputs(pipeline)])
    print(pipeline.worker_log()[-1500:])
