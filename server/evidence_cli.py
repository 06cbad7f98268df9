"""`mamori server export` and `mamori server report` (SPEC.md, Command line): evidence straight from the
database, the same data as ``GET /v1/admin/events/export``. Registered by ``server.cli.register``."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from server.cli import ServerCommandError, _common, _settings, _storage


def register(subparsers: Any) -> None:
    export = subparsers.add_parser("export", help="every stored event, oldest first (NDJSON or CSV)")
    _common(export)
    export.add_argument("--since", default=None, help="RFC 3339 instant: events at or after it")
    export.add_argument("--until", default=None, help="RFC 3339 instant: events before it")
    export.add_argument("--device", default=None, help="only this device id")
    export.add_argument("--class", dest="class_uid", type=int, default=None, help="only this OCSF class_uid")
    export.add_argument("--format", choices=("ndjson", "csv"), default="ndjson")
    export.add_argument("-o", "--output", type=Path, default=None, help="file to write (default stdout)")
    export.set_defaults(func=cmd_export)

    report = subparsers.add_parser("report", help="compliance evidence for a group and a month (PDF or CSV)")
    _common(report)
    report.add_argument("--group", required=True, help="policy group")
    report.add_argument("--period", required=True, help="month, YYYY-MM (UTC)")
    report.add_argument("--format", choices=("pdf", "csv"), default="pdf")
    report.add_argument("--lang", choices=("ja", "en"), default="ja")
    report.add_argument("-o", "--output", type=Path, required=True, help="file to write")
    report.set_defaults(func=cmd_report)

    answer = subparsers.add_parser("compliance", help="was a device compliant at a time, under which policy")
    _common(answer)
    answer.add_argument("--device", required=True, help="device id")
    answer.add_argument("--at", required=True, help="RFC 3339 instant")
    answer.add_argument("--json", action="store_true")
    answer.set_defaults(func=cmd_compliance)

    retention = subparsers.add_parser(
        "retention", help="delete what is past server.toml's [retention] age limits, now (batched)"
    )
    _common(retention)
    retention.add_argument("--json", action="store_true")
    retention.set_defaults(func=cmd_retention)


def parse_instant(text: str | None, option: str) -> int | None:
    """RFC 3339 (or a date) -> epoch ms; a time without an offset is UTC."""
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError as err:
        raise ServerCommandError(
            f"{option} {text!r}: write an RFC 3339 time, e.g. 2026-11-01T00:00:00Z"
        ) from err
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


def cmd_export(args: argparse.Namespace) -> int:
    from server.export import ExportQuery, encode, iter_events

    query = ExportQuery(
        parse_instant(args.since, "--since"),
        parse_instant(args.until, "--until"),
        args.device,
        args.class_uid,
    )
    storage = _storage(_settings(args))
    count = 0
    from server import audit
    from server.cli import _actor, _now_ms

    detail = {
        "format": args.format,
        "since": query.since_ms,
        "until": query.until_ms,
        "device": args.device,
        "class": args.class_uid,
    }
    audit.record(storage, actor=_actor(), action="events.export", detail=detail, now_ms=_now_ms())

    def counted() -> Any:
        nonlocal count
        for row in iter_events(storage, query):
            count += 1
            yield row

    if args.output is None:
        for chunk in encode(counted(), args.format):
            sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
    else:
        partial = args.output.with_name(args.output.name + ".partial")
        try:
            with partial.open("wb") as out:
                for chunk in encode(counted(), args.format):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(partial, args.output)
        except OSError as err:
            raise ServerCommandError(f"{args.output}: cannot write ({err.strerror or err})") from err
        print(f"exported {count} events to {args.output}", file=sys.stderr)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from server.report import ReportError, build, render_csv, render_pdf

    storage = _storage(_settings(args))
    try:
        summary = build(storage, args.group, args.period, now=datetime.now(UTC))
        data = render_pdf(summary, args.lang) if args.format == "pdf" else render_csv(summary, args.lang)
    except ReportError as err:
        raise ServerCommandError(str(err)) from err
    partial = args.output.with_name(args.output.name + ".partial")
    try:
        partial.write_bytes(data)
        os.replace(partial, args.output)
    except OSError as err:
        raise ServerCommandError(f"{args.output}: cannot write ({err.strerror or err})") from err
    print(
        f"report for {args.group} {args.period}: {summary.event_count} events of {len(summary.devices)} devices, "
        f"sha256 {summary.sha256} -> {args.output}",
        file=sys.stderr,
    )
    return 0


def cmd_compliance(args: argparse.Namespace) -> int:
    """Exit 0 compliant, 1 non-compliant, 2 nothing reported by then."""
    import json

    from server.report import compliance_at

    at_ms = parse_instant(args.at, "--at")
    assert at_ms is not None
    answer = compliance_at(_storage(_settings(args)), args.device, at_ms)
    if args.json:
        print(json.dumps(answer))
    else:
        state = {True: "compliant", False: "NON-COMPLIANT", None: "unknown (nothing reported)"}[
            answer["compliant"]
        ]
        policy = answer["policy"]
        under = f"{policy['id']} v{policy['version']}" if policy else "no policy applied"
        failing = f"; failing: {', '.join(answer['failing'])}" if answer["failing"] else ""
        print(f"{args.device} at {answer['at']}: {state}, under {under}{failing}")
    return {True: 0, False: 1, None: 2}[answer["compliant"]]


def cmd_retention(args: argparse.Namespace) -> int:
    import json

    from server.retention import apply_retention

    settings = _settings(args)
    if not settings.retention.enabled:
        raise ServerCommandError(
            "no [retention] age limit is set in server.toml; nothing to delete (e.g. [retention] events_days = 400)"
        )
    from core.clock import SystemClock
    from server.storage import ms

    result = apply_retention(_storage(settings), settings.retention, ms(SystemClock().now()))
    if args.json:
        print(json.dumps(result.__dict__))
    else:
        print(
            f"deleted {result.events} events, {result.gaps} gaps, {result.dead_letters} dead letters; "
            f"kept {result.kept_undelivered} events past their age that a forwarder has not delivered yet"
        )
    return 0
