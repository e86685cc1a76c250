"""Create callvault's Kafka topics if they are missing (idempotent)."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from .kafka_client import client_options, kafka_errors
from .settings import KafkaSettings


async def ensure_topics(kafka: KafkaSettings) -> list[str]:
    """Create the recordings, dead-letter and events topics; return the names created."""
    admin = AIOKafkaAdminClient(**client_options(kafka))
    try:
        async with kafka_errors(kafka):
            await admin.start()
            existing = set(await admin.list_topics())
            wanted = [kafka.recordings_topic, kafka.dlq_topic, kafka.events_topic]
            missing = [name for name in wanted if name not in existing]
            if missing:
                await admin.create_topics([NewTopic(name, num_partitions=kafka.partitions, replication_factor=1)
                                           for name in missing])
            return missing
    finally:
        await admin.close()
