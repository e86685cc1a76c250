"""``/healthz`` (no auth: is the catalog reachable?) and ``/metrics`` (Prometheus text)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response

from storage.catalog.db import ping

from ..deps import ApiContext, context
from ..models import Health

router = APIRouter(tags=["operations"])
log = logging.getLogger("callvault.api")


@router.get("/healthz", response_model=Health, responses={503: {"model": Health}})
def healthz(ctx: ApiContext = Depends(context)) -> JSONResponse:
    try:
        ping(ctx.services.engine)
    except Exception as exc:  # any failure means "not ready"; say which kind, not its text
        log.warning("health check: catalog unreachable (%s)", type(exc).__name__)
        return JSONResponse({"status": "unavailable", "catalog": "unavailable"}, status_code=503)
    return JSONResponse({"status": "ok", "catalog": "ok"})


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
def metrics(ctx: ApiContext = Depends(context)) -> Response:
    return Response(ctx.metrics.render(), media_type=ctx.metrics.content_type)
