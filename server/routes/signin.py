"""Console sign-in: ``GET /login`` (the form), ``POST /login`` and ``POST /logout``; not in the OpenAPI
document. Who is signed in is answered by :mod:`server.session`."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from server import auth
from server.body import read_body
from server.context import ServerContext, server_context
from server.session import COOKIE

router = APIRouter()


def language(request: Request, lang: str | None) -> str:
    """``?lang=`` if given, else the browser's first Accept-Language."""
    if lang in ("ja", "en"):
        return lang
    accept = request.headers.get("accept-language", "").lower()
    return "ja" if accept.startswith("ja") else "en"


@router.get("/login", include_in_schema=False, response_class=HTMLResponse)
def login_form(request: Request, lang: str | None = None, failed: int = 0) -> HTMLResponse:
    from server.dashboard import render_login

    return HTMLResponse(render_login(language(request, lang), failed=bool(failed)))


@router.post("/login", include_in_schema=False)
async def login(request: Request, context: Annotated[ServerContext, Depends(server_context)]) -> Response:
    form = parse_qs((await read_body(request, 4096)).decode("utf-8", "replace"))
    token = (form.get("token") or [""])[0].strip()
    if not token or not await run_in_threadpool(context.storage.is_admin, auth.token_hash(token)):
        return RedirectResponse("/login?failed=1", status_code=303)
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


@router.post("/logout", include_in_schema=False)
def logout() -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE)
    return response
