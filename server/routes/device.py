"""The device API: enrollment, policy pull, event ingest and check-in (docs/server-api.md)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from starlette.concurrency import run_in_threadpool

from server import alerts, auth
from server.access import device_auth
from server.body import read_body
from server.context import ServerContext, server_context
from server.ingest import ingest_batch
from server.models import (
    CheckinRequest,
    CheckinResponse,
    EnrollRequest,
    EnrollResponse,
    IngestResponse,
)
from server.storage import Device, EnrollRefusedError

logger = logging.getLogger(__name__)

router = APIRouter(tags=["device"])


@router.post(
    "/v1/enroll",
    response_model=EnrollResponse,
    responses={401: {"description": "unknown secret"}, 403: {"description": "secret used up or expired"}},
)
def enroll(body: EnrollRequest, context: Annotated[ServerContext, Depends(server_context)]) -> EnrollResponse:
    device_id = auth.new_device_id()
    token = auth.new_token(auth.DEVICE_PREFIX)
    info = {"hostname": body.hostname, "os": body.os}
    try:
        group = context.storage.enroll(
            auth.token_hash(body.secret), device_id, auth.token_hash(token), info, context.now_ms()
        )
    except EnrollRefusedError as err:
        status = 401 if err.reason == "unknown" else 403
        raise HTTPException(status, f"enrollment secret {err.reason}; ask IT for a new one") from err
    logger.info("device %s enrolled in group %s", device_id, group)
    return EnrollResponse(device_id=device_id, token=token, group=group)


@router.get(
    "/v1/policy",
    responses={
        200: {"content": {"application/json": {}}, "description": "the signed bundle (DSSE envelope)"},
        304: {"description": "not modified"},
        404: {"description": "no policy for the device's group"},
    },
)
def get_policy(
    request: Request,
    device: Annotated[Device, Depends(device_auth)],
    context: Annotated[ServerContext, Depends(server_context)],
) -> Response:
    storage = context.storage
    row = storage.current_policy(device.group) or storage.current_policy(context.settings.default_group)
    if row is None:
        raise HTTPException(404, f"no policy published for group {device.group}")
    etag = f'"{row.etag}"'
    tags = [t.strip() for t in request.headers.get("if-none-match", "").split(",")]
    if etag in tags or "*" in tags or f"W/{etag}" in tags:
        return Response(status_code=304, headers={"ETag": etag})
    return Response(content=bytes(row.bundle), media_type="application/json", headers={"ETag": etag})


async def ingest_slot(context: Annotated[ServerContext, Depends(server_context)]) -> AsyncIterator[None]:
    """A place under the concurrent-ingest ceiling, taken before the device's token is looked up: a server
    over its ceiling answers 503 without a database read (docs/performance.md, "10 000 agents")."""
    overload = context.overload
    if not overload.enter():
        raise HTTPException(503, "server busy; retry later", headers={"Retry-After": "1"})
    try:
        yield
    finally:
        overload.leave()


@router.post(
    "/v1/events",
    response_model=IngestResponse,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/x-ndjson": {"schema": {"type": "string"}},
            },
            "description": "one OCSF event per line; Content-Encoding: gzip allowed",
        }
    },
    responses={
        403: {"description": "events of another device"},
        413: {"description": "body, batch or decompressed size too large"},
        429: {"description": "device over its event rate; see Retry-After"},
        503: {"description": "server overloaded or database unavailable; see Retry-After"},
    },
)
async def post_events(
    request: Request,
    _slot: Annotated[None, Depends(ingest_slot)],  # first: FastAPI resolves dependencies in this order
    device: Annotated[Device, Depends(device_auth)],
    context: Annotated[ServerContext, Depends(server_context)],
) -> Response:
    settings = context.settings
    raw = await read_body(request, settings.max_body_bytes)
    gzipped = "gzip" in request.headers.get("content-encoding", "").lower()
    if not gzipped and len(raw) > settings.max_decompressed_bytes:
        raise HTTPException(413, "body too large")
    # One trip to the thread pool for the CPU and database work of the batch (each trip costs a
    # context switch and a queue wait under load).
    return await run_in_threadpool(ingest_batch, context, raw, gzipped, device)


@router.post("/v1/checkin", response_model=CheckinResponse)
def checkin(
    body: CheckinRequest,
    device: Annotated[Device, Depends(device_auth)],
    context: Annotated[ServerContext, Depends(server_context)],
) -> CheckinResponse:
    context.storage.checkin(device.id, body.model_dump(exclude_none=True), context.now_ms())
    alerts.on_checkin(context, device.id, body)
    return CheckinResponse(status="ok", heartbeat_s=body.heartbeat_s)
