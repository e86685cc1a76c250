"""What every view depends on: the app context, the clock, a unit of work, and the caller.

The caller is established afresh on every request: the bearer token only says who is
calling (``tokens.verify_token``); the user is then loaded from the catalog, so a revocation
or a past contract end refuses the very next request even with an unexpired token. Such a
refusal is a decision and is audited.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from callvault.bootstrap import Services
from storage.catalog.db import UnitOfWork

from .. import audit
from ..exceptions import Forbidden, Unauthenticated
from ..identities import load_user
from ..policy import User, account_state
from ..settings import AccessSettings
from ..tokens import verify_token
from .metrics import ApiMetrics


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class ApiContext:
    settings: AccessSettings
    metrics: ApiMetrics
    clock: Callable[[], datetime] = utcnow
    _services: Services | None = field(default=None, repr=False)

    @property
    def services(self) -> Services:
        """Built on first use, so creating the app connects to nothing."""
        if self._services is None:
            from callvault.bootstrap import services

            self._services = services()
        return self._services

    def unit_of_work(self) -> UnitOfWork:
        return UnitOfWork(self.services.engine)


def context(request: Request) -> ApiContext:
    return request.app.state.ctx


def now(ctx: ApiContext = Depends(context)) -> datetime:
    return ctx.clock()


_bearer = HTTPBearer(auto_error=False, description="A callvault token (`callvault users token USER`)")


def current_user(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
                 ctx: ApiContext = Depends(context), at: datetime = Depends(now)) -> User:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated("a bearer token is required", hint="Authorization: Bearer <token>")
    user_id = verify_token(credentials.credentials, ctx.settings)
    with ctx.services.engine.connect() as conn:
        user = load_user(conn, user_id)
    if user is None:
        raise Unauthenticated("invalid token")
    refused = account_state(user, at)
    if refused is not None:
        route = getattr(request.scope.get("route"), "path", request.url.path)
        with ctx.services.engine.begin() as conn:
            audit.append(conn, actor=user.id, role=user.role.value, action="api:request", target_type="route",
                         target_id=f"{request.method} {route}", outcome="denied", reason=refused.reason, at=at)
        ctx.metrics.decision("api:request", False)
        raise Forbidden(refused.reason)
    return user
