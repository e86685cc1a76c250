"""Kafka and ingest settings (``CALLVAULT_KAFKA_*``)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from callvault.config import SectionSettings


class KafkaSettings(SectionSettings):
    model_config = SettingsConfigDict(env_prefix="CALLVAULT_KAFKA_")
    toml_section = "kafka"

    bootstrap_servers: str = Field("127.0.0.1:19092", description="Kafka bootstrap servers")
    recordings_topic: str = Field("callvault.recordings", description="Topic telephony pushes calls to")
    dlq_topic: str = Field("callvault.recordings.dlq", description="Rejected messages, with their reason")
    events_topic: str = Field("callvault.events", description="stored / duplicate / suppressed / expired events")
    partitions: int = Field(4, description="Partitions of the recordings topic (max useful workers)")


@lru_cache
def get_kafka_settings() -> KafkaSettings:
    return KafkaSettings()
