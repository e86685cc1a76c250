"""The one place where errors become HTTP answers: ``{"error": {"code", "message"}}``.

    CallvaultError                              status
    ├── AccessError                             its own ``.status`` (401, 403, 404, 416, 400)
    ├── NotFound (core.errors)                  404  and its kin: lifecycle NotFound, storage ObjectNotFound
    ├── CopyNotAllowed, UnknownTier, RetentionOutOfBounds, InvalidInput  422
    ├── ingest RecordingConflict                409  a pushed id already holds other audio
    ├── KeyDestroyedError                       410  the audio was crypto-shredded (erasure)
    ├── ObjectStoreUnavailable, ConfigurationError  503  the server cannot serve now
    ├── CatalogIntegrityError, UndecryptableError  500  stored data is damaged (never the client's fault)
    └── any other CallvaultError                400
    request validation (FastAPI)                422  code ``validation_error``, with the fields
    SQLAlchemy IntegrityError                   409  a concurrent request won the same write
    SQLAlchemy OperationalError                 503  the catalog is unreachable
    starlette ClientDisconnect                  the client went away mid-request (a cut upload):
                                                logged as such, no answer can reach it
    anything else                               500  code ``internal_error``, no traceback

Messages of our errors carry ids and reasons, never a phone number or audio, so they can be
returned as they are. Validation errors drop the offending ``input``: it may be a number.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

import sqlalchemy.exc
from anyio import to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from core.errors import CallvaultError, ConfigurationError, InvalidInput, NotFound
from ingest.exceptions import RecordingConflict
from lifecycle.exceptions import CopyNotAllowed, RetentionOutOfBounds, UnknownTier
from storage.exceptions import (
    CatalogIntegrityError,
    KeyDestroyedError,
    ObjectStoreUnavailable,
    UndecryptableError,
)

from ..exceptions import AccessError
from . import deps

log = logging.getLogger("callvault.api")

# Most specific first: the first class an error is an instance of decides its status.
STATUS: tuple[tuple[type[CallvaultError], int], ...] = (
    (NotFound, 404),
    (CopyNotAllowed, 422),
    (UnknownTier, 422),
    (RetentionOutOfBounds, 422),
    (InvalidInput, 422),
    (RecordingConflict, 409),
    (KeyDestroyedError, 410),
    (ObjectStoreUnavailable, 503),
    (ConfigurationError, 503),
    (CatalogIntegrityError, 500),
    (UndecryptableError, 500),
)


def status_of(exc: CallvaultError) -> int:
    if isinstance(exc, AccessError):
        return exc.status
    return next((status for cls, status in STATUS if isinstance(exc, cls)), 400)


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **{k: v for k, v in extra.items() if v is not None}}}


def error_response(status: int, code: str, message: str, *, headers: dict[str, str] | None = None,
                   **extra: Any) -> JSONResponse:
    return JSONResponse(error_body(code, message, **extra), status_code=status, headers=headers)


async def _callvault_error(_request: Request, exc: CallvaultError) -> JSONResponse:
    status = status_of(exc)
    if status >= 500:
        log.error("%s answered %d: %s", type(exc).__name__, status, exc.code)
    return error_response(status, exc.code, exc.message, hint=exc.hint)


# A length bound on a string that also has a validator of ours (``models.Text``) is checked by
# pydantic's generic length check, which counts "items"; a person reads "characters".
_STRING_LENGTH = {"too_long": ("string_too_long", "most", "max_length"),
                  "too_short": ("string_too_short", "least", "min_length")}


def _field(error: dict[str, Any]) -> dict[str, Any]:
    loc, kind, msg = [str(p) for p in error.get("loc", ())], str(error.get("type", "")), str(error.get("msg", ""))
    limit = (error.get("ctx") or {}).get(_STRING_LENGTH.get(kind, ("", "", ""))[2])
    if kind in _STRING_LENGTH and isinstance(error.get("input"), str) and isinstance(limit, int):
        kind, bound, _ = _STRING_LENGTH[kind]
        msg = f"String should have at {bound} {limit} character{'' if limit == 1 else 's'}"
    return {"loc": loc, "msg": msg, "type": kind}


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    # Who asks is answered before what they asked: a view that loads its user itself (``deps.caller``,
    # ``deps.listener``) never ran, so its caller is admitted here first; an unknown token or user is
    # 401, a revoked one 403 (audited), as on every other view.
    try:
        who = getattr(request.state, "deferred_caller", None) or await deps.bearer_caller(request)
        if who is not None:
            await to_thread.run_sync(who.load)
    except CallvaultError as refused:
        return await _callvault_error(request, refused)
    except sqlalchemy.exc.OperationalError as down:
        return await _catalog_down(request, down)
    fields = [_field(e) for e in exc.errors()]
    return error_response(422, "validation_error", "the request does not match the API schema", fields=fields)


async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail), headers=getattr(exc, "headers", None))


async def _conflict(_request: Request, exc: sqlalchemy.exc.IntegrityError) -> JSONResponse:
    log.warning("catalog refused a write (constraint): %s", type(exc.orig).__name__)
    return error_response(409, "conflict", "a concurrent request changed the same record; retry")


async def _catalog_down(_request: Request, exc: sqlalchemy.exc.OperationalError) -> JSONResponse:
    log.error("catalog unavailable: %s", type(exc.orig).__name__)
    return error_response(503, "catalog_unavailable", "the catalog database cannot be reached")


async def _client_gone(request: Request, _exc: ClientDisconnect) -> JSONResponse:
    # A PBX whose upload was cut: nothing was queued (the landing upload is aborted); not a bug of
    # ours, so neither "unexpected" nor a traceback in the log. The answer reaches no one.
    log.warning("client went away before its request was read: %s %s", request.method, request.url.path)
    return error_response(400, "client_disconnected", "the request was cut before its end")


async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    # The type and the frames, not the text: an exception's text may quote a value of the request.
    log.error("unexpected %s while answering a request\n%s", type(exc).__name__,
              "".join(traceback.format_tb(exc.__traceback__)))
    return error_response(500, "internal_error", "internal error")


def install(app: FastAPI) -> None:
    app.add_exception_handler(CallvaultError, _callvault_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(sqlalchemy.exc.IntegrityError, _conflict)  # type: ignore[arg-type]
    app.add_exception_handler(sqlalchemy.exc.OperationalError, _catalog_down)  # type: ignore[arg-type]
    app.add_exception_handler(ClientDisconnect, _client_gone)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected)
