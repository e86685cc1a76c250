"""Alembic scripts of the catalog; run them with ``storage.catalog.migrate``."""
