"""Dependency wiring: build the engine, object store and key ring once, from settings.

``services()`` serves the CLI and the API; ``build_worker_deps()`` the ingest worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import sqlalchemy as sa

from lifecycle.retention import Bounds
from lifecycle.settings import LifecycleSettings, get_lifecycle_settings
from storage.anchors import AuditAnchors
from storage.catalog.db import UnitOfWork, make_engine
from storage.keys import KeyRing
from storage.ledger import ErasureLedger
from storage.objectstore import ObjectStore
from storage.residency import check_settings
from storage.settings import StorageSettings, get_catalog_settings, get_storage_settings

if TYPE_CHECKING:
    from ingest.runtime import WorkerDeps
    from ingest.settings import IngestSettings, KafkaSettings


@dataclass
class Services:
    engine: sa.Engine
    store: ObjectStore
    keys: KeyRing
    storage: StorageSettings
    lifecycle: LifecycleSettings
    ledger: ErasureLedger | None = None  # default: the erasure ledger the storage settings name
    anchors: AuditAnchors | None = None  # default: from the storage settings (None without an anchor key)

    def __post_init__(self) -> None:
        if self.ledger is None:
            self.ledger = ErasureLedger.from_settings(self.store, self.storage)
        if self.anchors is None:
            self.anchors = AuditAnchors.from_settings(self.store, self.storage)

    def unit_of_work(self) -> UnitOfWork:
        return UnitOfWork(self.engine, anchors=self.anchors)

    @property
    def bounds(self) -> Bounds:
        return Bounds(self.lifecycle.min_months, self.lifecycle.max_months)


def build_services(storage: StorageSettings | None = None, catalog_url: str | None = None,
                   lifecycle: LifecycleSettings | None = None) -> Services:
    storage = storage or get_storage_settings()
    check_settings(storage)  # residency: refused before anything is built
    store = ObjectStore.from_settings(storage)
    return Services(engine=make_engine(catalog_url or get_catalog_settings().url), store=store,
                    keys=KeyRing.from_settings(storage), storage=storage,
                    lifecycle=lifecycle or get_lifecycle_settings())


@lru_cache
def services() -> Services:
    return build_services()


def build_worker_deps(storage: StorageSettings | None = None, catalog_url: str | None = None,
                      ingest: "IngestSettings | None" = None, kafka: "KafkaSettings | None" = None,
                      lifecycle: LifecycleSettings | None = None) -> "WorkerDeps":
    """The ingest worker's dependencies. Nothing connects yet: the worker checks where its buckets
    actually are and replays the erasure ledger itself (``ingest.runtime.prepare``), retried
    while a server is down."""
    from ingest.runtime import WorkerDeps
    from ingest.service import IngestDeps
    from ingest.settings import get_ingest_settings, get_kafka_settings

    storage = storage or get_storage_settings()
    ingest = ingest or get_ingest_settings()
    url = catalog_url or get_catalog_settings().url
    check_settings(storage)  # residency: refused before anything is built
    store = ObjectStore.from_settings(storage)
    # A connection for each of the worker's pool threads, and two to spare.
    pool = {} if url.startswith("sqlite") else {"pool_size": ingest.concurrency + 2}
    deps = IngestDeps(engine=make_engine(url, **pool), store=store, keys=KeyRing.from_settings(storage),
                      storage=storage, settings=ingest, kafka=kafka or get_kafka_settings())
    return WorkerDeps(ingest=deps, ledger=ErasureLedger.from_settings(store, storage),
                      anchors=AuditAnchors.from_settings(store, storage),
                      sweep_batch_size=(lifecycle or get_lifecycle_settings()).sweep_batch_size)
