"""The console in a real headless Chromium (Debian's, through chromium-driver) against a real uvicorn server
with seeded devices and events: a failed sign-in shows its error, the overview has its counts and SVG charts,
events are filtered, a device page is opened, the CSV is downloaded, ja switches to en, sign-out works, and
"不適合" is never split across lines. Screenshots are saved under the test's tmp dir and build/console-screenshots/.
"""

from __future__ import annotations

import csv
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from agent.report.stream import Kind
from core.clock import FakeClock
from server.settings import Settings
from tests.harness.browser import SPLIT_WORDS_JS, chromium_driver, wait_for_file
from tests.harness.live_server import ThreadServer, admin_token, enroll_secret, migrated
from tests.server.test_api import event, ndjson

pytestmark = pytest.mark.apps

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "build" / "console-screenshots"


def seed(url: str, storage: Any) -> dict[str, str]:
    """Three enrolled devices: one failing a blocking VPN check, one acknowledged and protecting, one silent."""
    storage.store_policy("sales", "acme-remote", 2, bundle=b"{}", etag='"v2"', now=0)
    clock = FakeClock(start=datetime.now(UTC))
    ids: dict[str, str] = {}
    for host in ("tokyo-pc01", "osaka-pc02", "nagoya-pc03"):
        secret = enroll_secret(storage, group="sales")
        doc = requests.post(
            f"{url}/v1/enroll", json={"secret": secret, "hostname": host, "os": "windows"}, timeout=10
        )
        doc.raise_for_status()
        ids[host] = doc.json()["device_id"]
        headers = {"Authorization": f"Bearer {doc.json()['token']}", "Content-Type": "application/x-ndjson"}
        device = ids[host]
        batch = [
            event(device, 1, clock, Kind.AGENT_STARTED),
            event(device, 2, clock, Kind.POLICY_APPLIED, policy_id="acme-remote", version=2),
        ]
        if host == "tokyo-pc01":
            batch.append(
                event(
                    device,
                    3,
                    clock,
                    Kind.POSTURE_FINDING,
                    check_id="vpn",
                    status="fail",
                    mode="block",
                    enforcement="block",
                )
            )
            batch.append(
                event(
                    device,
                    4,
                    clock,
                    Kind.POSTURE_FINDING,
                    check_id="device.firewall",
                    status="pass",
                    mode="warn",
                    enforcement="none",
                )
            )
        else:
            batch.append(
                event(device, 3, clock, Kind.POLICY_ACKNOWLEDGED, policy_id="acme-remote", version=2)
            )
            batch.append(
                event(device, 4, clock, Kind.PROTECTION_APPLIED, reason="away", rules=["crm"], count=1)
            )
            batch.append(
                event(
                    device,
                    5,
                    clock,
                    Kind.POSTURE_FINDING,
                    check_id="vpn",
                    status="pass",
                    mode="block",
                    enforcement="none",
                )
            )
        response = requests.post(f"{url}/v1/events", data=ndjson(batch), headers=headers, timeout=10)
        assert response.status_code == 200, response.text
    return ids


def test_console_in_chromium(tmp_path: Path) -> None:
    storage = migrated(f"sqlite:///{tmp_path / 'server.db'}")
    shots = tmp_path / "screenshots"
    shots.mkdir()
    downloads = tmp_path / "downloads"
    downloads.mkdir()

    def shot(driver: Any, name: str) -> None:
        driver.save_screenshot(str(shots / f"console-{name}.png"))

    try:
        with ThreadServer(Settings(db_url=storage.url), storage) as server:
            ids = seed(server.url, storage)
            token = admin_token(storage)
            with chromium_driver(downloads, language="ja", tz="Asia/Tokyo") as driver:
                from selenium.webdriver.common.by import By
                from selenium.webdriver.support import expected_conditions as until
                from selenium.webdriver.support.ui import Select, WebDriverWait

                def wait(condition: Any) -> Any:
                    """A click returns before the next page has loaded: wait for what that page shows."""
                    return WebDriverWait(driver, 15).until(condition)

                def heading(text: str) -> Any:
                    return until.text_to_be_present_in_element((By.TAG_NAME, "h1"), text)

                # not signed in: the console sends the browser to the sign-in page; a wrong token fails visibly
                driver.get(server.url + "/")
                assert "/login" in driver.current_url
                driver.find_element(By.NAME, "token").send_keys("mat_not-a-real-token")
                driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
                error = wait(until.visibility_of_element_located((By.CSS_SELECTOR, "[role=alert]")))
                assert error.is_displayed() and "サインインできませんでした" in error.text
                shot(driver, "signin-failed")
                driver.find_element(By.NAME, "token").send_keys(token)
                driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
                wait(heading("概要"))

                # the overview, in Japanese, with times in Japan's time zone and three SVG charts
                assert driver.find_element(By.TAG_NAME, "h1").text == "概要"
                tiles = {
                    t.get_attribute("data-state"): t.find_element(By.CLASS_NAME, "n").text
                    for t in driver.find_elements(By.CSS_SELECTOR, "#counts [data-state]")
                }
                assert tiles["non_compliant"] == "1" and tiles["online"] == "2"
                charts = driver.find_elements(By.CSS_SELECTOR, "figure svg.chart")
                assert len(charts) == 3 and all(c.size["height"] > 50 for c in charts)
                assert driver.find_elements(
                    By.CSS_SELECTOR, "#chart-protections svg rect"
                )  # two protections today
                assert "Asia/Tokyo" in driver.find_element(By.ID, "tz").text
                coverage = driver.find_element(By.ID, "coverage").text
                assert "acme-remote v2" in coverage and "2 / 3" in coverage
                shot(driver, "overview-ja")

                # Japanese line breaking: "不適合" on one line at any width
                for width in (1280, 700, 420):
                    driver.set_window_size(width, 1000)
                    lines = driver.execute_script(SPLIT_WORDS_JS, "不適合")
                    assert lines and set(lines) == {1}, (width, lines)
                driver.set_window_size(1280, 1000)

                # the device page: identity, the failing check with its fix, the actions of an admin
                driver.find_element(By.LINK_TEXT, "tokyo-pc01").click()
                wait(until.presence_of_element_located((By.ID, "checks")))
                assert ids["tokyo-pc01"] in driver.current_url
                checks = driver.find_element(By.ID, "checks").text
                assert "VPN接続" in checks and "不適合" in checks and "会社のVPNに接続してください" in checks
                assert driver.find_element(By.ID, "action-revoke").is_displayed()
                shot(driver, "device-ja")

                # events, filtered by check, then the CSV of that filter
                driver.find_element(By.LINK_TEXT, "イベント").click()
                wait(until.presence_of_element_located((By.ID, "filters")))
                Select(driver.find_element(By.NAME, "check")).select_by_visible_text("VPN接続")
                driver.find_element(By.ID, "apply").click()
                wait(until.url_contains("check=vpn"))
                rows = driver.find_elements(By.CSS_SELECTOR, "table.events tr[class^=sev-]")
                assert len(rows) == 3 and all("VPN接続" in r.text for r in rows)
                assert "check=vpn" in driver.current_url
                shot(driver, "events-ja")
                driver.find_element(By.ID, "csv").click()
                downloaded = wait_for_file(downloads, "*.csv")
                with downloaded.open(encoding="utf-8") as f:
                    table = list(csv.reader(f))
                assert table[0][:3] == ["time", "uid", "device"] and len(table) == 4
                assert all('"vpn"' in row[-1] for row in table[1:])

                # English, with the browser's time zone still
                driver.find_element(By.LINK_TEXT, "English").click()
                wait(heading("Events"))
                assert driver.find_element(By.TAG_NAME, "h1").text == "Events"
                driver.find_element(By.LINK_TEXT, "Overview").click()  # the choice stays across pages
                wait(heading("Overview"))
                assert driver.find_element(By.TAG_NAME, "h1").text == "Overview"
                assert "non-compliant" in driver.find_element(By.ID, "counts").text
                assert "Asia/Tokyo" in driver.find_element(By.ID, "tz").text  # the browser's zone, not UTC
                shot(driver, "overview-en")

                # sign out: back to the sign-in page, and the console is closed again
                driver.find_element(By.ID, "logout").click()
                wait(until.url_contains("/login"))
                assert "/login" in driver.current_url
                driver.get(server.url + "/policies")
                assert "/login" in driver.current_url
    finally:
        storage.dispose()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for png in shots.glob("*.png"):
            shutil.copy(png, ARTIFACTS / png.name)
