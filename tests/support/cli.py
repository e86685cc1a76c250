"""The command line in-process, as a person types it, against a test world on the real stack.

``Cli`` runs ``callvault`` through Typer's ``CliRunner`` with an environment of its own (the
settings are read again for every command: their caches and the composition root's services
are cleared before and after), so a test pays milliseconds per command instead of a Python
start-up. ``cli_world`` builds a world for it: a migrated PostgreSQL schema, MinIO buckets as
``storage init`` makes them, a master key, tenant ``acme`` (and ``other``), one stored call,
group-level users ``ic-1`` (internal control) and ``it-1`` (IT), and an output folder.
"""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import sqlalchemy as sa
from pydantic import SecretStr
from typer.testing import CliRunner, Result

from access.identities import add_user
from storage.catalog import tables as t
from storage.catalog.migrate import upgrade
from storage.settings import StorageSettings
from tests.audio_fixtures import sine_wav
from tests.conftest import MinioEndpoint, empty_and_delete_bucket, unique
from tests.integration.pipeline import service_env
from tests.support.vault import Vault

NUMBER = "+33612345678"


def reset_settings() -> None:
    """Forget every cached setting and the composition root's services (their engine disposed)."""
    from access.settings import get_access_settings
    from callvault import bootstrap
    from ingest.settings import get_ingest_settings, get_kafka_settings
    from lifecycle.settings import get_lifecycle_settings
    from storage.settings import get_catalog_settings, get_storage_settings

    if bootstrap.services.cache_info().currsize:
        bootstrap.services().engine.dispose()
    bootstrap.services.cache_clear()
    for cached in (get_access_settings, get_ingest_settings, get_kafka_settings, get_lifecycle_settings,
                   get_catalog_settings, get_storage_settings):
        cached.cache_clear()


@dataclass
class Cli:
    env: dict[str, str]

    def __call__(self, *args: str) -> Result:
        from callvault.cli import app

        reset_settings()
        try:
            return CliRunner().invoke(app, [str(a) for a in args], env=self.env)
        finally:
            reset_settings()


@dataclass
class CliWorld:
    cli: Cli
    vault: Vault
    recording_id: uuid.UUID
    telephony_ref: str  # TENANT/TELEPHONY_ID of the stored call
    copy_id: uuid.UUID
    audio: Path  # a short WAV to push
    out_dir: Path  # CALLVAULT_LIFECYCLE_OUTPUT_DIR


@contextmanager
def cli_world(minio: MinioEndpoint, ledger_bucket: str, postgres_url: str, kafka_bootstrap: str,
              tmp: Path) -> Iterator[CliWorld]:
    base = unique("cli")
    storage = StorageSettings(endpoint_url=minio.url, region=minio.region, access_key=SecretStr(minio.access_key),
                              secret_key=SecretStr(minio.secret_key), recordings_bucket=f"{base}-rec",
                              landing_bucket=f"{base}-land", exports_bucket=f"{base}-exp",
                              ledger_bucket=ledger_bucket, ledger_prefix=f"{base}/", ledger_retention_days=1)
    schema = base.replace("-", "_")
    admin = sa.create_engine(postgres_url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = f"{postgres_url}?options=-csearch_path%3D{schema}"
    upgrade(url)
    vault = Vault.build(storage, url)
    try:
        rid, copy_id = vault.call(NUMBER)
        with vault.engine.begin() as conn:
            conn.execute(t.tenants.insert().values(id="other", name="Other", created_at=vault.now))
            add_user(conn, user_id="ic-1", role="internal-control", tenants=["*"])
            add_user(conn, user_id="it-1", role="it", tenants=["*"])
            external = conn.execute(sa.select(t.recordings.c.external_id).where(t.recordings.c.id == rid)).scalar()
        audio = tmp / "call.wav"
        audio.write_bytes(sine_wav(2.0))
        env = {**service_env(vault.storage, url),
               "CALLVAULT_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
               "CALLVAULT_KAFKA_RECORDINGS_TOPIC": f"{base}.recordings",
               "CALLVAULT_KAFKA_DLQ_TOPIC": f"{base}.recordings.dlq",
               "CALLVAULT_KAFKA_EVENTS_TOPIC": f"{base}.events",
               "CALLVAULT_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
               "CALLVAULT_LIFECYCLE_OUTPUT_DIR": str(tmp / "out"),
               "CALLVAULT_ACCESS_JWT_SECRET": os.urandom(32).hex(),
               "COLUMNS": "220"}
        yield CliWorld(Cli(env), vault, rid, f"acme/{external}", copy_id, audio, tmp / "out")
    finally:
        vault.dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
        s3 = minio.boto3_client()
        existing = {b["Name"] for b in s3.list_buckets()["Buckets"]}
        for bucket in (storage.recordings_bucket, storage.landing_bucket, storage.exports_bucket):
            if bucket in existing:
                empty_and_delete_bucket(s3, bucket)
