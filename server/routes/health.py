"""Liveness and readiness probes for the load balancer (``GET /healthz``, ``GET /readyz``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from server.context import ServerContext, server_context
from server.overload import retry_later

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "database unreachable or not migrated"}})
def readyz(context: Annotated[ServerContext, Depends(server_context)]) -> JSONResponse:
    from server.migrate import is_current

    if context.storage.ping() and is_current(context.storage.engine):
        return JSONResponse({"status": "ready"})
    return retry_later(503, 5, "database unreachable or not migrated (run `mamori server migrate`)")
