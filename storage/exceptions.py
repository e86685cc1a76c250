"""Errors of the storage package.

    CallvaultError
    └── StorageError
        ├── ObjectNotFound        the object (or version) is not in the bucket (also a core NotFound)
        ├── ObjectStoreUnavailable the S3 endpoint cannot be reached or answered 5xx
        ├── CatalogUnavailable    the catalog database does not answer, or is not migrated (the CLI's word
        │                         for the driver's error: ``storage.catalog.db.catalog_errors``)
        ├── CatalogIntegrityError stored bytes do not match the catalog's SHA-256
        │                         (named so it does not shadow SQLAlchemy's IntegrityError)
        ├── KeyDestroyedError     the caller's key was destroyed (erasure): audio is unreadable
        ├── UndecryptableError    ciphertext failed authentication (wrong key or tampering)
        └── ResidencyError        a region, endpoint, bucket or target outside the allowed list
            (also a ConfigurationError: it names the offending setting)
"""

from __future__ import annotations

from core.errors import CallvaultError, ConfigurationError, NotFound


class StorageError(CallvaultError):
    code = "storage_error"


class ObjectNotFound(StorageError, NotFound):
    code = "object_not_found"


class ObjectStoreUnavailable(StorageError):
    code = "object_store_unavailable"


class CatalogUnavailable(StorageError):
    code = "catalog_unavailable"


class CatalogIntegrityError(StorageError):
    code = "integrity_error"


class KeyDestroyedError(StorageError):
    code = "key_destroyed"


class UndecryptableError(StorageError):
    code = "undecryptable"


class ResidencyError(ConfigurationError, StorageError):
    code = "residency_refused"
