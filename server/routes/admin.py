"""The admin API: devices with their status, stored events, publishing signed policies (docs/server-api.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from server import audit
from server.access import admin_auth
from server.body import read_body
from server.context import ServerContext, server_context
from server.models import GROUP_PATTERN, NO_CONTROL, PolicyPublished
from server.publish import publish_policy
from server.session import Principal
from server.status import device_status
from server.storage import ms


def devices_with_status(context: ServerContext) -> list[dict[str, Any]]:
    """Every device with its computed ``status`` (also shown by the dashboard)."""
    settings = context.settings
    now = context.now_ms()
    items = context.storage.devices()
    for item in items:
        item["status"] = device_status(
            last_seen_ms=item["last_seen"],
            stopped=bool(item["stopped"]),
            state=item["state"],
            heartbeat_s=item["heartbeat_s"],
            now_ms=now,
            silence_factor=settings.silence_factor,
            min_silence_s=settings.min_silence_s,
        )
    return items


def admin_devices(context: Annotated[ServerContext, Depends(server_context)]) -> dict[str, Any]:
    return {"devices": devices_with_status(context)}


def _instant_ms(value: datetime | None, name: str) -> int | None:
    if value is None:
        return None
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        return max(0, min(ms(value), 2**53))
    except (OverflowError, ValueError, OSError) as err:
        raise HTTPException(422, f"{name} is out of range") from err


def admin_export(
    context: Annotated[ServerContext, Depends(server_context)],
    principal: Annotated[Principal, Depends(admin_auth)],
    *,
    format: Annotated[str, Query(pattern="^(ndjson|csv)$")] = "ndjson",
    since: Annotated[datetime | None, Query(description="RFC 3339 instant; events at or after it")] = None,
    until: Annotated[datetime | None, Query(description="RFC 3339 instant; events before it")] = None,
    device: Annotated[str | None, Query(max_length=64, pattern=NO_CONTROL)] = None,
    class_uid: Annotated[int | None, Query(alias="class", ge=0, le=99999)] = None,
    cursor: Annotated[
        str | None, Query(max_length=128, description="Mamori-Next-Cursor of the previous page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1_000_000, description="events in this page")] = 100_000,
) -> StreamingResponse:
    """Events oldest first (time, uid), at most ``limit``; the ``Mamori-Next-Cursor`` header names the next
    page (send it back as ``cursor`` with the same filters) and is absent on the last one."""
    from server.export import MEDIA_TYPES, Cursor, CursorError, ExportQuery, encode, iter_events, page_end

    try:
        after = Cursor.decode(cursor) if cursor else None
    except CursorError as err:
        raise HTTPException(400, str(err)) from err
    query = ExportQuery(_instant_ms(since, "since"), _instant_ms(until, "until"), device, class_uid, after)
    end = page_end(context.storage, query, limit)
    headers = {"Cache-Control": "no-store"}
    if end is not None:
        headers["Mamori-Next-Cursor"] = end.encode()
    rows = iter_events(context.storage, query, end=end)
    detail = {
        "format": format,
        "since": query.since_ms,
        "until": query.until_ms,
        "device": device,
        "class": class_uid,
    }
    audit.record(
        context.storage, actor=principal.name, action="events.export", detail=detail, now_ms=context.now_ms()
    )
    return StreamingResponse(encode(rows, format), media_type=MEDIA_TYPES[format], headers=headers)


def admin_forwarders(context: Annotated[ServerContext, Depends(server_context)]) -> dict[str, Any]:
    """Each forwarder's queue and dead-letter count (docs/server-api.md, "Forwarders")."""
    forwarding = context.forwarding
    return {"forwarders": forwarding.status() if forwarding is not None else []}


def admin_compliance(
    context: Annotated[ServerContext, Depends(server_context)],
    device_id: Annotated[str, Path(max_length=64, pattern=NO_CONTROL)],
    at: Annotated[datetime, Query(description="RFC 3339 instant")],
) -> dict[str, Any]:
    """Was the device compliant at ``at``, and under which policy (docs/server-api.md)."""
    from server.report import compliance_at

    at_ms = _instant_ms(at, "at")
    assert at_ms is not None
    return compliance_at(context.storage, device_id, at_ms)


def admin_events(
    context: Annotated[ServerContext, Depends(server_context)],
    device: Annotated[str | None, Query(max_length=64, pattern=NO_CONTROL)] = None,
    class_uid: Annotated[int | None, Query(alias="class", ge=0, le=99999)] = None,
    since: Annotated[datetime | None, Query(description="RFC 3339 instant; events at or after it")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    since_ms = None
    if since is not None:
        since = since if since.tzinfo else since.replace(tzinfo=UTC)
        try:
            since_ms = max(0, min(ms(since), 2**53))
        except (OverflowError, ValueError, OSError) as err:
            raise HTTPException(422, "since is out of range") from err
    return {
        "events": context.storage.events(device=device, class_uid=class_uid, since_ms=since_ms, limit=limit)
    }


def router(default_group: str) -> APIRouter:
    """The admin routes. A function, not a module-level router: the default of ``POST /v1/admin/policies``'s
    ``group`` is server.toml's ``default_group``, and the OpenAPI document shows it."""
    admin = APIRouter(tags=["admin"], dependencies=[Depends(admin_auth)])
    admin.add_api_route("/v1/admin/devices", admin_devices, methods=["GET"])
    admin.add_api_route("/v1/admin/events", admin_events, methods=["GET"])
    admin.add_api_route("/v1/admin/forwarders", admin_forwarders, methods=["GET"])
    admin.add_api_route("/v1/admin/devices/{device_id}/compliance", admin_compliance, methods=["GET"])
    admin.add_api_route(
        "/v1/admin/events/export",
        admin_export,
        methods=["GET"],
        response_class=StreamingResponse,
        responses={
            200: {"content": {"application/x-ndjson": {}, "text/csv": {}}, "description": "the events"},
            400: {"description": "cursor not made by this server"},
        },
    )

    async def admin_publish(
        request: Request,
        context: Annotated[ServerContext, Depends(server_context)],
        principal: Annotated[Principal, Depends(admin_auth)],
        group: Annotated[str, Query(pattern=GROUP_PATTERN)] = default_group,
    ) -> PolicyPublished:
        from policy.dsse import MAX_BUNDLE_BYTES

        bundle = await read_body(request, MAX_BUNDLE_BYTES)
        return await run_in_threadpool(
            publish_policy,
            context.storage,
            context.trusted,
            bundle,
            group,
            context.clock.now(),
            actor=principal.name,
        )

    admin.add_api_route(
        "/v1/admin/policies",
        admin_publish,
        methods=["POST"],
        status_code=201,
        response_model=PolicyPublished,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"type": "object"}}},
                "description": "a signed policy bundle (DSSE envelope) made by `mamori policy sign`",
            }
        },
        responses={409: {"description": "version not newer"}, 422: {"description": "bundle rejected"}},
    )
    return admin
