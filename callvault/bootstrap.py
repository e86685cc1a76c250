"""The composition root: the one place that builds callvault's parts from settings.

The CLI, the API, the worker and the demo get their dependencies from here; no package below
builds its own engine, object store or key ring. Imports point down (``pyproject.toml``'s
import-linter contracts): this module may import every package, and none imports it.
"""

from __future__ import annotations

import os
import uuid
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from access import operators
from access.policy import Target, User
from core.errors import CallvaultError
from core.inputs import RecordingRef
from core.vocabulary import Action
from ingest.producer import Producer, catalog_seal_keys
from ingest.settings import get_kafka_settings
from lifecycle import service as lifecycle_service
from lifecycle.deps import Services
from lifecycle.settings import LifecycleSettings, get_lifecycle_settings
from storage.anchors import AuditAnchors
from storage.catalog.db import make_engine
from storage.keys import KeyRing
from storage.ledger import ErasureLedger
from storage.objectstore import ObjectStore
from storage.residency import check_settings
from storage.settings import StorageSettings, get_catalog_settings, get_storage_settings

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ingest.runtime import WorkerDeps
    from ingest.settings import IngestSettings, KafkaSettings

__all__ = ["Root", "Services", "build_services", "build_worker_deps", "services"]


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
                      ingest: IngestSettings | None = None, kafka: KafkaSettings | None = None,
                      lifecycle: LifecycleSettings | None = None) -> WorkerDeps:
    """The ingest worker's dependencies. Nothing connects yet: the worker checks where its buckets
    actually are and replays the erasure ledger itself (``ingest.runtime.prepare``), retried
    while a server is down."""
    from ingest.runtime import WorkerDeps  # faust: imported only by what runs the worker
    from ingest.service import IngestDeps
    from ingest.settings import get_ingest_settings, get_kafka_settings

    storage = storage or get_storage_settings()
    ingest = ingest or get_ingest_settings()
    url = catalog_url or get_catalog_settings().url
    check_settings(storage)  # residency: refused before anything is built
    store = ObjectStore.from_settings(storage)
    # A connection for each of the worker's pool threads (calls in flight + 2), and two to spare.
    pool = {} if url.startswith("sqlite") else {"pool_size": ingest.in_flight + 4}
    deps = IngestDeps(engine=make_engine(url, **pool), store=store, keys=KeyRing.from_settings(storage),
                      storage=storage, settings=ingest, kafka=kafka or get_kafka_settings())
    return WorkerDeps(ingest=deps, ledger=ErasureLedger.from_settings(store, storage),
                      anchors=AuditAnchors.from_settings(store, storage),
                      sweep_batch_size=(lifecycle or get_lifecycle_settings()).sweep_batch_size)


def api_app() -> "FastAPI":
    """The API of one ``callvault api --workers N`` process (uvicorn calls this in each): its own
    services, catalog pool, object-store client, anchors, metrics and Kafka producer."""
    from access.api import create_app
    from access.settings import get_access_settings

    return create_app(services, get_access_settings(), push_producer=Root().push_producer)


class Root:
    """What every command gets as ``ctx.obj``: the services, and the operator checks wired to them.

    Built per CLI invocation; nothing connects until a command asks for the services."""

    api_app_factory = f"{__name__}:api_app"  # what each API worker process imports and calls

    def services(self) -> Services:
        return services()

    def authorise(self, actor: str, action: Action, **kwargs: Any) -> User:
        """The ``--actor`` as a registered user the policy allows ``action``; audited with the OS user
        (``access.operators``); a refusal is raised as one ``Forbidden`` line."""
        return operators.authorise(self.services().engine, actor, action, now=datetime.now(timezone.utc), **kwargs)

    def require_tenant(self, *tenants: str) -> None:
        """NotFound (exit code 1) naming the first tenant that does not exist; ``*`` is every tenant."""
        with self.services().unit_of_work() as uow:
            for tenant in tenants:
                if tenant != "*":
                    lifecycle_service.require_tenant(uow, tenant)

    def recording_id(self, ref: RecordingRef) -> uuid.UUID:
        """The catalog id of a recording named by its catalog id or as ``TENANT/TELEPHONY_ID``."""
        with self.services().unit_of_work() as uow:
            return lifecycle_service.resolve_recording(uow, ref)

    def output_file(self, given: Path | None, name: str) -> Path:
        """Where a command writes a file: the path given (its folder made if missing), else ``name``
        in the configured output folder (``CALLVAULT_LIFECYCLE_OUTPUT_DIR``), never the working folder."""
        path = given if given is not None else self.services().lifecycle.output_dir.expanduser() / name
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CallvaultError(f"cannot create the folder {path.parent}: {exc.strerror or exc}",
                                 hint="give a path you may write with the command's option, or set "
                                      "CALLVAULT_LIFECYCLE_OUTPUT_DIR") from None
        if path.is_dir() or not os.access(path.parent, os.W_OK):
            raise CallvaultError(f"cannot write {path}: {'a folder' if path.is_dir() else 'not writable'}",
                                 hint="give a file path you may write")
        return path

    def copy_targets(self, copy_ids: list[uuid.UUID] | None, recording_id: uuid.UUID | None) -> list[Target]:
        return operators.copy_targets(self.services().engine, copy_ids, recording_id)

    def source_target(self, recording_id: uuid.UUID, now: datetime) -> list[Target]:
        return operators.source_target(self.services().engine, recording_id, now)

    def push_producer(self, svc: Services) -> Producer:
        """The API's Kafka producer (``POST /v1/recordings``): seals to the tenants' ingest keys
        straight from the catalog."""
        kafka = get_kafka_settings()
        return Producer(kafka, svc.storage, store=svc.store,
                        seal_keys=catalog_seal_keys(svc.engine, svc.storage, kafka=kafka))

    def run_worker(self, loglevel: str) -> None:
        from ingest.worker import run_worker  # faust: imported only by the command that runs it

        run_worker(build_worker_deps(), loglevel)
