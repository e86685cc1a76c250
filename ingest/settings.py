"""Kafka and ingest settings (``CALLVAULT_KAFKA_*``)."""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from core.config import SectionSettings


class KafkaSettings(SectionSettings):
    model_config = SettingsConfigDict(env_prefix="CALLVAULT_KAFKA_")
    toml_section = "kafka"

    bootstrap_servers: str = Field("127.0.0.1:19092", description="Kafka bootstrap servers")
    recordings_topic: str = Field("callvault.recordings", description="Topic telephony pushes calls to")
    dlq_topic: str = Field("callvault.recordings.dlq", description="Rejected messages, with their reason")
    events_topic: str = Field("callvault.events", description="stored / duplicate / suppressed / expired events")
    drop_topic: str = Field("callvault.landing.events", description=(
        "Where the object store announces objects dropped into the landing bucket (MinIO's Kafka notification "
        "target; on AWS, a bridge from S3 event notifications); the worker ingests them"))
    drop_retention_hours: float = Field(24.0, gt=0, description=(
        "Retention of the drop topic: its events name objects (and carry their x-amz-meta-* fields), never audio"))
    partitions: int = Field(4, description="Partitions of the recordings topic (max useful workers)")
    recordings_retention_hours: float = Field(72.0, gt=0, description=(
        "How long the recordings topic keeps messages (set on the topic, not left to the broker's default); "
        "ingest private keys are destroyed a day after this has passed for their last message"))
    dlq_retention_days: float = Field(7.0, gt=0, description=(
        "How long a dead letter stays: the dead-letter topic's retention and its quarantine key's"))
    events_retention_days: float = Field(7.0, gt=0, description="Retention of the events topic (ids and facts only)")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_SSL"] = Field("PLAINTEXT", description=(
        "PLAINTEXT (the embedded demo, loopback only), SSL (TLS, optionally mutual) or SASL_SSL (TLS + SCRAM)"))
    sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256"] = Field("SCRAM-SHA-512", description=(
        "SASL mechanism with SASL_SSL"))
    sasl_username: str | None = Field(None, description="SASL principal (the worker's, or a telephony-<tenant> one)")
    drop_principal: str = Field("callvault-minio", description=(
        "SASL principal the object store publishes drop events as (WRITE on the drop topic only)"))
    sasl_password: SecretStr | None = Field(None, description=(
        "SASL password: from the environment or a secret store, never in the repository"))
    ssl_cafile: Path | None = Field(None, description=(
        "CA bundle (PEM) that signed the broker certificates; unset: the system CAs"))
    ssl_certfile: Path | None = Field(None, description="Client certificate (PEM), for mutual TLS")
    ssl_keyfile: Path | None = Field(None, description="Client private key (PEM), for mutual TLS")
    per_tenant_topics: bool = Field(False, description=(
        "Producers send each call to its tenant's topic (callvault.tenant.<tenant>.recordings), which only that "
        "tenant's telephony principal may write; the worker reads those and the shared topic either way"))
    tenant_topic_prefix: str = Field("callvault.tenant.", description=(
        "Per-tenant recordings topics are <prefix><tenant>.recordings"))
    tenant_topics_refresh_seconds: float = Field(5.0, gt=0, description=(
        "How often the worker looks for new per-tenant topics (a tenant added while it runs)"))

    @model_validator(mode="after")
    def _topics_apart(self) -> "KafkaSettings":
        """A shared topic named like a tenant's would let that tenant's principal write to it."""
        for name in ("recordings_topic", "dlq_topic", "events_topic", "drop_topic"):
            if self.tenant_of(getattr(self, name)) is not None:
                raise ValueError(f"{name} {getattr(self, name)!r} has the form of a per-tenant topic "
                                 f"({self.tenant_topic_prefix}<tenant>.recordings)")
        if self.security_protocol == "SASL_SSL" and not (self.sasl_username and self.sasl_password):
            raise ValueError("SASL_SSL needs CALLVAULT_KAFKA_SASL_USERNAME and CALLVAULT_KAFKA_SASL_PASSWORD")
        if bool(self.ssl_certfile) != bool(self.ssl_keyfile):
            raise ValueError("mutual TLS needs both CALLVAULT_KAFKA_SSL_CERTFILE and CALLVAULT_KAFKA_SSL_KEYFILE")
        return self

    # -- per-tenant topics: the broker binds a producer to its tenant ---------------------
    def tenant_topic(self, tenant: str) -> str:
        if not TENANT_SLUG.fullmatch(tenant):
            raise ValueError(f"{tenant!r} is not a tenant slug (lower-case letters, digits, inner dashes)")
        return f"{self.tenant_topic_prefix}{tenant}.recordings"

    def tenant_of(self, topic: str) -> str | None:
        """The tenant a per-tenant topic belongs to; None for any other topic (the shared one)."""
        if not topic.startswith(self.tenant_topic_prefix) or not topic.endswith(".recordings"):
            return None
        tenant = topic[len(self.tenant_topic_prefix):-len(".recordings")]
        return tenant if TENANT_SLUG.fullmatch(tenant) else None

    def topic_for(self, tenant: str) -> str:
        """Where a producer sends a call of ``tenant``."""
        return self.tenant_topic(tenant) if self.per_tenant_topics else self.recordings_topic


# The message schema's tenant slug (no dot, so a tenant topic name parses one way only).
TENANT_SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


@lru_cache
def get_kafka_settings() -> KafkaSettings:
    from pydantic import ValidationError

    from core.errors import ConfigurationError

    try:
        return KafkaSettings()
    except ValidationError as exc:  # a clear message for the CLI, never a traceback
        first = exc.errors()[0]
        where = "_".join(str(p) for p in first["loc"]).upper() or "SETTINGS"
        raise ConfigurationError(f"CALLVAULT_KAFKA_{where}" if where != "SETTINGS" else "CALLVAULT_KAFKA_*",
                                 first["msg"]) from None


class IngestSettings(SectionSettings):
    model_config = SettingsConfigDict(env_prefix="CALLVAULT_INGEST_")
    toml_section = "ingest"

    app_id: str = Field("callvault-ingest", description="Kafka consumer group of the workers")
    concurrency: int | None = Field(None, ge=1, description=(
        "Calls processed at once per worker; unset: by storage format, 4 per core for passthrough (bound by the "
        "object store and the catalog), one per core for opus and flac (bound by the encoder)"))
    processes: int = Field(1, ge=1, description=(
        "Worker processes `callvault worker` runs on this host, members of one consumer group (at most the "
        "recordings topic's partitions); one per core where a worker is CPU-bound (passthrough), as replicas "
        "of a container would be"))
    storage_format: Literal["opus", "flac", "passthrough"] = Field("opus", description=(
        "Stored audio format: Ogg/Opus, FLAC, or passthrough (a PCM/A-law/µ-law WAV is kept in its own codec, "
        "spans silenced, no transcoding; other inputs become Opus)"))
    inline_max_bytes: int = Field(512 * 1024, description="Larger audio goes by claim check via the landing bucket")
    max_retries_unknown_error: int = Field(3, description="Attempts before an unexpected error dead-letters a call")
    max_crash_attempts: int = Field(3, ge=1, description=(
        "Deliveries of one message that ended with the worker killed (out of memory, SIGKILL) before it is "
        "dead-lettered as worker_crash; counted in the catalog, across restarts and workers"))
    sweep_interval_seconds: float = Field(300.0, description="How often the worker runs the lifecycle sweep (0: never)")
    push_status_days: int = Field(30, ge=1, description=(
        "Days a pushed call's status (HTTP push, S3 drop) is kept once settled; then the worker's sweep forgets it "
        "and its status URL answers 404 (a call still queued is kept)"))
    web_port: int = Field(6066, description="Worker's faust web port (health); 0 disables it")
    metrics_port: int = Field(9466, description="Prometheus metrics port of the worker; 0 disables it")
    metrics_host: str = Field("127.0.0.1", description="Address the metrics and health (faust web) ports listen on "
                                                       "(0.0.0.0 in a container)")
    max_audio_bytes: int = Field(512 * 1024 * 1024, description="Audio larger than this is dead-lettered")
    max_duration_seconds: int = Field(4 * 3600, description="Calls longer than this are dead-lettered")
    max_clock_skew_seconds: int = Field(300, description="A call starting further in the future is refused")
    default_region: str = Field("FR", description="Country assumed for numbers written without +country code")
    ingest_key_hours: float = Field(24.0, gt=0, description=(
        "How long producers seal messages to one ingest key of a tenant before the next one is made"))
    require_sealed: bool = Field(False, description=(
        "Dead-letter (unreadable_seal) any message not sealed to an ingest key; callvault's own producers always "
        "seal, so turn this on once every producer of yours does"))


    @property
    def in_flight(self) -> int:
        """Calls processed at once: the setting, else what the storage format is bound by."""
        if self.concurrency is not None:
            return self.concurrency
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return cores * (PASSTHROUGH_PER_CORE if self.storage_format == "passthrough" else 1)


PASSTHROUGH_PER_CORE = 4  # pass-through waits on the object store and the catalog, not on a core


@lru_cache
def get_ingest_settings() -> IngestSettings:
    return IngestSettings()
