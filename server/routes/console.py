"""The ja/en dashboard for IT (``GET /``) and its admin-token sign-in (``POST /login``); not in the OpenAPI
document."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from server import auth
from server.body import read_body
from server.context import ServerContext, server_context
from server.routes.admin import devices_with_status
from server.session import COOKIE, console_principal

router = APIRouter()


@router.get("/", include_in_schema=False, response_class=HTMLResponse)
def dashboard(
    request: Request, context: Annotated[ServerContext, Depends(server_context)], lang: str | None = None
) -> HTMLResponse:
    from server.dashboard import render_dashboard, render_login

    language = _language(request, lang)
    if console_principal(request, context) is None:
        token = request.cookies.get(COOKIE) or auth.bearer(request.headers.get("authorization"))
        return HTMLResponse(render_login(language, failed=bool(token)), status_code=401 if token else 200)
    recent = context.storage.events(limit=50)
    return HTMLResponse(render_dashboard(language, devices_with_status(context), recent, context.clock.now()))


@router.post("/login", include_in_schema=False)
async def login(request: Request, context: Annotated[ServerContext, Depends(server_context)]) -> Response:
    from urllib.parse import parse_qs

    form = parse_qs((await read_body(request, 4096)).decode("utf-8", "replace"))
    token = (form.get("token") or [""])[0].strip()
    if not token or not await run_in_threadpool(context.storage.is_admin, auth.token_hash(token)):
        return RedirectResponse("/?failed=1", status_code=303)
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        max_age=8 * 3600,
    )
    return response


def _language(request: Request, lang: str | None) -> str:
    if lang in ("ja", "en"):
        return lang
    accept = request.headers.get("accept-language", "").lower()
    return "ja" if accept.startswith("ja") else "en"
