"""Console sign-in: ``GET /login`` (the form), ``POST /login`` and ``POST /logout``; not in the OpenAPI
document. Who is signed in is answered by :mod:`server.session`; tokens, sessions and the throttling of failed
sign-ins are server/accounts.py.

A sign-in exchanges a named admin token for a session: the cookie carries a random session id (HttpOnly,
SameSite=Strict, Secure over https), never the token. A failed sign-in shows its error on the form (401) and is
counted in the database; too many failures from one address or overall answer 429 with ``Retry-After``.
"""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path
from typing import Annotated
from urllib.parse import parse_qs

import jinja2
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from server import accounts, auth
from server.body import read_body
from server.context import ServerContext, server_context
from server.session import COOKIE, check_csrf, console_principal

router = APIRouter()

# The sign-in page's own text (the console's catalog is server/console/text.py).
TEXT: dict[str, dict[str, str]] = {
    "en": {
        "login": "Sign in to Mamori",
        "token": "Admin token",
        "submit": "Sign in",
        "signin_failed": "Sign-in failed: this token is unknown, revoked or expired. Check it, or ask an admin "
        "for a new one.",
        "signin_throttled": "Too many failed sign-ins. Try again in {minutes} min.",
    },
    "ja": {
        "login": "Mamori にサインイン",
        "token": "管理者トークン",
        "submit": "サインイン",
        "signin_failed": "サインインできませんでした。トークンが正しくないか、失効または期限切れです。"
        "確認するか、管理者に新しいトークンを発行してもらってください。",
        "signin_throttled": "サインインの失敗が続いたため、受け付けを一時停止しています。"
        "{minutes} 分後にもう一度お試しください。",
    },
}


def language(request: Request, lang: str | None) -> str:
    """``?lang=`` if given, else the browser's first Accept-Language."""
    if lang in ("ja", "en"):
        return lang
    accept = request.headers.get("accept-language", "").lower()
    return "ja" if accept.startswith("ja") else "en"


def client_address(request: Request) -> str:
    """The address failed sign-ins are counted against (uvicorn puts a trusted proxy's X-Forwarded-For here)."""
    return request.client.host if request.client is not None else "unknown"


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a path on this server only (``/devices/d1?lang=ja``), never another site
    (``//evil.example``, ``https://...``, a backslash that some browsers read as a slash)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value or len(value) > 512:
        return "/"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return "/"
    return value


@cache
def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).parents[1] / "templates")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )


def _page(
    lang: str,
    *,
    error: str = "",
    next_url: str = "/",
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    html = (
        _templates()
        .get_template("login.html")
        .render(t=TEXT[lang], lang=lang, failed=bool(error), error=error, next_url=next_url)
    )
    return HTMLResponse(html, status_code=status_code, headers=headers)


@router.get("/login", include_in_schema=False, response_class=HTMLResponse)
def login_form(
    request: Request,
    context: Annotated[ServerContext, Depends(server_context)],
    lang: str | None = None,
    failed: int = 0,
    next_page: Annotated[str | None, Query(alias="next", max_length=512)] = None,
) -> Response:
    chosen = language(request, lang)
    target = safe_next(next_page)
    if console_principal(request, context) is not None:
        return RedirectResponse(target, status_code=303)
    return _page(chosen, error=TEXT[chosen]["signin_failed"] if failed else "", next_url=target)


def _sign_in(context: ServerContext, token: str, client: str) -> tuple[str, str] | int:
    """(session id, name) on success, else the milliseconds to wait (> 0) or 0 for a plain failure."""
    now = context.now_ms()
    wait = accounts.signin_retry_after_ms(context.storage, client, now)
    if wait > 0:
        return wait
    info = accounts.token_by_hash(context.storage, auth.token_hash(token)) if token else None
    if info is None or not info.active(now):
        reason = "unknown" if info is None else ("revoked" if info.revoked_at is not None else "expired")
        accounts.record_failed_signin(context.storage, client, reason=reason, now=now)
        return 0
    return accounts.start_session(context.storage, info, client=client, now=now), info.name


@router.post("/login", include_in_schema=False)
async def login(request: Request, context: Annotated[ServerContext, Depends(server_context)]) -> Response:
    form = parse_qs((await read_body(request, 4096)).decode("utf-8", "replace"))
    token = (form.get("token") or [""])[0].strip()[:512]
    lang = language(request, (form.get("lang") or [""])[0])
    target = safe_next((form.get("next") or [""])[0])
    outcome = await run_in_threadpool(_sign_in, context, token, client_address(request))
    if isinstance(outcome, int):
        if outcome > 0:
            seconds = math.ceil(outcome / 1000)
            message = TEXT[lang]["signin_throttled"].format(minutes=max(1, math.ceil(seconds / 60)))
            retry = {"Retry-After": str(seconds)}
            return _page(lang, error=message, next_url=target, status_code=429, headers=retry)
        return _page(lang, error=TEXT[lang]["signin_failed"], next_url=target, status_code=401)
    session_id, _name = outcome
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        session_id,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        max_age=accounts.SESSION_ABSOLUTE_MS // 1000,
        path="/",
    )
    return response


@router.post("/logout", include_in_schema=False)
async def logout(request: Request, context: Annotated[ServerContext, Depends(server_context)]) -> Response:
    form = parse_qs((await read_body(request, 4096)).decode("utf-8", "replace"))
    principal = await run_in_threadpool(console_principal, request, context)
    session_id = request.cookies.get(COOKIE)
    if principal is not None and session_id:
        check_csrf(principal, (form.get("csrf") or [""])[0])
        await run_in_threadpool(accounts.end_session, context.storage, session_id, now=context.now_ms())
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(
        COOKIE, path="/", httponly=True, samesite="strict", secure=request.url.scheme == "https"
    )
    return response
