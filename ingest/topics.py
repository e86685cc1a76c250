"""Create callvault's Kafka topics if they are missing, and set their retention (idempotent).

Retention is set on each topic, never left to the broker's default: the recordings topic's
retention bounds how long an ingest key must live (``storage.transit``), the dead-letter topic's
is the quarantine's, and the events topic carries ids and facts only.
"""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from .kafka_client import client_options, kafka_errors
from .settings import KafkaSettings

HOUR_MS = 3600 * 1000


def topic_configs(kafka: KafkaSettings) -> dict[str, dict[str, str]]:
    """Topic name -> the configs callvault sets on it."""
    return {
        kafka.recordings_topic: {"retention.ms": str(int(kafka.recordings_retention_hours * HOUR_MS))},
        # Room for the largest message the recordings topic takes, plus the quarantine's framing.
        kafka.dlq_topic: {"retention.ms": str(int(kafka.dlq_retention_days * 24 * HOUR_MS)),
                          "max.message.bytes": "16777216"},
        kafka.events_topic: {"retention.ms": str(int(kafka.events_retention_days * 24 * HOUR_MS))},
        kafka.drop_topic: {"retention.ms": str(int(kafka.drop_retention_hours * HOUR_MS))},
    }


async def ensure_topics(kafka: KafkaSettings) -> list[str]:
    """Create the recordings, dead-letter and events topics, set every one's retention; return
    the names created."""
    admin = AIOKafkaAdminClient(**client_options(kafka))
    try:
        async with kafka_errors(kafka):
            await admin.start()
            configs = topic_configs(kafka)
            existing = set(await admin.list_topics())
            missing = [name for name in configs if name not in existing]
            if missing:
                await admin.create_topics([NewTopic(name, num_partitions=kafka.partitions, replication_factor=1,
                                                    topic_configs=configs[name]) for name in missing])
            # Per-tenant recordings topics keep messages as long as the shared one.
            configs |= {name: configs[kafka.recordings_topic] for name in existing if kafka.tenant_of(name)}
            present = [name for name in configs if name in existing]
            if present:
                await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, configs=configs[name])
                                           for name in present])
            return missing
    finally:
        await admin.close()
