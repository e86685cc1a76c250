"""The HTTP API of callvault (FastAPI): ``create_app`` in ``app``; ``callvault api`` serves it.

``create_app`` is imported on first use, so the command line can use the API's catalog reads
and search (``access.service``) without loading FastAPI."""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(name)
