"""Who is calling: the device-token and admin-token dependencies of the API routes.

Tokens are compared by their SHA-256 (server/auth.py). A token of the other kind gets 403, an unknown,
revoked or expired one 401 with ``WWW-Authenticate: Bearer``. Admin tokens have a role (server/accounts.py):
a viewer may read (GET, HEAD), only an admin may change anything (403 for a viewer).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from server import accounts, auth
from server.context import ServerContext, server_context
from server.session import Principal
from server.storage import Device

_READ_METHODS = frozenset({"GET", "HEAD"})
_bearer = HTTPBearer(auto_error=False, description="device token (mdt_...) or admin token (mat_...)")


def _token(request: Request, creds: HTTPAuthorizationCredentials | None) -> str | None:
    if creds is not None and creds.credentials:
        return creds.credentials[:512]
    return auth.bearer(request.headers.get("authorization"))


def device_auth(
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    context: Annotated[ServerContext, Depends(server_context)],
) -> Device:
    token = _token(request, creds)
    if token is None:
        raise HTTPException(401, "device token required", headers={"WWW-Authenticate": "Bearer"})
    hashed = auth.token_hash(token)
    device = context.storage.device_by_token(hashed)
    if device is not None and not device.revoked:
        return device
    if context.storage.is_admin(hashed):
        raise HTTPException(403, "an admin token cannot act as a device")
    raise HTTPException(401, "unknown or revoked device token", headers={"WWW-Authenticate": "Bearer"})


def admin_auth(
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    context: Annotated[ServerContext, Depends(server_context)],
) -> Principal:
    """The admin calling, by Bearer token; routes that record who acted depend on it again (FastAPI runs it
    once per request)."""
    token = _token(request, creds)
    if token is None:
        raise HTTPException(401, "admin token required", headers={"WWW-Authenticate": "Bearer"})
    hashed = auth.token_hash(token)
    info = accounts.token_by_hash(context.storage, hashed)
    if info is None:
        if context.storage.device_by_token(hashed) is not None:
            raise HTTPException(403, "a device token cannot use admin endpoints")
        raise HTTPException(401, "unknown admin token", headers={"WWW-Authenticate": "Bearer"})
    if info.revoked_at is not None:
        raise HTTPException(
            401, f"admin token {info.name!r} is revoked", headers={"WWW-Authenticate": "Bearer"}
        )
    if not info.active(context.now_ms()):
        raise HTTPException(
            401,
            f"admin token {info.name!r} has expired: ask an admin for a new one (mamori server admin-token create)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    needed: accounts.Role = "viewer" if request.method in _READ_METHODS else "admin"
    if not accounts.has_role(info.role, needed):
        raise HTTPException(
            403, f"admin token {info.name!r} has the viewer role: only an admin may change state"
        )
    return Principal(name=info.name, role=info.role)
