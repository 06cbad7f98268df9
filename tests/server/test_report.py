"""`mamori server report` over a scripted month: the PDF renders (pdftoppm), its text (pdftotext) and the CSV
hold the right figures, in English and Japanese."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.report.events import build_record, rule_context, stamp_device
from agent.report.stream import AgentEvent, Kind
from server.report import build, month_bounds
from server.storage import EventRow, Storage, devices, ms

NOV = datetime(2026, 11, 1, tzinfo=UTC)


def at(day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


def script() -> dict[str, list[tuple[datetime, Kind, dict[str, Any]]]]:
    hb = {"state": "online", "uptime_s": 1.0}
    month = [NOV + timedelta(minutes=5 * i) for i in range(30 * 24 * 12)]
    a: list[tuple[datetime, Kind, dict[str, Any]]] = [
        (t, Kind.HEARTBEAT, hb) for t in month if not at(20) <= t < at(21)
    ]
    a += [
        (at(1), Kind.AGENT_STARTED, {}),
        (at(1, 0, 1), Kind.POLICY_APPLIED, {"policy_id": "acme-telework", "version": 3}),
        (at(1, 0, 5), Kind.POLICY_ACKNOWLEDGED, {"policy_id": "acme-telework", "version": 3}),
        (
            at(2, 9),
            Kind.POSTURE_FINDING,
            {"check_id": "vpn", "status": "fail", "mode": "block", "enforcement": "block"},
        ),
        (
            at(2, 10, 30),
            Kind.POSTURE_FINDING,
            {"check_id": "vpn", "status": "pass", "mode": "block", "enforcement": "none"},
        ),
        (at(3, 12), Kind.PROTECTION_APPLIED, {"reason": "away", "rules": ["crm"], "count": 1}),
        (at(4, 12), Kind.PROTECTION_APPLIED, {"reason": "share", "rules": ["crm"], "count": 2}),
        (at(5, 12), Kind.PROTECTION_APPLIED, {"reason": "away", "rules": ["crm"], "count": 1}),
        (at(6, 18), Kind.LOCK_FAILED, {"method": "logind", "reason": "not_locked"}),
        (at(11, 9), Kind.POLICY_ACKNOWLEDGED, {"policy_id": "acme-telework", "version": 4}),
        (at(19, 23, 55), Kind.AGENT_STOPPED, {}),
        (at(21), Kind.AGENT_STARTED, {}),
    ]
    b: list[tuple[datetime, Kind, dict[str, Any]]] = [
        (t, Kind.HEARTBEAT, hb) for t in month if not at(9, 23, 55) < t < at(10, 6)
    ]
    b += [
        (at(1), Kind.AGENT_STARTED, {}),
        (
            at(1, 1),
            Kind.POSTURE_FINDING,
            {"check_id": "device.firewall", "status": "pass", "mode": "block", "enforcement": "none"},
        ),
        (at(2), Kind.POLICY_ACKNOWLEDGED, {"policy_id": "acme-telework", "version": 3}),
        (
            at(3),
            Kind.POSTURE_FINDING,
            {"check_id": "tls:intranet", "status": "fail", "mode": "report", "enforcement": "none"},
        ),
        (at(10, 6), Kind.AGENT_STARTED, {}),  # after 6 h of silence, without a stop notice
        (
            at(25),
            Kind.POSTURE_FINDING,
            {"check_id": "wifi", "status": "fail", "mode": "warn", "enforcement": "warn"},
        ),
    ]
    before = [
        (
            datetime(2026, 10, 30, tzinfo=UTC),
            Kind.POSTURE_FINDING,
            {"check_id": "device.firewall", "status": "fail", "mode": "block", "enforcement": "block"},
        )
    ]
    after = [
        (
            datetime(2026, 12, 1, 0, 5, tzinfo=UTC),
            Kind.PROTECTION_APPLIED,
            {"reason": "away", "rules": ["crm"], "count": 1},
        )
    ]
    return {
        "dev-a": a + after,
        "dev-b": before + b,
        "dev-other": [(at(3), Kind.LOCK_FAILED, {"method": "x", "reason": "y"})],
    }


@pytest.fixture
def month(storage: Storage) -> Storage:
    with storage.write() as conn:
        for device, group in (("dev-a", "sales"), ("dev-b", "sales"), ("dev-other", "support")):
            conn.execute(
                devices.insert().values(
                    id=device, token_hash=device.ljust(64, "0"), group_name=group, enrolled_at=0
                )
            )
    for version, uploaded in (
        (2, datetime(2026, 10, 1, tzinfo=UTC)),
        (3, datetime(2026, 10, 15, tzinfo=UTC)),
        (4, at(10)),
    ):
        storage.store_policy(
            "sales", "acme-telework", version, bundle=b"{}", etag=f"e{version}", now=ms(uploaded)
        )
    for device, items in script().items():
        rows = []
        for seq, (when, kind, data) in enumerate(sorted(items, key=lambda x: x[0]), 1):
            record = build_record(AgentEvent(kind, when, data), rule_context(["crm"]))
            record["metadata"]["sequence"] = seq
            stamp_device(record, device, type_id=3)
            rows.append(
                EventRow(
                    record["metadata"]["uid"],
                    seq,
                    record["class_uid"],
                    record["type_uid"],
                    record["severity_id"],
                    record["metadata"]["event_code"],
                    record["time"],
                    json.dumps(record),
                )
            )
        for i in range(0, len(rows), 5000):
            storage.ingest(device, rows[i : i + 5000], 0)
    return storage


def test_the_figures_of_a_scripted_month(month: Storage) -> None:
    summary = build(month, "sales", "2026-11", now=datetime(2026, 12, 1, 9, tzinfo=UTC))
    a, b = summary.devices
    assert (a.device, a.protections, a.lock_failures, a.silent_periods, a.unexpected_stops) == (
        "dev-a",
        3,
        1,
        0,
        0,
    )
    assert a.noncompliant_ms == {"vpn": 90 * 60_000}
    assert (b.device, b.protections, b.silent_periods, round(b.silent_ms / 60_000), b.unexpected_stops) == (
        "dev-b",
        0,
        1,
        365,
        1,
    )
    # device.firewall failing since October until 01:00 on the 1st; wifi (warn) failing from the 25th to the end;
    # a failing "report" check is not non-compliance.
    assert b.noncompliant_ms == {"device.firewall": 60 * 60_000, "wifi": 6 * 24 * 60 * 60_000}
    assert summary.policies == [("acme-telework", 3), ("acme-telework", 4)]
    assert summary.ack_coverage() == {("acme-telework", 3): 2, ("acme-telework", 4): 1}
    assert summary.event_count == sum(
        1
        for d in ("dev-a", "dev-b")
        for when, _k, _d in script()[d]
        if NOV <= when < datetime(2026, 12, 1, tzinfo=UTC)
    )
    assert month_bounds("2026-12")[1] == ms(datetime(2027, 1, 1, tzinfo=UTC))


def mamori(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", "server", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.apps
@pytest.mark.parametrize("lang", ["en", "ja"])
def test_the_pdf_renders_and_holds_the_figures(month: Storage, tmp_path: Path, lang: str) -> None:
    if not (shutil.which("pdftoppm") and shutil.which("pdftotext")):
        pytest.skip("poppler-utils is not installed (.ci/run installs it)")
    pdf = tmp_path / "report.pdf"
    done = mamori(
        "report",
        "--db",
        str(month.engine.url),
        "--group",
        "sales",
        "--period",
        "2026-11",
        "--format",
        "pdf",
        "--lang",
        lang,
        "-o",
        str(pdf),
    )
    assert done.returncode == 0, done.stderr
    sha = re.search(r"sha256 ([0-9a-f]{64})", done.stderr)
    assert sha
    subprocess.run(
        ["pdftoppm", "-r", "50", "-png", "-f", "1", "-l", "1", str(pdf), str(tmp_path / "page")],
        check=True,
        timeout=60,
    )
    page = next(tmp_path.glob("page*.png"))
    assert page.stat().st_size > 5000  # a rendered page, not an empty one
    text = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    flat = " ".join(text.split())
    assert sha.group(1) in flat and "2026-11" in flat
    ack = "Acknowledged by" if lang == "en" else "確認済みの端末"
    assert f"acme-telework v3 ({ack} 2/2)" in flat and f"acme-telework v4 ({ack} 1/2)" in flat
    total = "Total" if lang == "en" else "合計"
    # columns: protections, lock failures, silent periods, silent minutes, unexpected stops, then the checks
    # (device.firewall, vpn, wifi) in minutes
    assert re.search(r"dev-a\s+3\s+1\s+0\s+0\s+0\s+0\s+90\s+0", text), text
    assert re.search(r"dev-b\s+0\s+0\s+1\s+365\s+1\s+60\s+0\s+8640", text), text
    assert re.search(rf"{total}\s+3\s+1\s+1\s+365\s+1\s+60\s+90\s+8640", text), text
    if lang == "ja":
        assert "コンプライアンス報告書" in flat


def test_the_csv_report(month: Storage, tmp_path: Path) -> None:
    out = tmp_path / "report.csv"
    done = mamori(
        "report",
        "--db",
        str(month.engine.url),
        "--group",
        "sales",
        "--period",
        "2026-11",
        "--format",
        "csv",
        "--lang",
        "en",
        "-o",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    rows = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8-sig"))))
    head = next(i for i, r in enumerate(rows) if r[0] == "Device")
    table = {r[0]: r[1:] for r in rows[head + 1 :]}
    assert rows[head][6:] == [
        "Minutes non-compliant: device.firewall",
        "Minutes non-compliant: vpn",
        "Minutes non-compliant: wifi",
    ]
    assert table["Total"] == ["3", "1", "1", "365", "1", "60", "90", "8640"]
    bad = mamori(
        "report",
        "--db",
        str(out.parent / "none.db"),
        "--group",
        "sales",
        "--period",
        "November",
        "--format",
        "csv",
        "-o",
        str(out),
    )
    assert bad.returncode != 0 and "Traceback" not in bad.stderr


def test_the_point_in_time_answer(month: Storage, client: Any) -> None:
    from tests.harness.live_server import admin_token

    admin = {"Authorization": f"Bearer {admin_token(month)}"}

    def ask(device: str, when: datetime) -> dict[str, Any]:
        response = client.get(
            f"/v1/admin/devices/{device}/compliance", params={"at": when.isoformat()}, headers=admin
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    during = ask("dev-a", at(2, 9, 30))  # the VPN check failing in block mode
    assert during["compliant"] is False and during["failing"] == ["vpn"]
    assert (during["policy"]["id"], during["policy"]["version"], during["policy"]["acknowledged"]) == (
        "acme-telework",
        3,
        True,
    )
    assert ask("dev-a", at(2, 11))["compliant"] is True
    assert ask("dev-b", at(26))["failing"] == ["wifi"]
    assert ask("dev-b", at(3, 12))["compliant"] is True  # a failing "report" check is not non-compliance
    assert ask("dev-a", datetime(2026, 10, 1, tzinfo=UTC))["compliant"] is None
    done = mamori(
        "compliance", "--db", str(month.engine.url), "--device", "dev-a", "--at", "2026-11-02T09:30:00Z"
    )
    assert done.returncode == 1 and "NON-COMPLIANT" in done.stdout and "failing: vpn" in done.stdout
