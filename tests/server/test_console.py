"""The console's pages (server/routes/console.py, server/console/): state derived from events at ingest,
overview counts and charts, device page, event filters/paging/CSV, policies, ja/en, viewer's time zone."""

from __future__ import annotations

import csv
import io
import re
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from agent.report.stream import Kind
from core.clock import FakeClock
from server.app import create_app
from server.console import text
from server.settings import Settings
from server.storage import Storage, console_daily
from tests.harness.live_server import admin_token, migrated, pg_url, reset_pg
from tests.server.test_api import enroll, event, ndjson, post_events

ROOT = Path(__file__).resolve().parents[2]


def sign_in(client: TestClient, storage: Storage) -> None:
    token = admin_token(storage)
    response = client.post(
        "/login",
        content=f"token={token}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text


def finding(device_id: str, seq: int, clock: FakeClock, check: str, status: str, mode: str = "block") -> Any:
    enforcement = mode if status == "fail" and mode in ("warn", "block") else "none"
    return event(
        device_id,
        seq,
        clock,
        Kind.POSTURE_FINDING,
        check_id=check,
        status=status,
        mode=mode,
        enforcement=enforcement,
    )


def test_pages_need_a_sign_in_and_come_back_after_it(client: TestClient) -> None:
    for path in ("/", "/events?check=vpn", "/policies", "/devices/x", "/events.csv"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/login?next=%2F")
    assert client.get("/events?check=vpn", follow_redirects=False).headers["location"] == (
        "/login?next=%2Fevents%3Fcheck%3Dvpn"
    )


def test_blocking_failure_shows_non_compliant_with_its_policy_before_any_heartbeat(
    client: TestClient, storage: Storage, clock: FakeClock
) -> None:
    device_id, headers = enroll(client, storage)
    batch = [
        event(device_id, 1, clock, Kind.POLICY_APPLIED, policy_id="acme-remote", version=3),
        finding(device_id, 2, clock, "vpn", "fail"),
        finding(device_id, 3, clock, "device.firewall", "pass"),
    ]
    assert post_events(client, headers, ndjson(batch)).status_code == 200
    sign_in(client, storage)
    page = client.get("/", headers={"Accept-Language": "ja"}).text
    counts = dict(re.findall(r'data-state="(\w+)"><span class="n">(\d+)</span>', page))
    assert counts["non_compliant"] == "1" and counts["online"] == "0"
    row = page.split('id="devices"')[1].split("</table>")[0]
    assert "不適合" in row and "acme-remote v3" in row and "VPN接続" in row and ">vpn<" not in row
    device = client.get(f"/devices/{device_id}", headers={"Accept-Language": "ja"}).text
    checks = device.split('id="checks"')[1].split("</table>")[0]
    assert text.REMEDIES["posture.remedy.vpn.connect"]["ja"] in checks
    assert (
        "ファイアウォール" in checks and text.REMEDIES["posture.remedy.firewall"]["ja"] not in checks
    )  # passing
    assert "pc-01" in device and "linux" in device and "acme-remote v3" in device
    # the forms of the device actions, for an admin, with the session's CSRF field
    for action in ("revoke", "replaced", "delete"):
        assert f'action="/console/devices/{device_id}/{action}"' in device
    assert device.count('name="csrf"') >= 4  # three actions and sign-out
    # the check passes again: compliant at once, and the failing minutes land in the day's figures
    clock.advance(30 * 60)
    assert (
        post_events(client, headers, ndjson([finding(device_id, 4, clock, "vpn", "pass")])).status_code == 200
    )
    sign_in(client, storage)  # a new session: the first one may have expired in those 30 minutes
    page = client.get("/?lang=en").text
    counts = dict(re.findall(r'data-state="(\w+)"><span class="n">(\d+)</span>', page))
    assert counts["non_compliant"] == "0" and counts["online"] == "1"
    with storage.engine.connect() as conn:
        minutes = conn.execute(
            sa.select(sa.func.sum(console_daily.c.value)).where(
                console_daily.c.metric == "noncompliant_ms", console_daily.c.key == "vpn"
            )
        ).scalar_one()
    assert minutes == 30 * 60_000
    chart = page.split('id="chart-noncompliant"')[1].split("</figure>")[0]
    assert "<svg" in chart and "VPN connected: 30 min" in chart


def test_unexpected_stop_and_protections_are_counted(
    client: TestClient, storage: Storage, clock: FakeClock
) -> None:
    device_id, headers = enroll(client, storage)
    batch = [
        event(device_id, 1, clock, Kind.AGENT_STARTED),
        event(device_id, 2, clock, Kind.PROTECTION_APPLIED, reason="away", rules=["crm"], count=1),
        event(device_id, 3, clock, Kind.PROTECTION_APPLIED, reason="share", rules=["crm"], count=1),
        event(device_id, 4, clock, Kind.AGENT_STARTED),  # started again with no stop notice in between
    ]
    assert post_events(client, headers, ndjson(batch)).status_code == 200
    assert post_events(client, headers, ndjson(batch)).status_code == 200  # resent: counted once
    sign_in(client, storage)
    page = client.get("/?lang=en").text
    counts = dict(re.findall(r'data-state="(\w+)"><span class="n">(\d+)</span>', page))
    assert counts["unexpected"] == "1"
    chart = page.split('id="chart-protections"')[1].split("</figure>")[0]
    assert ": 2</title></rect>" in chart and chart.count("<rect") == 1


def test_chart_days_are_labelled_as_utc_dates_whatever_the_servers_zone(
    client: TestClient, storage: Storage, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    device_id, headers = enroll(client, storage)
    event_ = event(device_id, 1, clock, Kind.PROTECTION_APPLIED, reason="away", rules=["crm"], count=1)
    assert post_events(client, headers, ndjson([event_])).status_code == 200
    sign_in(client, storage)
    monkeypatch.setenv(
        "TZ", "America/Los_Angeles"
    )  # a server west of UTC: UTC midnight is the day before there
    time.tzset()
    try:
        chart = client.get("/?lang=en").text.split('id="chart-protections"')[1].split("</figure>")[0]
    finally:
        monkeypatch.undo()
        time.tzset()
    today = clock.now().astimezone(__import__("datetime").UTC).strftime("%m/%d")
    assert f"<title>{today} Protections per day: 1</title>" in chart, chart[-400:]


def test_acknowledgement_coverage_and_who_acknowledged(
    client: TestClient, storage: Storage, clock: FakeClock
) -> None:
    storage.store_policy("default", "acme-remote", 2, bundle=b"{}", etag='"x"', now=0)
    first, h1 = enroll(client, storage)
    second, _h2 = enroll(client, storage)
    ack = event(first, 1, clock, Kind.POLICY_ACKNOWLEDGED, policy_id="acme-remote", version=2)
    assert post_events(client, h1, ndjson([ack])).status_code == 200
    sign_in(client, storage)
    page = client.get("/?lang=en").text
    coverage = page.split('id="coverage"')[1].split("</table>")[0]
    assert "acme-remote v2" in coverage and "1 / 2" in coverage
    client.cookies.delete("lang")  # chosen above with ?lang=en; now the browser's language decides
    policies = client.get("/policies", headers={"Accept-Language": "ja"}).text
    section = policies.split('id="default-2"')[1].split("</section>")[0]
    assert f"/devices/{first}" in section and f"/devices/{second}" not in section
    # the FakeClock's instant, shown in Japan's time (no tz cookie, ja page)
    jst = (clock.now() + timedelta(hours=9)).strftime("%Y-%m-%d %H:%M:%S")
    assert jst in section


def test_times_are_in_the_viewers_time_zone(client: TestClient, storage: Storage, clock: FakeClock) -> None:
    device_id, headers = enroll(client, storage)
    post_events(client, headers, ndjson([event(device_id, 1, clock, Kind.AGENT_STARTED)]))
    sign_in(client, storage)
    now = clock.now()
    english = client.get(f"/devices/{device_id}?lang=en").text
    assert now.strftime("%Y-%m-%d %H:%M:%S") in english and "UTC" in english.split("<footer>")[1]
    client.cookies.set("tz", "America/New_York")
    new_york = client.get(f"/devices/{device_id}?lang=ja").text
    assert "America/New_York" in new_york
    local = now.astimezone(__import__("zoneinfo").ZoneInfo("America/New_York"))
    assert local.strftime("%Y-%m-%d %H:%M:%S") in new_york
    client.cookies.set("tz", "Europe%2FBerlin")  # as static/console.js stores it (encodeURIComponent)
    assert "Europe/Berlin" in client.get(f"/devices/{device_id}?lang=en").text
    client.cookies.set("tz", "Not/A_Zone")
    assert "Asia/Tokyo" in client.get(f"/devices/{device_id}?lang=ja").text


def test_ja_pages_name_events_classes_severities_and_checks_in_japanese(
    client: TestClient, storage: Storage, clock: FakeClock
) -> None:
    device_id, headers = enroll(client, storage)
    batch = [
        event(device_id, n, clock, kind)
        for n, kind in enumerate((Kind.AGENT_STARTED, Kind.SESSION_LOCKED), 1)
    ]
    batch.append(finding(device_id, 3, clock, "device.screen_lock", "fail", "warn"))
    batch.append(event(device_id, 4, clock, Kind.LOCK_FAILED, method="loginctl", reason="timeout"))
    assert post_events(client, headers, ndjson(batch)).status_code == 200
    sign_in(client, storage)
    page = client.get("/events?lang=ja").text
    table = page.split('class="events"')[1].split("</table>")[0]
    for english in (
        "Compliance Finding",
        "Authentication",
        "Device Config",
        "Informational",
        "High",
        "Medium",
    ):
        assert english not in table
    for code in (
        "agent.started",
        "session.locked",
        "posture.finding",
        "device.screen_lock",
        "session.lock_failed",
    ):
        assert code not in table
    for japanese in (
        "エージェント起動",
        "画面をロック",
        "画面の自動ロック: 不適合",
        "画面ロックに失敗",
        "認証",
        "高",
        "情報",
    ):
        assert japanese in table
    # every kind and class the agent can emit has both names
    assert set(text.EVENT_NAMES) == {k.value for k in Kind}
    from core.records import CLASSES, SEVERITIES

    assert set(text.CLASS_NAMES) == set(CLASSES) and set(text.SEVERITY_NAMES) == set(SEVERITIES)
    assert set(text.TEXT["ja"]) == set(text.TEXT["en"])


def test_check_fixes_are_the_agents(tmp_path: Path) -> None:
    """The copied fixes match agent/i18n/messages/posture.toml, and every check id the agent uses is named."""
    catalog = tomllib.loads((ROOT / "agent/i18n/messages/posture.toml").read_text(encoding="utf-8"))
    remedies = catalog["posture"]["remedy"]

    def lookup(key: str) -> dict[str, str]:
        node: Any = remedies
        for part in key.removeprefix("posture.remedy.").split("."):
            node = node[part]
        return {"ja": node["ja"], "en": node["en"]}

    for key, texts in text.REMEDIES.items():
        assert lookup(key) == texts, key
    sources = "".join(
        (ROOT / "agent/posture" / f).read_text() for f in ("vpn.py", "wifi.py", "device.py", "plaintext.py")
    )
    used = set(re.findall(r'"((?:vpn|device)\.[a-z_]+|vpn|wifi|plaintext)"', sources))
    used |= {"vpn.dns"}
    assert used - set(text.CHECKS) == set(), "name these checks in server/console/text.py"
    assert text.check_name("tls:crm.example.jp:443", "ja") == "安全な接続: crm.example.jp:443"


def test_event_filters_paging_and_csv(client: TestClient, storage: Storage, clock: FakeClock) -> None:
    device_id, headers = enroll(client, storage)
    other, other_headers = enroll(client, storage)
    batch = []
    for n in range(1, 121):
        clock.advance(10)
        batch.append(finding(device_id, n, clock, "vpn" if n % 2 else "wifi", "fail" if n % 3 else "pass"))
    assert post_events(client, headers, ndjson(batch)).status_code == 200
    assert (
        post_events(client, other_headers, ndjson([event(other, 1, clock, Kind.AGENT_STARTED)])).status_code
        == 200
    )
    sign_in(client, storage)
    first = client.get("/events?check=vpn&lang=en")
    rows = first.text.split('class="events"')[1].split("</table>")[0].count('<tr class="sev-')
    assert first.status_code == 200 and rows == 50
    older = re.search(r'href="(/events\?[^"]*before=[^"]+)" id="older"', first.text)
    assert older is not None
    second = client.get(older.group(1).replace("&amp;", "&")).text
    assert (
        second.split('class="events"')[1].split("</table>")[0].count('<tr class="sev-') == 10
    )  # 60 vpn in all
    assert 'id="older"' not in second
    # severity at least High: failing blocked checks (severity 4) only
    high = client.get("/events?severity=4&lang=en").text
    assert high.split('class="events"')[1].split("</table>")[0].count('<tr class="sev-4"') == 50
    assert "sev-1" not in high.split('class="events"')[1].split("</table>")[0]
    # device filter and the CSV of the same filter, through server/export.py's encoder
    response = client.get(f"/events.csv?device={other}")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    table = list(csv.reader(io.StringIO(response.text)))
    assert table[0][:3] == ["time", "uid", "device"] and len(table) == 2 and table[1][2] == other
    vpn_csv = list(csv.reader(io.StringIO(client.get("/events.csv?check=vpn").text)))
    assert len(vpn_csv) == 61 and all('"vpn"' in row[-1] for row in vpn_csv[1:])
    assert vpn_csv[1][0] < vpn_csv[-1][0]  # oldest first, like the export
    # a time range in the viewer's zone (en: UTC), and a bad one answered plainly
    since = (clock.now() - timedelta(seconds=35)).strftime("%Y-%m-%dT%H:%M:%S")
    ranged = client.get(f"/events?since={since}&lang=en").text
    assert (
        ranged.split('class="events"')[1].split("</table>")[0].count('<tr class="sev-') == 5
    )  # 4 findings + the start
    bad = client.get("/events?since=yesterday&severity=9&lang=en")
    assert bad.status_code == 400 and "That filter is not valid" in bad.text


def test_static_assets_are_served_locally_and_nothing_is_fetched_elsewhere(
    client: TestClient, storage: Storage, clock: FakeClock
) -> None:
    device_id, headers = enroll(client, storage)
    post_events(client, headers, ndjson([event(device_id, 1, clock, Kind.AGENT_STARTED)]))
    sign_in(client, storage)
    for path in ("/", "/events", "/policies", f"/devices/{device_id}"):
        page = client.get(path).text
        assert not re.search(r'(src|href)="(https?:)?//', page), path
        for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', page):
            assert client.get(asset).status_code == 200
    assert client.get("/static/console.css").headers["content-type"].startswith("text/css")
    assert (
        '<meta http-equiv="refresh" content="60">' in client.get("/").text
    )  # the overview keeps itself fresh
    assert client.get("/static/..%2Fsettings.py").status_code == 404
    assert client.get("/devices/nope?lang=en").status_code == 404


@pytest.mark.postgres
def test_derived_state_on_postgresql(tmp_path: Path) -> None:
    url = pg_url()
    reset_pg(url)
    storage = migrated(url)
    clock = FakeClock()
    try:
        with TestClient(create_app(Settings(db_url=url), storage, clock)) as client:
            device_id, headers = enroll(client, storage)
            batch = [
                event(device_id, 1, clock, Kind.POLICY_APPLIED, policy_id="acme-remote", version=4),
                finding(device_id, 2, clock, "wifi", "fail"),
                event(device_id, 3, clock, Kind.POLICY_ACKNOWLEDGED, policy_id="acme-remote", version=4),
            ]
            assert post_events(client, headers, ndjson(batch)).status_code == 200
            assert post_events(client, headers, ndjson(batch)).status_code == 200
            sign_in(client, storage)
            page = client.get("/?lang=en").text
            counts = dict(re.findall(r'data-state="(\w+)"><span class="n">(\d+)</span>', page))
            assert counts["non_compliant"] == "1"
            assert "acme-remote v4" in page and "Wi-Fi security" in page
            with storage.engine.connect() as conn:
                acks = conn.execute(sa.text("SELECT count(*) FROM acknowledgements")).scalar_one()
            assert acks == 1
    finally:
        storage.dispose()


def test_overview_status_in_sql_agrees_with_device_status(storage: Storage) -> None:
    """The overview counts devices with a SQL expression; it must say what server.status.device_status says."""
    from itertools import product

    from server.console.views import status_expression
    from server.status import device_status
    from server.storage import devices

    settings = Settings(db_url=storage.url)
    now = 10_000_000
    cases = list(
        product(
            (None, now, now - 59_000, now - 61_000, now - 899_000, now - 901_000, now - 4_000_000),
            (False, True),
            (None, "online", "away", "non_compliant", "odd"),
            (None, 0.1, 20.0, 300.0, 1000.0),
        )
    )
    with storage.engine.begin() as conn:
        conn.execute(
            devices.insert(),
            [
                {
                    "id": f"d{n}",
                    "token_hash": f"{n:064x}",
                    "group_name": "g",
                    "enrolled_at": 0,
                    "last_seen": last_seen,
                    "stopped": stopped,
                    "state": state,
                    "heartbeat_s": heartbeat,
                }
                for n, (last_seen, stopped, state, heartbeat) in enumerate(cases)
            ],
        )
        rows: dict[str, str] = dict(
            conn.execute(sa.select(devices.c.id, status_expression(settings, now))).all()
        )
    for n, (last_seen, stopped, state, heartbeat) in enumerate(cases):
        expected = device_status(
            last_seen_ms=last_seen,
            stopped=stopped,
            state=state,
            heartbeat_s=heartbeat,
            now_ms=now,
            silence_factor=settings.silence_factor,
            min_silence_s=settings.min_silence_s,
        )
        assert rows[f"d{n}"] == expected, cases[n]


def test_viewers_see_the_pages_but_not_the_device_actions(
    client: TestClient, storage: Storage, clock: FakeClock
) -> None:
    from server.accounts import create_token

    device_id, _headers = enroll(client, storage)
    token, _info = create_token(
        storage,
        name="helpdesk",
        role="viewer",
        expires_in_ms=None,
        actor="test",
        now=int(clock.now().timestamp() * 1000),
    )
    response = client.post(
        "/login",
        content=f"token={token}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    page = client.get(f"/devices/{device_id}?lang=en").text
    assert "helpdesk" in page and "/console/devices/" not in page and 'id="action-revoke"' not in page
    assert 'action="/logout"' in page  # sign-out is for everyone


def test_a_late_finding_does_not_move_the_state_back_and_a_stop_notice_stops(
    client: TestClient, storage: Storage, clock: FakeClock
) -> None:
    device_id, headers = enroll(client, storage)
    early = finding(device_id, 1, clock, "wifi", "fail")
    clock.advance(60)
    later = finding(device_id, 2, clock, "wifi", "pass")
    assert post_events(client, headers, ndjson([later])).status_code == 200
    assert (
        post_events(client, headers, ndjson([early])).status_code == 200
    )  # arrives late (resent from outbox)
    sign_in(client, storage)
    page = client.get("/?lang=en").text
    counts = dict(re.findall(r'data-state="(\w+)"><span class="n">(\d+)</span>', page))
    assert counts["non_compliant"] == "0" and counts["online"] == "1"
    stopped = [event(device_id, 3, clock, Kind.AGENT_STARTED), event(device_id, 4, clock, Kind.AGENT_STOPPED)]
    assert post_events(client, headers, ndjson(stopped)).status_code == 200
    page = client.get("/?lang=en").text
    counts = dict(re.findall(r'data-state="(\w+)"><span class="n">(\d+)</span>', page))
    assert counts["stopped"] == "1" and counts["unexpected"] == "0"


def test_a_device_marked_replaced_leaves_the_counts_for_its_own_tile(
    client: TestClient, storage: Storage, clock: FakeClock
) -> None:
    device_id, headers = enroll(client, storage)
    other, other_headers = enroll(client, storage)
    for dev, head in ((device_id, headers), (other, other_headers)):
        assert (
            post_events(client, head, ndjson([event(dev, 1, clock, Kind.AGENT_STARTED)])).status_code == 200
        )
    sign_in(client, storage)
    page = client.get(f"/devices/{device_id}?lang=en").text
    csrf = re.search(
        r'action="/console/devices/[^"]+/replaced"[^>]*><input type="hidden" name="csrf" value="([^"]+)"',
        page,
    )
    assert csrf is not None
    done = client.post(
        f"/console/devices/{device_id}/replaced",
        content=f"csrf={csrf.group(1)}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert done.status_code in (200, 303), done.text
    page = client.get("/?lang=en").text
    counts = dict(re.findall(r'data-state="(\w+)"><span class="n">(\d+)</span>', page))
    assert counts["online"] == "1" and counts["replaced"] == "1"
    assert "Replaced" in client.get(f"/devices/{device_id}?lang=en").text


def test_the_compliance_report_downloads_from_the_console(
    client: TestClient, storage: Storage, clock: FakeClock
) -> None:
    from server import audit

    device_id, headers = enroll(client, storage)
    batch = [
        event(device_id, 1, clock, Kind.AGENT_STARTED),
        event(device_id, 2, clock, Kind.PROTECTION_APPLIED, reason="away", rules=["crm"], count=1),
    ]
    assert post_events(client, headers, ndjson(batch)).status_code == 200
    assert client.get("/reports", follow_redirects=False).status_code == 303  # signed in only
    sign_in(client, storage)
    form = client.get("/reports?lang=ja").text
    assert (
        'option value="default"' in form and "コンプライアンスレポート" in form and 'href="/reports"' in form
    )
    period = clock.now().strftime("%Y-%m")
    got = client.get(f"/reports?group=default&period={period}&format=csv&lang=en")
    assert got.status_code == 200 and got.headers["content-type"].startswith("text/csv")
    assert got.headers["content-disposition"] == f'attachment; filename="mamori-report-default-{period}.csv"'
    assert device_id in got.text
    pdf = client.get(f"/reports?group=default&period={period}&format=pdf&lang=ja")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-")
    bad = client.get("/reports?group=default&period=2026-13&lang=en")
    assert bad.status_code == 400 and "YYYY-MM" in bad.text
    unknown = client.get(f"/reports?group=nobody&period={period}&lang=en")
    assert unknown.status_code == 400 and "nobody" in unknown.text
    downloads = [e for e in audit.entries(storage, action="report.download")]
    assert [(e.target, e.detail["format"]) for e in downloads] == [("default", "csv"), ("default", "pdf")]
