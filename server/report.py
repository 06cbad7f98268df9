"""Compliance evidence for one policy group and one month (`mamori server report`; SPEC.md, Command line):
acknowledgement coverage per policy version, protections applied, minutes non-compliant per check, lock
failures, silent periods and unexpected stops, per device and in total, with the policy versions in force,
the period, the generation time and a SHA-256 of the events summarised; CSV or PDF, ja or en.

The figures are computed by :func:`summarise`, a pure function over the stored records (oldest first), so the
same events always give the same report. Periods are calendar months in UTC.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.errors import MamoriError

SILENCE_MS = 15 * 60 * 1000  # no event for this long without a clean stop is a silent period
FONT_PATHS = (
    "/usr/share/fonts/opentype/ipafont-gothic/ipag.ttf",
    "/usr/share/fonts/truetype/fonts-japanese-gothic.ttf",
)


class ReportError(MamoriError):
    """A report cannot be made as asked."""


def month_bounds(period: str) -> tuple[int, int]:
    """ "2026-11" -> [start, end) in epoch ms (UTC)."""
    try:
        year, month = (int(x) for x in period.split("-"))
        start = datetime(year, month, 1, tzinfo=UTC)
    except ValueError as err:
        raise ReportError(f"--period {period!r}: write YYYY-MM, e.g. 2026-11") from err
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


@dataclass
class DeviceFigures:
    device: str
    acknowledged: set[tuple[str, int]] = field(default_factory=set)
    protections: int = 0
    noncompliant_ms: dict[str, int] = field(default_factory=dict)
    lock_failures: int = 0
    silent_periods: int = 0
    silent_ms: int = 0
    unexpected_stops: int = 0
    events: int = 0

    def minutes(self, check: str) -> int:
        return round(self.noncompliant_ms.get(check, 0) / 60_000)


@dataclass
class Summary:
    group: str
    period: str
    generated_at: datetime
    policies: list[tuple[str, int]]  # policy versions in force during the period (id, version)
    devices: list[DeviceFigures]
    sha256: str
    event_count: int

    @property
    def checks(self) -> list[str]:
        return sorted({c for d in self.devices for c in d.noncompliant_ms})

    def ack_coverage(self) -> dict[tuple[str, int], int]:
        """Devices that acknowledged each policy version in force."""
        return {p: sum(1 for d in self.devices if p in d.acknowledged) for p in self.policies}


def summarise(
    group: str,
    period: str,
    device_ids: Sequence[str],
    policies: Sequence[tuple[str, int]],
    records: Iterable[dict[str, Any]],
    *,
    generated_at: datetime,
    prior: Iterable[dict[str, Any]] = (),
) -> Summary:
    """The month's figures from the devices' records (oldest first); ``prior`` are the posture findings from
    before the month that set each check's state at its start."""
    start, end = month_bounds(period)
    figures = {d: DeviceFigures(d) for d in device_ids}
    failing_since: dict[tuple[str, str], int] = {}
    for record in prior:
        _posture(record, failing_since, figures, start, track=False)
    last_seen: dict[str, int] = {}
    stopped: dict[str, bool] = {}
    running: dict[str, bool] = {}  # an agent.started seen and no agent.stopped since
    digest = hashlib.sha256()
    count = 0
    for record in records:
        device = record["device"]["uid"]
        fig = figures.get(device)
        if fig is None:
            continue
        when = int(record["time"])
        count += 1
        digest.update(json.dumps(record, sort_keys=True, separators=(",", ":")).encode("utf-8"))
        digest.update(b"\n")
        fig.events += 1
        code = record["metadata"]["event_code"]
        data = record.get("unmapped", {})
        previous = last_seen.get(device)
        if previous is not None and when - previous > SILENCE_MS and not stopped.get(device):
            fig.silent_periods += 1
            fig.silent_ms += when - previous
        last_seen[device] = when
        if code == "agent.started" and running.get(device):
            fig.unexpected_stops += 1  # started again without a clean stop notice since the last start
        if code == "agent.stopped":
            stopped[device] = True
            running[device] = False
        elif code == "agent.started":
            stopped[device] = False
            running[device] = True
        elif code == "protection.applied":
            fig.protections += 1
        elif code == "session.lock_failed":
            fig.lock_failures += 1
        elif code == "policy.acknowledged":
            fig.acknowledged.add((str(data.get("policy_id")), int(data.get("version", 0))))
        elif code == "posture.finding":
            _posture(record, failing_since, figures, start, track=True)
    for (device, check), since in failing_since.items():
        fig = figures[device]
        fig.noncompliant_ms[check] = fig.noncompliant_ms.get(check, 0) + end - max(since, start)
    ordered = sorted(figures.values(), key=lambda f: f.device)
    return Summary(group, period, generated_at, list(policies), ordered, digest.hexdigest(), count)


def _posture(
    record: dict[str, Any],
    failing_since: dict[tuple[str, str], int],
    figures: dict[str, DeviceFigures],
    start: int,
    *,
    track: bool,
) -> None:
    data = record.get("unmapped", {})
    device = record["device"]["uid"]
    if device not in figures or "check_id" not in data:
        return
    key = (device, str(data["check_id"]))
    when = int(record["time"])
    # Non-compliant: a failing check the policy enforces (warn or block); "report" checks are informational.
    failing = data.get("status") == "fail" and data.get("mode") in ("warn", "block")
    if failing and key not in failing_since:
        failing_since[key] = when
    elif not failing and key in failing_since:
        since = failing_since.pop(key)
        if track:
            fig = figures[device]
            fig.noncompliant_ms[key[1]] = fig.noncompliant_ms.get(key[1], 0) + when - max(since, start)


# --- rendering -----------------------------------------------------------------------------------------------

TEXT = {
    "en": {
        "title": "Mamori compliance report",
        "group": "Group",
        "period": "Period (UTC)",
        "generated": "Generated",
        "events": "Events summarised",
        "sha": "SHA-256 of the events",
        "policies": "Policy versions in force",
        "ack": "Acknowledged by",
        "device": "Device",
        "protections": "Protections applied",
        "lock_failures": "Lock failures",
        "silent": "Silent periods",
        "silent_min": "Silent minutes",
        "stops": "Unexpected stops",
        "noncompliant": "Minutes non-compliant",
        "total": "Total",
        "none": "none",
        "devices": "devices",
    },
    "ja": {
        "title": "Mamori コンプライアンス報告書",
        "group": "グループ",
        "period": "対象期間（UTC）",
        "generated": "作成日時",
        "events": "集計したイベント数",
        "sha": "集計したイベントの SHA-256",
        "policies": "期間中に有効だったポリシーの版",
        "ack": "確認済みの端末",
        "device": "端末",
        "protections": "保護の実施回数",
        "lock_failures": "ロック失敗",
        "silent": "無通信の期間",
        "silent_min": "無通信の分数",
        "stops": "予期しない停止",
        "noncompliant": "非準拠の分数",
        "total": "合計",
        "none": "なし",
        "devices": "台",
    },
}


def table(summary: Summary, lang: str) -> list[list[str]]:
    """Per device and total: the rows both renderings show."""
    t = TEXT[lang]
    checks = summary.checks
    head = [t["device"], t["protections"], t["lock_failures"], t["silent"], t["silent_min"], t["stops"]]
    head += [f"{t['noncompliant']}: {c}" for c in checks]
    rows = [head]
    for d in summary.devices:
        rows.append(
            [
                d.device,
                str(d.protections),
                str(d.lock_failures),
                str(d.silent_periods),
                str(round(d.silent_ms / 60_000)),
                str(d.unexpected_stops),
                *(str(d.minutes(c)) for c in checks),
            ]
        )
    totals = [t["total"]]
    for col in range(1, len(head)):
        totals.append(str(sum(int(r[col]) for r in rows[1:])))
    rows.append(totals)
    return rows


def header_lines(summary: Summary, lang: str) -> list[tuple[str, str]]:
    t = TEXT[lang]
    n = len(summary.devices)
    coverage = summary.ack_coverage()
    policies = (
        ", ".join(f"{pid} v{ver} ({t['ack']} {coverage[(pid, ver)]}/{n})" for pid, ver in summary.policies)
        or t["none"]
    )
    return [
        (t["group"], f"{summary.group} ({n} {t['devices']})"),
        (t["period"], summary.period),
        (t["generated"], summary.generated_at.astimezone(UTC).isoformat(timespec="seconds")),
        (t["policies"], policies),
        (t["events"], str(summary.event_count)),
        (t["sha"], summary.sha256),
    ]


def render_csv(summary: Summary, lang: str) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    for key, value in header_lines(summary, lang):
        writer.writerow([f"# {key}", value])
    for row in table(summary, lang):
        writer.writerow(row)
    return buffer.getvalue().encode("utf-8-sig")  # BOM: spreadsheet apps then read the Japanese right


def render_pdf(summary: Summary, lang: str) -> bytes:
    """A4 landscape PDF with an embedded Japanese-capable font (IPAGothic, Debian fonts-ipafont-gothic)."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    font_path = next((p for p in FONT_PATHS if Path(p).exists()), None)
    if font_path is None:
        raise ReportError("no Japanese font found; install fonts-ipafont-gothic")
    if "IPAGothic" not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont("IPAGothic", font_path))
    t = TEXT[lang]
    body = ParagraphStyle("body", fontName="IPAGothic", fontSize=9, leading=12)
    title = ParagraphStyle("title", fontName="IPAGothic", fontSize=16, leading=20)
    out = io.BytesIO()
    doc = SimpleDocTemplate(
        out,
        pagesize=landscape(A4),
        title=f"{t['title']} {summary.group} {summary.period}",
        author="Mamori",
        invariant=True,  # the same data gives the same bytes (no random document id)
    )
    story: list[Any] = [Paragraph(t["title"], title), Spacer(1, 8)]
    for key, value in header_lines(summary, lang):
        story.append(Paragraph(f"{key}: {value}", body))
    story.append(Spacer(1, 10))
    rows = table(summary, lang)
    grid = Table([[Paragraph(c, body) for c in r] for r in rows], repeatRows=1)
    grid.setStyle(
        TableStyle(
            [
                ("GRID", (0, 0), (-1, -1), 0.5, colors.grey),
                ("BACKGROUND", (0, 0), (-1, 0), colors.lightgrey),
                ("BACKGROUND", (0, -1), (-1, -1), colors.whitesmoke),
            ]
        )
    )
    story.append(grid)
    doc.build(story)
    return out.getvalue()


__all__ = [
    "DeviceFigures",
    "ReportError",
    "Summary",
    "month_bounds",
    "render_csv",
    "render_pdf",
    "summarise",
    "table",
]


def build(storage: Any, group: str, period: str, *, now: datetime) -> Summary:
    """Read the group's devices, policies and events for ``period`` from the database and summarise them."""
    import sqlalchemy as sa

    from server.storage import devices, events, policies

    start, end = month_bounds(period)
    with storage.engine.connect() as conn:
        device_ids = [
            str(r[0]) for r in conn.execute(sa.select(devices.c.id).where(devices.c.group_name == group))
        ]
        rows = conn.execute(
            sa.select(policies.c.policy_id, policies.c.version, policies.c.uploaded_at)
            .where(policies.c.group_name == group, policies.c.uploaded_at < end)
            .order_by(policies.c.version)
        ).all()
    if not device_ids and not rows:
        raise ReportError(f"group {group!r} has no devices and no policies; check --group")
    before = [r for r in rows if r.uploaded_at < start]
    in_force = ([before[-1]] if before else []) + [r for r in rows if r.uploaded_at >= start]
    policy_list = [(str(r.policy_id), int(r.version)) for r in in_force]

    def query(*conditions: Any) -> Any:
        return (
            sa.select(events.c.body)
            .where(events.c.device_id.in_(device_ids), *conditions)
            .order_by(events.c.time, events.c.uid)
        )

    def bodies(stmt: Any) -> Iterable[dict[str, Any]]:
        with storage.engine.connect() as conn:
            for (body,) in conn.execute(stmt.execution_options(yield_per=1000)):
                yield json.loads(body)

    prior = bodies(query(events.c.time < start, events.c.event_code == "posture.finding"))
    month = bodies(query(events.c.time >= start, events.c.time < end))
    return summarise(group, period, device_ids, policy_list, month, generated_at=now, prior=list(prior))


def compliance_at(storage: Any, device: str, at_ms: int) -> dict[str, Any]:
    """The point-in-time answer: was ``device`` compliant at ``at_ms``, and under which policy? From the latest
    posture finding of each check, the latest ``policy.applied`` and its acknowledgement at or before then.
    ``compliant`` is None when the device had reported nothing by then."""
    import sqlalchemy as sa

    from server.storage import events

    codes = ("posture.finding", "policy.applied", "policy.acknowledged")
    stmt = (
        sa.select(events.c.body)
        .where(events.c.device_id == device, events.c.time <= at_ms, events.c.event_code.in_(codes))
        .order_by(events.c.time, events.c.uid)
    )
    last = sa.select(sa.func.max(events.c.time)).where(events.c.device_id == device, events.c.time <= at_ms)
    checks: dict[str, dict[str, Any]] = {}
    policy: dict[str, Any] | None = None
    acknowledged: set[tuple[str, int]] = set()
    with storage.engine.connect() as conn:
        last_ms = conn.execute(last).scalar()
        for (body,) in conn.execute(stmt.execution_options(yield_per=1000)):
            record = json.loads(body)
            data = record.get("unmapped", {})
            code = record["metadata"]["event_code"]
            if code == "posture.finding":
                checks[str(data.get("check_id"))] = data
            elif code == "policy.applied":
                policy = {
                    "id": data.get("policy_id"),
                    "version": data.get("version"),
                    "since": record["time"],
                }
            else:
                acknowledged.add((str(data.get("policy_id")), int(data.get("version", 0))))
    failing = sorted(
        c for c, d in checks.items() if d.get("status") == "fail" and d.get("mode") in ("warn", "block")
    )
    if policy is not None:
        policy["acknowledged"] = (str(policy["id"]), int(policy["version"] or 0)) in acknowledged
    return {
        "device": device,
        "at": datetime.fromtimestamp(at_ms / 1000, UTC).isoformat(timespec="milliseconds"),
        "compliant": None if last_ms is None else not failing,
        "failing": failing,
        "checks": {c: {"status": d.get("status"), "mode": d.get("mode")} for c, d in sorted(checks.items())},
        "policy": policy,
        "last_event": None if last_ms is None else datetime.fromtimestamp(last_ms / 1000, UTC).isoformat(),
    }
