"""Object-store and catalog settings (``CALLVAULT_STORAGE_*``, ``CALLVAULT_CATALOG_*``)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from core.config import SectionSettings, callvault_home

# EU/EEA regions of AWS (and the names a MinIO in the EU is configured with).
EU_REGIONS = (
    "eu-west-1", "eu-west-2", "eu-west-3", "eu-central-1", "eu-central-2",
    "eu-north-1", "eu-south-1", "eu-south-2",
)


class StorageSettings(SectionSettings):
    model_config = SettingsConfigDict(env_prefix="CALLVAULT_STORAGE_")
    toml_section = "storage"

    endpoint_url: str | None = Field("http://127.0.0.1:19000", description="S3 endpoint; empty for AWS S3")
    region: str | None = Field("eu-west-3", description="Region of the buckets; must be in allowed_regions")
    allowed_regions: list[str] = Field(list(EU_REGIONS), description="Regions audio may be stored in")
    access_key: SecretStr | None = Field(None, description="S3 access key (local stack: generated)")
    secret_key: SecretStr | None = Field(None, description="S3 secret key (local stack: generated)")
    master_key: SecretStr | None = Field(None, description="Base64 32-byte key wrapping the caller keys")
    master_key_version: str = Field("1", min_length=1, max_length=64,
                                    description="Label of the current master key (stored beside each wrapped key)")
    retired_master_keys: dict[str, SecretStr] = Field(
        default_factory=dict, description="Older master keys by version, kept only until `callvault keys "
        "rotate-master` has re-wrapped every caller key under the current one")
    number_hash_key: SecretStr | None = Field(
        None, description="Base64 32-byte key of the keyed number hashes (default: derived from the master key; "
        "pin it before rotating the master, see `callvault keys hash-key`)")
    tenant_master_keys: dict[str, SecretStr] = Field(
        default_factory=dict, description="Optional per-tenant master keys (tenant -> base64 32 bytes)")
    recordings_bucket: str = Field("callvault-recordings", description="Bucket of encrypted recordings")
    landing_bucket: str = Field("callvault-landing", description=(
        "Bucket of claim-check uploads, and of the S3 drop (telephony uploads under <tenant>/)"))
    drop_notify_target: str | None = Field("CALLVAULT", description=(
        "MinIO Kafka notification target (ARN arn:minio:sqs:<region>:<target>:kafka) `storage init` announces "
        "the landing bucket's new objects to (`callvault stack up` configures it); empty: none (AWS: see the "
        "README's S3 drop section)"))
    exports_bucket: str = Field("callvault-exports", description="Bucket of data-subject exports")
    ledger_bucket: str = Field("callvault-ledger", description="Object-locked bucket of the erasure ledger")
    ledger_prefix: str = Field("callvault/", description="Key prefix of this catalog's ledger (erasures, holds)")
    ledger_retention_days: int = Field(
        3650, ge=1, description="COMPLIANCE retention of each ledger entry: longer than any catalog backup is kept")
    audit_anchor_key: SecretStr | None = Field(
        None, description="Base64 32-byte key signing the audit chain's anchors (HMAC-SHA256); kept outside the "
        "catalog, so a rewritten chain cannot be re-anchored (local stack: generated)")
    audit_anchor_retention_days: int = Field(
        400, ge=366, description="COMPLIANCE retention of each audit anchor in the ledger bucket (PCI DSS 10.5.1: "
        "the trail is kept at least 12 months)")
    audit_anchor_interval_seconds: float = Field(
        300.0, gt=0, le=3600, description="Anchor the audit chain's head at least this often (API processes on "
        "commit, the worker on its sweep timer), besides after every sweep, erasure and export")


class CatalogSettings(SectionSettings):
    model_config = SettingsConfigDict(env_prefix="CALLVAULT_CATALOG_")
    toml_section = "catalog"

    url: str = Field(
        default_factory=lambda: f"sqlite:///{callvault_home() / 'catalog.sqlite3'}",
        description="SQLAlchemy URL of the catalog (SQLite by default; postgresql+psycopg://… for PostgreSQL)",
    )
    echo: bool = Field(False, description="Log SQL statements (never enable with real data)")


@lru_cache
def get_storage_settings() -> StorageSettings:
    return StorageSettings()


@lru_cache
def get_catalog_settings() -> CatalogSettings:
    return CatalogSettings()
