"""Kafka and ingest settings (``CALLVAULT_KAFKA_*``)."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

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
    recordings_retention_hours: float = Field(72.0, gt=0, description=(
        "How long the recordings topic keeps messages (set on the topic, not left to the broker's default); "
        "ingest private keys are destroyed a day after this has passed for their last message"))
    dlq_retention_days: float = Field(7.0, gt=0, description=(
        "How long a dead letter stays: the dead-letter topic's retention and its quarantine key's"))
    events_retention_days: float = Field(7.0, gt=0, description="Retention of the events topic (ids and facts only)")


@lru_cache
def get_kafka_settings() -> KafkaSettings:
    return KafkaSettings()


class IngestSettings(SectionSettings):
    model_config = SettingsConfigDict(env_prefix="CALLVAULT_INGEST_")
    toml_section = "ingest"

    app_id: str = Field("callvault-ingest", description="Kafka consumer group of the workers")
    concurrency: int = Field(4, description="Calls processed at once per worker")
    storage_format: Literal["opus", "flac", "passthrough"] = Field("opus", description=(
        "Stored audio format: Ogg/Opus, FLAC, or passthrough (a PCM/A-law/µ-law WAV is kept in its own codec, "
        "spans silenced, no transcoding; other inputs become Opus)"))
    inline_max_bytes: int = Field(512 * 1024, description="Larger audio goes by claim check via the landing bucket")
    max_retries_unknown_error: int = Field(3, description="Attempts before an unexpected error dead-letters a call")
    max_crash_attempts: int = Field(3, ge=1, description=(
        "Deliveries of one message that ended with the worker killed (out of memory, SIGKILL) before it is "
        "dead-lettered as worker_crash; counted in the catalog, across restarts and workers"))
    sweep_interval_seconds: float = Field(300.0, description="How often the worker runs the lifecycle sweep (0: never)")
    web_port: int = Field(6066, description="Worker's faust web port (health); 0 disables it")
    metrics_port: int = Field(9466, description="Prometheus metrics port of the worker; 0 disables it")
    metrics_host: str = Field("127.0.0.1", description="Address the metrics port listens on (0.0.0.0 in a container)")
    max_audio_bytes: int = Field(512 * 1024 * 1024, description="Audio larger than this is dead-lettered")
    max_duration_seconds: int = Field(4 * 3600, description="Calls longer than this are dead-lettered")
    max_clock_skew_seconds: int = Field(300, description="A call starting further in the future is refused")
    default_region: str = Field("FR", description="Country assumed for numbers written without +country code")
    ingest_key_hours: float = Field(24.0, gt=0, description=(
        "How long producers seal messages to one ingest key of a tenant before the next one is made"))
    require_sealed: bool = Field(False, description=(
        "Dead-letter (unreadable_seal) any message not sealed to an ingest key; callvault's own producers always "
        "seal, so turn this on once every producer of yours does"))


@lru_cache
def get_ingest_settings() -> IngestSettings:
    return IngestSettings()
