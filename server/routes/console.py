"""The ja/en console for IT (``GET /``); not in the OpenAPI document. Sign-in is server/routes/signin.py."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from server.context import ServerContext, server_context
from server.routes.admin import devices_with_status
from server.routes.signin import language
from server.session import console_principal

router = APIRouter()


@router.get("/", include_in_schema=False, response_class=HTMLResponse)
def dashboard(
    request: Request, context: Annotated[ServerContext, Depends(server_context)], lang: str | None = None
) -> Response:
    from server.dashboard import render_dashboard

    if console_principal(request, context) is None:
        return RedirectResponse("/login" + (f"?lang={lang}" if lang in ("ja", "en") else ""), status_code=303)
    recent = context.storage.events(limit=50)
    return HTMLResponse(
        render_dashboard(language(request, lang), devices_with_status(context), recent, context.clock.now())
    )
