"""Lifecycle of devices, admin tokens and enrollment secrets, and the audit log, over the admin API
(``/v1/admin/...``, Bearer admin token: GET needs the viewer role, the rest admin) and the console's device
actions (``POST /console/devices/{id}/...``, session cookie, CSRF token, role admin). Every change is written
to the audit log (server/audit.py) by server/accounts.py in the transaction that makes it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from fastapi.responses import RedirectResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from server import accounts, audit
from server.access import admin_auth
from server.body import read_body
from server.context import ServerContext, server_context
from server.models import NO_CONTROL
from server.session import Principal, check_csrf, console_principal, has_role
from server.status import device_status

DeviceId = Annotated[str, Path(max_length=64, pattern=NO_CONTROL)]
Context = Annotated[ServerContext, Depends(server_context)]
Admin = Annotated[Principal, Depends(admin_auth)]


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(
        min_length=1, max_length=64, description="who or what uses the token, e.g. alice or siem"
    )
    role: Literal["viewer", "admin"] = "viewer"
    expires: str | None = Field(
        default="90d", max_length=10, description="lifetime such as 90d, 12h, 2w; null for no expiry"
    )


def _refused(err: accounts.AccountError) -> HTTPException:
    return HTTPException(err.status, str(err))


def device_json(context: ServerContext, item: dict[str, Any]) -> dict[str, Any]:
    """A device's lifecycle record with its computed ``status`` (``replaced`` for a replaced PC)."""
    settings = context.settings
    status = device_status(
        last_seen_ms=item["last_seen"],
        stopped=item["stopped"],
        state=item["state"],
        heartbeat_s=item.pop("heartbeat_s", None),
        now_ms=context.now_ms(),
        silence_factor=settings.silence_factor,
        min_silence_s=settings.min_silence_s,
    )
    item["status"] = "replaced" if item["replaced"] else status
    return item


def _device_change(
    context: ServerContext, principal: Principal, device_id: str, change: str
) -> dict[str, Any]:
    now = context.now_ms()
    storage = context.storage
    try:
        if change == "revoke":
            return device_json(
                context, accounts.revoke_device(storage, device_id, actor=principal.name, now=now)
            )
        if change == "replaced":
            return device_json(
                context, accounts.mark_replaced(storage, device_id, actor=principal.name, now=now)
            )
        removed = accounts.delete_device(storage, device_id, actor=principal.name, now=now)
    except accounts.AccountError as err:
        raise _refused(err) from err
    return {"id": device_id, "deleted": True, "removed": removed}


# --- admin API ---------------------------------------------------------------------------------------------


def get_device(context: Context, device_id: DeviceId) -> dict[str, Any]:
    """One device: identity, state, lifecycle (revoked / replaced, when and by whom)."""
    item = accounts.device(context.storage, device_id)
    if item is None:
        raise HTTPException(404, f"no device has id {device_id!r}: see GET /v1/admin/devices")
    return device_json(context, item)


def revoke_device(context: Context, principal: Admin, device_id: DeviceId) -> dict[str, Any]:
    """Refuse the device's token from its next call on (401); its history stays."""
    return _device_change(context, principal, device_id, "revoke")


def replace_device(context: Context, principal: Admin, device_id: DeviceId) -> dict[str, Any]:
    """Mark the PC replaced: its token is revoked, it leaves the silent/stopped counts, its history stays."""
    return _device_change(context, principal, device_id, "replaced")


def delete_device(context: Context, principal: Admin, device_id: DeviceId) -> dict[str, Any]:
    """Remove the device and everything stored about it (events, gaps, state); the audit log keeps the record."""
    return _device_change(context, principal, device_id, "delete")


def list_tokens(context: Context) -> dict[str, Any]:
    now = context.now_ms()
    return {"tokens": [info.as_json(now) for info in accounts.list_tokens(context.storage)]}


def create_token(context: Context, principal: Admin, body: TokenCreate) -> dict[str, Any]:
    """A new named admin token; the token itself is in this answer only (the server keeps its SHA-256)."""
    now = context.now_ms()
    try:
        expires_in = accounts.parse_duration_ms(body.expires) if body.expires else None
        token, info = accounts.create_token(
            context.storage,
            name=body.name,
            role=body.role,
            expires_in_ms=expires_in,
            actor=principal.name,
            now=now,
        )
    except accounts.AccountError as err:
        raise _refused(err) from err
    return {**info.as_json(now), "token": token}


def revoke_token(
    context: Context, principal: Admin, token_id: Annotated[int, Path(ge=1, le=2**31)]
) -> dict[str, Any]:
    now = context.now_ms()
    try:
        info = accounts.revoke_token(context.storage, token_id, actor=principal.name, now=now)
    except accounts.AccountError as err:
        raise _refused(err) from err
    return info.as_json(now)


def list_secrets(context: Context) -> dict[str, Any]:
    """Enrollment secrets (never the secret itself: the server keeps only its SHA-256)."""
    return {"secrets": accounts.list_secrets(context.storage, context.now_ms())}


def revoke_secret(
    context: Context, principal: Admin, secret_id: Annotated[int, Path(ge=1, le=2**31)]
) -> dict[str, Any]:
    now = context.now_ms()
    try:
        accounts.revoke_secret(context.storage, secret_id, actor=principal.name, now=now)
    except accounts.AccountError as err:
        raise _refused(err) from err
    return next(s for s in accounts.list_secrets(context.storage, now) if s["id"] == secret_id)


def _chain(context: ServerContext) -> dict[str, Any]:
    checked, broken = audit.verify(context.storage)
    head_id, head_hash = audit.head(context.storage)
    return {
        "ok": broken is None,
        "entries": checked if broken is None else head_id,
        "verified": checked,
        "broken_id": broken.id if broken else None,
        "reason": broken.reason if broken else None,
        "head_id": head_id,
        "head_hash": head_hash,
    }


def _ndjson(entries: Iterator[audit.Entry]) -> Iterator[bytes]:
    for entry in entries:
        yield (json.dumps(entry.as_json(), ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def get_audit(
    context: Context,
    principal: Admin,
    *,
    format: Annotated[str, Query(pattern="^(json|ndjson)$")] = "json",
    after: Annotated[int, Query(ge=0, le=2**62, description="entries with a larger id")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    actor: Annotated[str | None, Query(max_length=128, pattern=NO_CONTROL)] = None,
    action: Annotated[str | None, Query(max_length=64, pattern=NO_CONTROL)] = None,
    target: Annotated[str | None, Query(max_length=255, pattern=NO_CONTROL)] = None,
) -> Response:
    """Entries oldest first with the chain's verification (``chain.ok``: false names the first broken entry);
    ``format=ndjson`` exports the whole log, one entry a line, with their hashes, for keeping elsewhere."""
    if format == "ndjson":
        audit.record(context.storage, actor=principal.name, action="audit.export", now_ms=context.now_ms())
        return StreamingResponse(
            _ndjson(audit.iter_entries(context.storage)),
            media_type="application/x-ndjson",
            headers={"Cache-Control": "no-store"},
        )
    page = audit.entries(
        context.storage, after_id=after, limit=limit, actor=actor, action=action, target=target
    )
    body = {"entries": [e.as_json() for e in page], "chain": _chain(context)}
    return Response(json.dumps(body, ensure_ascii=False), media_type="application/json")


def verify_audit(context: Context) -> dict[str, Any]:
    """Recompute the hash chain; ``ok`` false names the first broken entry."""
    return _chain(context)


def api_router() -> APIRouter:
    api = APIRouter(tags=["lifecycle"], dependencies=[Depends(admin_auth)])
    api.add_api_route("/v1/admin/devices/{device_id}", get_device, methods=["GET"])
    api.add_api_route("/v1/admin/devices/{device_id}", delete_device, methods=["DELETE"])
    api.add_api_route("/v1/admin/devices/{device_id}/revoke", revoke_device, methods=["POST"])
    api.add_api_route("/v1/admin/devices/{device_id}/replaced", replace_device, methods=["POST"])
    api.add_api_route("/v1/admin/tokens", list_tokens, methods=["GET"])
    api.add_api_route("/v1/admin/tokens", create_token, methods=["POST"], status_code=201)
    api.add_api_route("/v1/admin/tokens/{token_id}/revoke", revoke_token, methods=["POST"])
    api.add_api_route("/v1/admin/enroll-secrets", list_secrets, methods=["GET"])
    api.add_api_route("/v1/admin/enroll-secrets/{secret_id}/revoke", revoke_secret, methods=["POST"])
    api.add_api_route(
        "/v1/admin/audit",
        get_audit,
        methods=["GET"],
        responses={200: {"content": {"application/json": {}, "application/x-ndjson": {}}}},
    )
    api.add_api_route("/v1/admin/audit/verify", verify_audit, methods=["GET"])
    return api


# --- console actions ---------------------------------------------------------------------------------------

console = APIRouter(include_in_schema=False)


async def _console_action(request: Request, context: ServerContext, device_id: str, change: str) -> Response:
    form = parse_qs((await read_body(request, 4096)).decode("utf-8", "replace"))
    principal = await run_in_threadpool(console_principal, request, context)
    if principal is None:
        return RedirectResponse("/login", status_code=303)
    check_csrf(principal, (form.get("csrf") or [""])[0])
    if not has_role(principal, "admin"):
        raise HTTPException(403, f"{principal.name} has the viewer role: only an admin may change a device")
    await run_in_threadpool(_device_change, context, principal, device_id, change)
    where = "/" if change == "delete" else f"/devices/{quote(device_id, safe='')}"
    return RedirectResponse(where, status_code=303)


@console.post("/console/devices/{device_id}/revoke")
async def console_revoke(request: Request, context: Context, device_id: DeviceId) -> Response:
    return await _console_action(request, context, device_id, "revoke")


@console.post("/console/devices/{device_id}/replaced")
async def console_replaced(request: Request, context: Context, device_id: DeviceId) -> Response:
    return await _console_action(request, context, device_id, "replaced")


@console.post("/console/devices/{device_id}/delete")
async def console_delete(request: Request, context: Context, device_id: DeviceId) -> Response:
    return await _console_action(request, context, device_id, "delete")


def router() -> APIRouter:
    """The lifecycle API and the console's device actions (server/app.py includes this one router)."""
    combined = APIRouter()
    combined.include_router(api_router())
    combined.include_router(console)
    return combined
