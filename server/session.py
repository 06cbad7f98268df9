"""Who is signed in to the console: :class:`Principal` and the :func:`console_principal` dependency.

The console's pages ask ``console_principal`` for the signed-in admin (``None`` when nobody is signed in) and
check the role they need with :func:`has_role`. How a sign-in is made and kept (the sign-in form, the session
cookie) is this module's business alone, so the pages do not change when it does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fastapi import Request

from server import auth
from server.context import ServerContext

Role = Literal["viewer", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "admin")
COOKIE = "mamori_admin"


@dataclass(frozen=True)
class Principal:
    name: str  # the admin account or named token, shown in the console and written to the audit log
    role: Role
    csrf: str = ""  # the session's CSRF token: every console form posts it back as ``csrf``


def has_role(principal: Principal, role: Role) -> bool:
    return ROLES.index(principal.role) >= ROLES.index(role)


def console_principal(request: Request, context: ServerContext) -> Principal | None:
    """The signed-in admin of this request, else None (transitional: the cookie still holds an admin token)."""
    token = request.cookies.get(COOKIE) or auth.bearer(request.headers.get("authorization"))
    if token and context.storage.is_admin(auth.token_hash(token)):
        return Principal(name="admin", role="admin")
    return None
