"""The HTTP API: ``create_app`` wires settings, services, errors, metrics and the routes.

    GET    /healthz                         catalog reachable? (no auth)
    GET    /metrics                         Prometheus text (no auth; labels carry no ids)
    GET    /recordings                      search (agent, team, from, to, tier, tenant; cursor, limit)
    POST   /recordings/search               search with a number too, in the JSON body (never in a URL)
    GET    /recordings/{id}                 detail: copies, retention, holds, redactions, restriction
    POST   /recordings/{id}/copies          monitoring / training / complaint-extract copy
    POST   /recordings/{id}/hold            legal hold on every copy; DELETE releases it
    GET    /copies/{id}/audio               playback with HTTP Range (200 / 206 / 416); bearer or stream link
    POST   /copies/{id}/stream-link         a signed, short-lived URL of that audio (for an <audio> element)
    GET    /copies/{id}/export              download as an attachment (internal control)
    POST   /copies/{id}/hold                legal hold on one copy; DELETE releases it
    GET    /lifecycle/report                copies, bytes and expiries per tenant and tier
    GET    /audit, /audit/verify            the trail, and its hash-chain check
    POST   /break-glass                     IT: time-limited playback of one recording's named tiers, with a ticket
    POST   /subjects/{object,erase,restrict,lift,rectify,export}   data-subject requests by number
    POST   /v1/recordings                   telephony pushes a call: audio body, Callvault-* headers (202)
    GET    /v1/recordings/{id}/status       queued / stored / suppressed / dead-lettered (reason code)
    GET    /exports/{tenant}/{id}.zip       the export ZIP, by a short-lived signed link
    GET    /openapi.json, /docs             the schema
    GET    /console/...                     the web console (``access.console``); / redirects there

Creating the app refuses a missing, short (< 32 bytes) or placeholder
``CALLVAULT_ACCESS_JWT_SECRET`` in every auth mode (OIDC included: it signs the links), and
otherwise connects to nothing: the composition root (``callvault.bootstrap``) passes the
services, or a factory that builds them on the first request that needs them.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from datetime import datetime
from typing import Callable

from fastapi import FastAPI

from ingest.producer import Producer
from lifecycle.deps import Services

from ..console import install as install_console
from ..settings import AccessSettings, get_access_settings
from ..tokens import require_secret
from . import errors
from .deps import ApiContext, utcnow
from .metrics import ApiMetrics, MetricsMiddleware
from .views import audio, audit, break_glass, copies, dlq, health, holds, lifecycle, push, recordings, subjects

API_VERSION = "0.1.0"
ROUTERS = (health.router, recordings.router, audio.router, copies.router, holds.router, lifecycle.router,
           audit.router, break_glass.router, subjects.router, dlq.router, push.router)


def create_app(services: Services | Callable[[], Services] | None = None, settings: AccessSettings | None = None, *,
               clock: Callable[[], datetime] = utcnow,
               push_producer: Callable[[Services], Producer] | None = None) -> FastAPI:
    """``services`` (or a factory of them) and ``push_producer`` (the Kafka producer of
    ``POST /v1/recordings``) come from the composition root, ``callvault.bootstrap``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await app.state.ctx.close()  # the push endpoint's Kafka producer, if a push started it

    app = FastAPI(title="callvault", lifespan=lifespan, version=API_VERSION,
                  description="Call recordings: role-gated search, playback with HTTP Range, copies, "
                              "legal holds, lifecycle report and a tamper-evident audit trail.")
    settings = settings or get_access_settings()
    require_secret(settings)  # before serving anything: links (and HS256 tokens) are signed with it
    metrics = ApiMetrics()
    app.state.ctx = ApiContext(settings=settings, metrics=metrics, clock=clock,
                               _services=services, _producer_factory=push_producer)
    errors.install(app)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    for router in ROUTERS:
        app.include_router(router)
    install_console(app)
    _state_limits(app, settings)
    return app


def _state_limits(app: FastAPI, settings: AccessSettings) -> None:
    """The schema states this deployment's own limits, so a value it allows is one the handlers
    accept, and a value beyond them is a 422 there as here."""
    build = app.openapi

    def openapi() -> dict:
        schema = build()
        minutes = schema["components"]["schemas"]["BreakGlassRequest"]["properties"]["minutes"]
        minutes["maximum"] = settings.break_glass_max_minutes
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
