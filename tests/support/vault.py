"""A callvault on the real stack for promise tests: PostgreSQL schema, MinIO buckets (as
``storage init`` makes them), the erasure ledger, a master key, and in-process ingest.

Calls are ingested through ``ingest.service.ingest`` (the worker's own service) as 8 kHz
PCM WAVs stored pass-through, so a call costs milliseconds and no ffmpeg process.
"""

from __future__ import annotations

import base64
import os
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from pydantic import SecretStr

from access.subjects import Actor
from ingest.schema import build_message
from ingest.service import IngestDeps, ingest
from ingest.settings import IngestSettings
from storage.catalog import tables as t
from storage.copies import read_copy
from storage.keys import KeyRing
from storage.ledger import ErasureLedger
from storage.objectstore import ObjectStore
from storage.settings import StorageSettings
from testbed.audio import sine_wav

TENANT = "acme"
IC = Actor("ic-1")


@dataclass
class Vault:
    url: str
    engine: sa.Engine
    storage: StorageSettings
    store: ObjectStore
    keys: KeyRing
    ledger: ErasureLedger
    clock: list[datetime] = field(default_factory=lambda: [datetime.now(timezone.utc).replace(microsecond=0)])
    sent: list[bytes] = field(default_factory=list)  # every message ``call`` ingested, to deliver again

    @classmethod
    def build(cls, storage_settings: StorageSettings, schema_url: str, master: bytes | None = None) -> "Vault":
        from storage.admin import init_buckets, minio_admin_client
        from storage.catalog.db import make_engine
        from storage.ledger import init_ledger_bucket

        storage = storage_settings.model_copy(update={
            "master_key": SecretStr(base64.b64encode(master or os.urandom(32)).decode())})
        init_buckets(storage, say=lambda _m: None)
        init_ledger_bucket(minio_admin_client(storage), storage, say=lambda _m: None)
        engine = make_engine(schema_url, echo=False)
        with engine.begin() as conn:
            conn.execute(t.tenants.insert().values(id=TENANT, name="Acme", created_at=datetime.now(timezone.utc)))
        store = ObjectStore.from_settings(storage)
        return cls(schema_url, engine, storage, store, KeyRing.from_settings(storage),
                   ErasureLedger.from_settings(store, storage))

    @property
    def now(self) -> datetime:
        return self.clock[0]

    def advance(self, delta: timedelta) -> None:
        self.clock[0] = self.clock[0] + delta

    def deps(self) -> IngestDeps:
        return IngestDeps(engine=self.engine, store=self.store, keys=self.keys, storage=self.storage,
                          settings=IngestSettings(storage_format="passthrough"), clock=lambda: self.clock[0])

    def call(self, number: str, *, agent: str = "agent-1", seconds: float = 0.5,
             started_at: datetime | None = None, stored: bool | None = True) -> tuple[uuid.UUID, uuid.UUID | None]:
        """Ingest one call; (recording id, production copy id). ``stored=None``: suppressed is fine too."""
        msg = build_message(recording_id=f"tel-{uuid.uuid4().hex[:12]}", tenant=TENANT,
                            started_at=started_at or self.now - timedelta(minutes=5), caller_number=number,
                            agent_id=agent, team_id="team-1", audio=sine_wav(seconds))
        raw = msg.to_bytes()
        self.sent.append(raw)
        result = ingest(raw, self.deps())
        if result.copy_id is None and stored is not None:
            raise AssertionError(f"call not stored: {result.outcome}")
        return result.recording_id, result.copy_id

    def read(self, copy_id: uuid.UUID) -> bytes:
        with self.engine.connect() as conn:
            return read_copy(conn, self.store, self.keys, copy_id)

    def readable(self, copy_id: uuid.UUID) -> bool:
        from core.errors import CallvaultError

        try:
            return len(self.read(copy_id)) > 0
        except CallvaultError:
            return False

    def rows(self, table: sa.Table, *where) -> list[sa.RowMapping]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.select(table).where(*where)).mappings())

    def dispose(self) -> None:
        self.engine.dispose()
