"""Alerts over the admin API (``GET /v1/admin/alerts``, ``POST /v1/admin/alerts/{id}/ack``; Bearer admin token,
acknowledging needs the admin role) and in the console (``GET /alerts``, ``POST /console/alerts/{id}/ack`` with
the session's CSRF token). An acknowledgement is written to the audit log in the transaction that makes it."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from pathlib import Path as FilePath
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs

import jinja2
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from server import alert_store, audit
from server.access import admin_auth
from server.alerts import RULES, TITLES, alert_settings, delivery_status, describe, when_text
from server.body import read_body
from server.context import ServerContext, server_context
from server.models import NO_CONTROL
from server.routes.admin import _instant_ms
from server.routes.console import ConsolePage
from server.session import Principal, check_csrf, console_principal, has_role

Context = Annotated[ServerContext, Depends(server_context)]
Admin = Annotated[Principal, Depends(admin_auth)]
AlertId = Annotated[str, Path(max_length=36, pattern=NO_CONTROL)]


def list_alerts(
    context: Context,
    _principal: Admin,
    *,
    state: Annotated[Literal["open", "all"], Query(description="open: not acknowledged yet")] = "open",
    rule: Annotated[str | None, Query(max_length=32, pattern=NO_CONTROL)] = None,
    device: Annotated[str | None, Query(max_length=64, pattern=NO_CONTROL)] = None,
    since: Annotated[
        datetime | None, Query(description="RFC 3339 instant; alerts raised at or after it")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> dict[str, Any]:
    """Alerts newest first, with each delivery channel's queue and dead letters (docs/server-api.md, "Alerts")."""
    if rule is not None and rule not in RULES:
        raise HTTPException(422, f"unknown rule {rule!r}; one of {', '.join(RULES)}")
    found, total = alert_store.list_alerts(
        context.storage,
        open_only=state == "open",
        rule=rule,
        device_id=device,
        since_ms=_instant_ms(since, "since"),
        limit=limit,
        offset=offset,
    )
    config = alert_settings(context.settings)
    return {
        "alerts": [a.as_json() for a in found],
        "total": total,
        "rules": {r: config.enabled(r) for r in RULES},
        "delivery": delivery_status(context.storage, config),
    }


def acknowledge(context: ServerContext, principal: Principal, alert_id: str) -> dict[str, Any]:
    if not has_role(principal, "admin"):
        raise HTTPException(
            403, f"{principal.name} has the viewer role: only an admin may acknowledge alerts"
        )
    now = context.now_ms()
    with context.storage.write() as conn:
        if alert_store.acknowledge(conn, alert_id, principal.name, now):
            audit.append(conn, actor=principal.name, action="alert.ack", target=alert_id, now_ms=now)
    alert = alert_store.get_alert(context.storage, alert_id)
    if alert is None:
        raise HTTPException(404, f"no alert {alert_id}")
    return alert.as_json()


def ack_alert(context: Context, principal: Admin, alert_id: AlertId) -> dict[str, Any]:
    """Acknowledge an alert (role admin); acknowledging it again changes nothing."""
    return acknowledge(context, principal, alert_id)


def api_router() -> APIRouter:
    api = APIRouter(tags=["admin"])
    api.add_api_route("/v1/admin/alerts", list_alerts, methods=["GET"])
    api.add_api_route(
        "/v1/admin/alerts/{alert_id}/ack",
        ack_alert,
        methods=["POST"],
        responses={403: {"description": "viewer role"}, 404: {"description": "no such alert"}},
    )
    return api


# --- console ---------------------------------------------------------------------------------------------

TEXT: dict[str, dict[str, str]] = {
    "ja": {
        "title": "Mamori アラート",
        "heading": "未確認のアラート",
        "none": "未確認のアラートはありません。",
        "when": "発生",
        "device": "端末",
        "rule": "種類",
        "what": "内容",
        "ack": "確認済みにする",
        "viewer": "確認済みにできるのは管理者ロールだけです。",
        "delivery": "通知の送信状況",
        "channel": "送信先",
        "queued": "送信待ち",
        "dead": "送信をあきらめた件数",
        "back": "概要に戻る",
        "count": "{n} 件",
    },
    "en": {
        "title": "Mamori alerts",
        "heading": "Open alerts",
        "none": "No open alerts.",
        "when": "When",
        "device": "Device",
        "rule": "Kind",
        "what": "What happened",
        "ack": "Acknowledge",
        "viewer": "Only the admin role can acknowledge alerts.",
        "delivery": "Notification delivery",
        "channel": "Channel",
        "queued": "Queued",
        "dead": "Given up",
        "back": "Back to the overview",
        "count": "{n} open",
    },
}


@cache
def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(FilePath(__file__).parents[1] / "templates")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )


def render_alerts(context: ServerContext, principal: Principal, lang: str) -> str:
    found, total = alert_store.list_alerts(context.storage, open_only=True, limit=500)
    items = []
    for alert in found:
        doc = alert.as_json()
        items.append(
            {
                "id": alert.id,
                "at": when_text(alert.cause_at, lang),
                "at_iso": datetime.fromtimestamp(alert.cause_at / 1000, UTC).isoformat(),
                "device": alert.hostname or alert.device_id or "",
                "device_id": alert.device_id or "",
                "rule": TITLES[lang].get(alert.rule, alert.rule),
                "what": describe(doc, lang),
            }
        )
    from server.dashboard import TEXT as CONSOLE_TEXT

    words = TEXT[lang]
    return (
        _templates()
        .get_template("alerts.html")
        .render(
            lang=lang,
            t={**CONSOLE_TEXT[lang], "title": words["title"]},  # base.html's words (navigation, sign-out)
            a=words,
            alerts=items,
            total=words["count"].format(n=total),
            can_ack=has_role(principal, "admin"),
            csrf=principal.csrf,
            principal=principal,
            delivery=delivery_status(context.storage, alert_settings(context.settings)),
        )
    )


console = APIRouter(include_in_schema=False)


@console.get("/alerts", response_class=HTMLResponse)
def alerts_page(page: ConsolePage) -> Response:
    return page.html(render_alerts(page.context, page.principal, page.viewer.language))


@console.post("/console/alerts/{alert_id}/ack")
async def console_ack(request: Request, context: Context, alert_id: AlertId) -> Response:
    form = parse_qs((await read_body(request, 4096)).decode("utf-8", "replace"))
    principal = await run_in_threadpool(console_principal, request, context)
    if principal is None:
        return RedirectResponse("/login", status_code=303)
    check_csrf(principal, (form.get("csrf") or [""])[0])
    await run_in_threadpool(acknowledge, context, principal, alert_id)
    return RedirectResponse("/alerts", status_code=303)


def router() -> APIRouter:
    """The alerts API and console page (server/app.py includes this one router)."""
    combined = APIRouter()
    combined.include_router(api_router())
    combined.include_router(console)
    return combined


__all__ = ["TEXT", "render_alerts", "router"]
