"""Prometheus metrics of the API, on a registry of its own (one per app, so tests can build many).

Labels are route templates (``/copies/{copy_id}/audio``), methods, statuses, actions and
outcomes: never a query string, an id or a number.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from typing import Any, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class ApiMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("callvault_api_requests_total", "HTTP requests by route template and status",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("callvault_api_request_seconds", "Time to the response's first byte, by route",
                                 ["route"], registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.decisions = Counter("callvault_api_decisions_total", "Policy decisions by action and outcome",
                                 ["action", "outcome"], registry=self.registry)
        # Each label set's child, kept: ``labels()`` builds and looks it up under a lock on every call.
        self._children: dict[tuple, Any] = {}

    def _child(self, metric: Any, *values: str) -> Any:
        key = (metric, *values)
        child = self._children.get(key)
        if child is None:
            child = self._children.setdefault(key, metric.labels(*values))
        return child

    def decision(self, action: str, allowed: bool, count: int = 1) -> None:
        self._child(self.decisions, action, "allowed" if allowed else "denied").inc(count)

    def answered(self, route: str, method: str, status: int) -> None:
        self._child(self.requests, route, method, str(status)).inc()

    def first_byte(self, route: str, seconds: float) -> None:
        self._child(self.latency, route).observe(seconds)

    def render(self) -> bytes:
        if os.environ.get(_SHARED):  # ``callvault api --workers N``: every process's counts, added up
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)


_SHARED = "PROMETHEUS_MULTIPROC_DIR"


@contextmanager
def shared_between_processes() -> Iterator[None]:
    """The metrics of the API processes started inside the block are kept in files of a fresh
    folder (prometheus_client's multiprocess mode, chosen when a process imports it: set before
    the workers start), so /metrics in any of them counts all. An operator's own folder is kept."""
    if os.environ.get(_SHARED):
        yield
        return
    folder = tempfile.mkdtemp(prefix="callvault-metrics-")
    os.environ[_SHARED] = folder
    try:
        yield
    finally:
        os.environ.pop(_SHARED, None)
        shutil.rmtree(folder, ignore_errors=True)


class MetricsMiddleware:
    """Counts every answer under the route that matched (FastAPI puts it in the scope)."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status, started = 500, time.perf_counter()

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                self.metrics.first_byte(getattr(scope.get("route"), "path", "unmatched"), time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            self.metrics.answered(getattr(scope.get("route"), "path", "unmatched"), scope["method"], status)
