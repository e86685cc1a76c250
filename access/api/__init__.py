"""The HTTP API of callvault (FastAPI): ``create_app`` in ``app``; ``callvault api`` serves it."""

from .app import create_app

__all__ = ["create_app"]
