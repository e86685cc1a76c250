"""What every service needs, bundled: the catalog engine, the object store, the key ring, the
erasure ledger, the audit anchors, and the settings they were built from.

Built once by the composition root (``callvault.bootstrap``) and handed to the entry points: the
API (``access.api.create_app``), the CLI and the demo. Nothing here connects: the engine and
clients connect on first use.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from storage.anchors import AuditAnchors
from storage.catalog.db import UnitOfWork
from storage.keys import KeyRing
from storage.ledger import ErasureLedger
from storage.objectstore import ObjectStore
from storage.settings import StorageSettings

from .retention import Bounds
from .settings import LifecycleSettings


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
