"""Where and how the local stack runs. Every value can be set with ``CALLVAULT_STACK_<NAME>``."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from core.config import SectionSettings, callvault_home

# Pinned releases. Kafka 4.1.1 is the newest line checked with faust-streaming 0.15.3 and
# aiokafka 0.14 (topic creation, consumer groups, commits). MinIO publishes no semver tags,
# so the Go module proxy pins it by pseudo-version (the commit of 2026-02-12).
KAFKA_VERSION = "4.1.1"
MINIO_VERSION = "v0.0.0-20260212201848-7aac2a2c5b7c"


def _default_postgres_dir() -> Path:
    # PostgreSQL refuses to run as root, so as root it runs as the `postgres` user, which
    # cannot enter root's home: its data directory then lives under /var/tmp.
    if os.geteuid() == 0:
        home_id = hashlib.sha256(str(callvault_home()).encode()).hexdigest()[:8]
        return Path("/var/tmp") / f"callvault-postgres-{home_id}"
    return callvault_home() / "postgres"


class StackSettings(SectionSettings):
    model_config = SettingsConfigDict(env_prefix="CALLVAULT_STACK_")
    toml_section = "stack"

    host: str = Field("127.0.0.1", description="Loopback address every server binds to")
    start_timeout: float = Field(120.0, description="Seconds to wait for a server to answer")

    kafka_version: str = Field(KAFKA_VERSION, description="org.apache.kafka:kafka_2.13 release")
    kafka_port: int = Field(19092, description="Kafka broker (PLAINTEXT) port")
    kafka_controller_port: int = Field(19093, description="Kafka KRaft controller port")
    kafka_sasl_port: int = Field(19094, description=(
        "Kafka SASL_SSL listener port (SCRAM-SHA-512, TLS with the local CA); the PLAINTEXT one is for the demo"))
    kafka_admin_user: str = Field("callvault-worker", description=(
        "SCRAM super user of the local Kafka (the worker and admin principal); its password is generated once"))
    kafka_heap: str = Field("512m", description="Kafka JVM -Xmx")

    minio_version: str = Field(MINIO_VERSION, description="github.com/minio/minio version for go install")
    minio_port: int = Field(19000, description="MinIO S3 API port")
    minio_console_port: int = Field(19001, description="MinIO console port")
    minio_region: str = Field("eu-west-3", description="Region MinIO reports for its buckets")

    postgres_port: int = Field(15432, description="PostgreSQL port")
    postgres_dir: Path = Field(default_factory=_default_postgres_dir, description="PostgreSQL cluster directory")

    @property
    def home(self) -> Path:
        """``CALLVAULT_HOME``: downloads, builds, server data, local secrets."""
        return callvault_home()

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    @property
    def run_dir(self) -> Path:
        return self.home / "run"
