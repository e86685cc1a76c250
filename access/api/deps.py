"""What every view depends on: the app context, the clock, a unit of work, and the caller.

The caller is established afresh on every request: the bearer token only says who is
calling (``tokens.verify_token``); the user is then loaded from the catalog, so a revocation
or a past contract end refuses the very next request even with an unexpired token. Such a
refusal is a decision and is audited.

Audio may instead be fetched with a signed stream link (``listener``): the link names the
user, and the same checks then apply to that user.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Annotated, Callable

import anyio
import sqlalchemy as sa
from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from core.errors import ConfigurationError
from core.vocabulary import AuditAction
from ingest.producer import Producer
from lifecycle.deps import Services
from storage import audit
from storage.catalog.db import UnitOfWork

from .. import tokens
from ..exceptions import Forbidden, Unauthenticated
from ..identities import load_user
from ..policy import User, account_state
from ..settings import AccessSettings
from ..tokens import LinkPurpose, verify_token
from .metrics import ApiMetrics


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class ApiContext:
    settings: AccessSettings
    metrics: ApiMetrics
    clock: Callable[[], datetime] = utcnow
    _services: Services | Callable[[], Services] | None = field(default=None, repr=False)
    _producer_factory: Callable[[Services], Producer] | None = field(default=None, repr=False)
    _producer: Producer | None = field(default=None, repr=False)
    _producer_lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)
    playing: int = field(default=0, repr=False)  # audio requests in flight (counted on the event loop)
    _playback_threads: anyio.CapacityLimiter | None = field(default=None, repr=False)

    def playback_threads(self) -> anyio.CapacityLimiter:
        """The worker threads audio requests may use at once (``playback_threads``): past them a
        range waits its turn on the event loop instead of adding a thread to those contending for
        the interpreter. Made by the first request (a limiter belongs to a running event loop)."""
        if self._playback_threads is None:
            self._playback_threads = anyio.CapacityLimiter(self.settings.playback_threads)
        return self._playback_threads

    async def producer(self) -> Producer:
        """The Kafka producer of the push endpoint, built by the composition root's factory and
        started on the first push (``close`` stops it)."""
        async with self._producer_lock:
            if self._producer is None:
                if self._producer_factory is None:
                    raise ConfigurationError("push producer", "this app was created without a Kafka producer",
                                             hint="serve the API with `callvault api`, which wires one")
                self._producer = await self._producer_factory(self.services).__aenter__()
        return self._producer

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.__aexit__(None, None, None)
            self._producer = None

    @property
    def services(self) -> Services:
        """Given by the composition root, or built by its factory on first use (so creating the app
        connects to nothing)."""
        if self._services is None:
            raise ConfigurationError("services", "this app was created without services",
                                     hint="pass create_app(services=...) as callvault.bootstrap does")
        if callable(self._services):
            self._services = self._services()
        return self._services

    def reads(self) -> sa.Connection:
        """A connection in autocommit, for reads only: each statement on its own, no BEGIN and no
        ROLLBACK round trips (READ COMMITTED reads each statement's snapshot either way)."""
        return self.services.engine.connect().execution_options(isolation_level="AUTOCOMMIT")

    def unit_of_work(self) -> UnitOfWork:
        return UnitOfWork(self.services.engine, anchors=self.services.anchors)


# ``async``: FastAPI runs a plain ``def`` dependency in a worker thread, a hand-off per request for
# what is one attribute read; these two never block.
async def context(request: Request) -> ApiContext:
    return request.app.state.ctx


async def now(ctx: ApiContext = Depends(context)) -> datetime:
    return ctx.clock()


_bearer = HTTPBearer(auto_error=False, description="A callvault token (`callvault users token USER`)")


def current_user(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
                 ctx: ApiContext = Depends(context), at: datetime = Depends(now)) -> User:
    return _caller(request, credentials, ctx, at).load()


@dataclass(frozen=True)
class Caller:
    """A verified bearer token whose user is not loaded yet: a view that takes it (``caller``)
    loads the user with ``load()`` in its own worker thread, first thing, so the request makes
    one thread hand-off, not two. Loaded on every request all the same (revocation applies at once)."""

    request: Request
    ctx: ApiContext
    user_id: str
    at: datetime
    unknown: str = "invalid token"  # the refusal of a user id the catalog does not hold

    def load(self) -> User:
        return self.admit(_load(self.ctx, self.user_id))

    def admit(self, user: User | None) -> User:
        """The user read for this caller (``load_user``; None: unknown), unless unknown, revoked or
        past their contract end (audited). For a view that reads the user along with other rows."""
        if user is None:
            raise Unauthenticated(self.unknown)
        return _active(self.request, self.ctx, user, self.at)


def _caller(request: Request, credentials: HTTPAuthorizationCredentials | None, ctx: ApiContext,
            at: datetime) -> Caller:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated("a bearer token is required", hint="Authorization: Bearer <token>")
    return Caller(request, ctx, verify_token(credentials.credentials, ctx.settings), at)


async def caller(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
                 ctx: ApiContext = Depends(context), at: datetime = Depends(now)) -> Caller:
    """``current_user`` without the catalog read (a token check only, on the event loop)."""
    return _deferred(request, _caller(request, credentials, ctx, at))


async def bearer_caller(request: Request) -> Caller | None:
    """The caller a request's bearer token names (verified: ``Unauthenticated`` when it is not), or
    None without one. For ``errors``: a request whose parameters failed validation before the
    dependency that reads its token ran (a malformed copy id of a stream)."""
    credentials = await _bearer(request)
    if credentials is None:
        return None
    ctx: ApiContext = request.app.state.ctx
    return _caller(request, credentials, ctx, ctx.clock())


def _deferred(request: Request, who: Caller) -> Caller:
    """Kept on the request: should its parameters fail validation, the view that would load the
    user never runs, and ``errors`` admits the user first (401/403 before 422, as ``current_user``
    views answer)."""
    request.state.deferred_caller = who
    return who


def _load(ctx: ApiContext, user_id: str) -> User | None:
    """The user, read in autocommit: one statement, so no BEGIN and no ROLLBACK round trips."""
    with ctx.reads() as conn:
        return load_user(conn, user_id)


def _active(request: Request, ctx: ApiContext, user: User, at: datetime) -> User:
    """The user, unless revoked or past their contract end (a refusal that is audited)."""
    refused = account_state(user, at)
    if refused is not None:
        route = getattr(request.scope.get("route"), "path", request.url.path)
        with ctx.services.engine.begin() as conn:
            mine = sorted(user.tenants)
            audit.append(conn, tenant=mine[0] if len(mine) == 1 and mine[0] != "*" else None, actor=user.id,
                         role=user.role.value, action=AuditAction.API_REQUEST, target_type="route",
                         target_id=f"{request.method} {route}", outcome="denied", reason=refused.reason, at=at)
        ctx.metrics.decision("api:request", False)
        raise Forbidden(refused.reason)
    return user


# --- signed stream links -------------------------------------------------------------------------
# An <audio> element cannot send an Authorization header. ``POST /copies/{id}/stream-link``
# (policy-checked and audited) hands out a URL signed for one copy, one user and a few
# minutes; ``GET /copies/{id}/audio`` accepts it instead of a bearer, then decides and audits
# every range as that user. The user is reloaded on each request, so a revocation still
# applies at once.

def link_key(settings: AccessSettings, purpose: LinkPurpose) -> bytes:
    """The key of one kind of link (HKDF of the secret per purpose, ``tokens.link_key``)."""
    return tokens.link_key(settings, purpose)


def stream_signature(key: bytes, copy_id: uuid.UUID | str, user_id: str, expires: int) -> str:
    # Signed with the stream key (never the secret itself, nor the export key); NUL separators.
    message = f"callvault:stream\x00{copy_id}\x00{user_id}\x00{expires}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class StreamLink:
    copy_id: uuid.UUID
    user_id: str
    expires: int


async def stream_link(copy_id: uuid.UUID,
                user: Annotated[str | None, Query(max_length=64, description="stream link: its user")] = None,
                expires: Annotated[int | None, Query(ge=0, le=2**40,
                                                     description="stream link: expiry, Unix time")] = None,
                sig: Annotated[str | None, Query(max_length=128, description="stream link: hex HMAC")] = None,
                ctx: ApiContext = Depends(context), at: datetime = Depends(now)) -> StreamLink | None:
    """The verified link of a request, or None when it carries none (then a bearer is needed).

    A link past its time is told "expired" before its signature is checked: the time is in the
    URL for anyone to read, and "expired" is what its holder can act on (ask for a new one).
    ``async``: an HMAC, no I/O, so no thread hand-off."""
    if user is None and expires is None and sig is None:
        return None
    if user is None or expires is None or sig is None:
        raise Unauthenticated("incomplete stream link", hint="a stream link carries user, expires and sig; "
                                                             "quote the whole URL")
    if at.timestamp() > expires:
        raise Unauthenticated("stream link expired", hint="ask for a new one (POST /copies/{id}/stream-link)")
    expected = stream_signature(link_key(ctx.settings, LinkPurpose.STREAM), copy_id, user, expires).encode()
    if not hmac.compare_digest(expected, sig.encode("utf-8", "surrogatepass")):
        raise Unauthenticated("invalid stream link", hint="it was altered, or signed by another server")
    return StreamLink(copy_id, user, expires)


async def listener(request: Request, link: StreamLink | None = Depends(stream_link),
                   credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
                   ctx: ApiContext = Depends(context), at: datetime = Depends(now)) -> Caller:
    """Who is streaming, not loaded yet (``Caller.load``, in the view's one worker thread): the
    user a valid stream link names, else the bearer's. Loaded on every request all the same."""
    if link is None:
        return _deferred(request, _caller(request, credentials, ctx, at))
    return _deferred(request, Caller(request, ctx, link.user_id, at, unknown="invalid stream link"))
