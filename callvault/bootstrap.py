"""The composition root: the one place that builds callvault's parts from settings.

The CLI, the API, the worker and the demo get their dependencies from here; no package below
builds its own engine, object store or key ring. Imports point down (``pyproject.toml``'s
import-linter contracts): this module may import every package, and none imports it.
"""

from __future__ import annotations

from functools import lru_cache

from lifecycle.deps import Services
from lifecycle.settings import LifecycleSettings, get_lifecycle_settings
from storage.catalog.db import make_engine
from storage.keys import KeyRing
from storage.objectstore import ObjectStore
from storage.residency import check_settings
from storage.settings import StorageSettings, get_catalog_settings, get_storage_settings

__all__ = ["Services", "build_services", "services"]


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
