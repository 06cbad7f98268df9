"""The ja/en console for IT; not in the OpenAPI document. Pages: ``GET /`` (overview), ``GET /devices/{id}``,
``GET /events`` (filters, keyset paging) and ``GET /events.csv``, ``GET /policies``, ``GET /reports`` (the
compliance report of server/report.py for a group and a month, PDF or CSV); its own stylesheet and
script at ``GET /static/{name}``. Who is signed in is asked of server/session.py; sign-in is
server/routes/signin.py, the device actions' handlers (``POST /console/devices/{id}/...``) are elsewhere."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, StreamingResponse

from core.records import CLASSES, SEVERITIES
from server.context import ServerContext, server_context
from server.routes.signin import language
from server.session import Principal, console_principal, has_role

if TYPE_CHECKING:
    from server.console.render import Viewer

router = APIRouter()

STATIC = Path(__file__).resolve().parent.parent / "static"
_STATIC_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
_STATIC_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*\.(css|js|svg)$")
_NO_STORE = {"Cache-Control": "no-store"}


LANG_COOKIE = "lang"


def _viewer(request: Request, lang: str | None) -> Viewer:
    """The page's language (``?lang=``, else the one chosen before, kept in a cookie, else the browser's) and
    time zone."""
    from server.console.render import Viewer, zone

    chosen = request.cookies.get(LANG_COOKIE)
    language_ = language(request, lang if lang in ("ja", "en") else chosen)
    return Viewer(language_, zone(request.cookies.get("tz"), language_))


@dataclass(frozen=True)
class Page:
    """What every console page starts from: the server, who is signed in, and how they read."""

    context: ServerContext
    principal: Principal
    viewer: Viewer
    lang: str | None  # ``?lang=`` as given: kept in a cookie by :meth:`html`

    def html(self, html: str, status_code: int = 200) -> HTMLResponse:
        response = HTMLResponse(html, status_code=status_code, headers=_NO_STORE)
        if self.lang in ("ja", "en"):  # the language picked in the header stays while moving between pages
            response.set_cookie(LANG_COOKIE, self.lang, max_age=365 * 86400, samesite="strict")
        return response


def console_page(
    request: Request, context: Annotated[ServerContext, Depends(server_context)], lang: str | None = None
) -> Page:
    """The dependency of every page: not signed in (or the session ended) -> 303 to sign-in, back here after."""
    principal = console_principal(request, context)
    if principal is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise HTTPException(
            303, "sign in first", headers={"Location": "/login?next=" + quote(target, safe="")}
        )
    return Page(context, principal, _viewer(request, lang), lang)


ConsolePage = Annotated[Page, Depends(console_page)]


@router.get("/static/{name}", include_in_schema=False)
def static(name: str) -> Response:
    path = STATIC / name
    if not _STATIC_NAME.match(name) or not path.is_file():
        return Response("not found", status_code=404, media_type="text/plain")
    return FileResponse(
        path, media_type=_STATIC_TYPES[path.suffix], headers={"Cache-Control": "max-age=3600"}
    )


@router.get("/", include_in_schema=False, response_class=HTMLResponse)
def overview(page: ConsolePage) -> Response:
    from server.console import views
    from server.console.render import render

    context, viewer = page.context, page.viewer
    now = context.now_ms()
    data = views.overview(context.storage, context.settings, now)
    # The charts count UTC days ("charts_days" says so): label them as UTC dates, whatever the server's zone.
    day_labels = [datetime.fromtimestamp(d * 86400, UTC).strftime("%m/%d") for d in data["days"]]
    recent = context.storage.events(limit=15)
    names = views.hostnames(context.storage, {r["device"]["uid"] for r in recent})
    series = [(viewer.check(check), values) for check, values in data["noncompliant"].items()]
    html = render(
        "overview.html",
        viewer,
        principal=page.principal,
        o=data,
        now_ms=now,
        day_labels=day_labels,
        noncompliant_series=series or [(viewer.t["failing"], [0.0] * len(day_labels))],
        unit=" min" if viewer.language == "en" else " 分",
        device_rows=data["device_rows"],
        more_devices=data["more_devices"],
        recent=recent,
        names=names,
    )
    return page.html(html)


@router.get("/devices/{device_id}", include_in_schema=False, response_class=HTMLResponse)
def device_page(page: ConsolePage, device_id: str) -> Response:
    from server.console import views
    from server.console.render import render

    context, viewer, principal = page.context, page.viewer, page.principal
    data = views.device(context.storage, context.settings, device_id, context.now_ms())
    if data is None:
        return page.html(
            render("message.html", viewer, principal=principal, message=viewer.t["not_found"]), 404
        )
    d = data["device"]
    html = render(
        "device.html",
        viewer,
        principal=principal,
        is_admin=has_role(principal, "admin"),
        d=d,
        checks=data["checks"],
        timeline=data["timeline"],
        names={d["id"]: d["hostname"] or d["id"]},
    )
    return page.html(html)


class FilterError(ValueError):
    pass


def _local_ms(text: str, viewer: object, name: str) -> int | None:
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError as err:
        raise FilterError(f"{name}: write a date and time, e.g. 2026-12-01T09:00") from err
    if when.tzinfo is None:
        when = when.replace(tzinfo=viewer.tz)  # type: ignore[attr-defined]
    return int(when.timestamp() * 1000)


def _int(text: str, name: str, allowed: object) -> int | None:
    if not text:
        return None
    try:
        value = int(text)
    except ValueError as err:
        raise FilterError(f"{name}: not a number") from err
    if value not in allowed:  # type: ignore[operator]
        raise FilterError(f"{name}: {value} is not one of the choices")
    return value


_FILTER_KEYS = ("group", "device", "class", "check", "severity", "since", "until")


def _filter(request: Request, viewer: object):  # type: ignore[no-untyped-def]
    from server.export import ExportQuery

    q = {k: request.query_params.get(k, "").strip()[:128] for k in _FILTER_KEYS}
    query = ExportQuery(
        group=q["group"] or None,
        device=q["device"] or None,
        class_uid=_int(q["class"], "class", CLASSES),
        check=q["check"] or None,
        severity=_int(q["severity"], "severity", SEVERITIES),
        since_ms=_local_ms(q["since"], viewer, "from"),
        until_ms=_local_ms(q["until"], viewer, "to"),
    )
    kept = {k: v for k, v in q.items() if v}
    if "lang" in request.query_params:
        kept["lang"] = request.query_params["lang"]
    return query, q, ("?" + urlencode(kept)) if kept else ""


@router.get("/events", include_in_schema=False, response_class=HTMLResponse)
def events_page(request: Request, page: ConsolePage, before: str | None = None) -> Response:
    from server.console import views
    from server.console.render import render
    from server.export import Cursor, CursorError, ExportQuery

    context, viewer = page.context, page.viewer
    error = None
    status = 200
    query = ExportQuery()
    raw = dict.fromkeys(_FILTER_KEYS, "")
    query_string = ""
    cursor = None
    try:
        query, raw, query_string = _filter(request, viewer)
        cursor = Cursor.decode(before) if before else None
    except (FilterError, CursorError) as err:
        error, status = str(err), 400
    rows, next_cursor = views.events_page(context.storage, query, cursor) if error is None else ([], None)
    names = views.hostnames(context.storage, {r["device"]["uid"] for r in rows})
    html = render(
        "events.html",
        viewer,
        principal=page.principal,
        error=error,
        f=query,
        since_text=raw["since"],
        until_text=raw["until"],
        choices=views.filter_choices(context.storage),
        classes=sorted(CLASSES),
        severities=sorted(s for s in SEVERITIES if s > 0),
        page=rows,
        names=names,
        query_string=query_string,
        cursor_given=cursor is not None,
        next_cursor=next_cursor.encode() if next_cursor else None,
    )
    return page.html(html, status)


@router.get("/events.csv", include_in_schema=False)
def events_csv(request: Request, page: ConsolePage) -> Response:
    from server.export import MEDIA_TYPES, encode, iter_events

    context = page.context
    try:
        query, _raw, _qs = _filter(request, page.viewer)
    except FilterError as err:
        return Response(f"{err}\n", status_code=400, media_type="text/plain; charset=utf-8")
    stamp = datetime.fromtimestamp(context.now_ms() / 1000).strftime("%Y%m%d-%H%M%S")
    headers = {"Content-Disposition": f'attachment; filename="mamori-events-{stamp}.csv"', **_NO_STORE}
    rows = iter_events(context.storage, query)
    return StreamingResponse(encode(rows, "csv"), media_type=MEDIA_TYPES["csv"], headers=headers)


@router.get("/policies", include_in_schema=False, response_class=HTMLResponse)
def policies_page(page: ConsolePage) -> Response:
    from server.console import views
    from server.console.render import render

    versions = views.policies_page(page.context.storage)
    return page.html(render("policies.html", page.viewer, principal=page.principal, versions=versions))


_PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def _previous_month(now_ms: int) -> str:
    today = datetime.fromtimestamp(now_ms / 1000)
    year, month = (today.year, today.month - 1) if today.month > 1 else (today.year - 1, 12)
    return f"{year:04d}-{month:02d}"


@router.get("/reports", include_in_schema=False, response_class=HTMLResponse)
def reports_page(
    page: ConsolePage,
    *,
    group: str | None = None,
    period: str | None = None,
    format: str = "pdf",
) -> Response:
    """The compliance report (the same as `mamori server report`): a form, and the file when it is filled in."""
    import sqlalchemy as sa

    from server import audit
    from server.console.render import render
    from server.report import ReportError, build, render_csv, render_pdf
    from server.storage import devices

    context, viewer, principal = page.context, page.viewer, page.principal
    with context.storage.engine.connect() as conn:
        groups = sorted(conn.execute(sa.select(devices.c.group_name).distinct()).scalars())
    chosen = period or _previous_month(context.now_ms())
    error = None
    if group is not None:
        if format not in ("pdf", "csv"):
            error = "format: pdf or csv"
        elif not _PERIOD.match(chosen):
            error = f"period {chosen!r}: a month, YYYY-MM"
        else:
            try:
                summary = build(context.storage, group, chosen, now=datetime.now().astimezone())
            except ReportError as err:
                error = str(err)
            else:
                data = (
                    render_pdf(summary, viewer.language)
                    if format == "pdf"
                    else render_csv(summary, viewer.language)
                )
                audit.record(
                    context.storage,
                    actor=principal.name,
                    action="report.download",
                    target=group,
                    detail={"period": chosen, "format": format, "sha256": summary.sha256},
                    now_ms=context.now_ms(),
                )
                name = f"mamori-report-{group}-{chosen}.{format}"
                media = "application/pdf" if format == "pdf" else "text/csv; charset=utf-8"
                headers = {"Content-Disposition": f'attachment; filename="{name}"', **_NO_STORE}
                return Response(data, media_type=media, headers=headers)
    html = render(
        "reports.html", viewer, principal=principal, groups=groups, group=group, period=chosen, error=error
    )
    return page.html(html, status_code=400 if error else 200)
