"""Who is signed in to the console: :class:`Principal` and the :func:`console_principal` dependency.

The console's pages ask ``console_principal`` for the signed-in admin (``None`` when nobody is signed in) and
check the role they need with :func:`has_role`; every form that changes state posts the session's CSRF token
back as ``csrf`` and the handler calls :func:`check_csrf`. How a sign-in is made and kept is this module's and
server/accounts.py's business alone: the cookie ``COOKIE`` holds a random session id (never the admin token),
the database a session row with idle and absolute expiry (server/accounts.py).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from fastapi import HTTPException, Request

from server import accounts
from server.accounts import ROLES, Role
from server.context import ServerContext

__all__ = ["COOKIE", "ROLES", "Principal", "Role", "check_csrf", "console_principal", "has_role"]

COOKIE = "mamori_session"


@dataclass(frozen=True)
class Principal:
    name: str  # the admin account or named token, shown in the console and written to the audit log
    role: Role
    csrf: str = ""  # the session's CSRF token: every console form posts it back as ``csrf``


def has_role(principal: Principal, role: Role) -> bool:
    return accounts.has_role(principal.role, role)


def console_principal(request: Request, context: ServerContext) -> Principal | None:
    """The signed-in admin of this request's session cookie, else None (no cookie, unknown, expired, idle too
    long, signed out, or its token revoked or expired)."""
    session_id = request.cookies.get(COOKIE)
    if not session_id or len(session_id) > 128:
        return None
    live = accounts.session(context.storage, session_id, context.now_ms())
    return Principal(name=live.name, role=live.role, csrf=live.csrf) if live is not None else None


def check_csrf(principal: Principal, form_value: str | None) -> None:
    """Raise 403 unless ``form_value`` is this session's CSRF token."""
    if not principal.csrf or not form_value or not hmac.compare_digest(principal.csrf, form_value):
        raise HTTPException(
            403, "the form's CSRF token does not match this session: reload the page and try again"
        )
