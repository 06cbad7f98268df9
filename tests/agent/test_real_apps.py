"""Issue 11: protection on real software under Xvfb — Debian's chromium and firefox-esr showing a local page
titled "Salesforce - Lightning Experience", LibreOffice Calc with 顧客台帳.ods, xmessage (no _NET_WM_PID) — covered
by the unchanged example policy's rules and read back with tesseract, while an ordinary window stays readable.

Every app starts once for the module (chromium and LibreOffice take seconds on a 2-core machine).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.platform.linux_x11 import X11Desktop
from agent.report.stream import Kind
from policy.model import CustomerApp, Policy
from tests.harness.policies import policy_keys, write_agent_config
from tests.harness.realapps import (
    PHONE,
    STANDARD_POLICY,
    App,
    ProtectedDesktop,
    calc,
    chromium,
    find_window,
    firefox,
    need,
    page,
    place,
    standard_policy,
    write_ods,
)
from tests.harness.xdesktop import Box, HarnessError, XDesktop, wait_for

pytestmark = [pytest.mark.apps, pytest.mark.desktop]

OTHER = "090-8765-4321"
CHROMIUM_BOX = Box(0, 0, 620, 330)
FIREFOX_BOX = Box(650, 0, 620, 330)
CALC_BOX = Box(0, 400, 620, 380)
XMESSAGE_AT = (700, 430)
NOTES_AT = (660, 620)


class Scene:
    def __init__(self, desk: XDesktop, home: Path) -> None:
        self.desk = desk
        self.home = home
        self.apps: list[App] = []
        self.xids: dict[str, int] = {}

    def stop(self) -> None:
        for app in self.apps:
            app.stop()


@pytest.fixture(scope="module")
def scene() -> Iterator[Scene]:
    need("chromium", "firefox-esr", "soffice", "xmessage")
    try:
        desk = XDesktop.start(tray=False)
    except HarnessError as err:
        pytest.skip(f"cannot start a test X desktop: {err}")
    home = Path(tempfile.mkdtemp(prefix="mamori-realapps-"))
    s = Scene(desk, home)
    try:
        sf = page(home / "salesforce.html", "Salesforce - Lightning Experience")
        sf2 = page(home / "salesforce2.html", "Salesforce - Lightning Experience")
        ledger = write_ods(home / "顧客台帳.ods", [[PHONE, "山田 太郎"]])
        s.apps.append(chromium(desk, sf.as_uri(), home / "chromium", CHROMIUM_BOX))
        s.apps.append(firefox(desk, sf2.as_uri(), home / "firefox"))
        s.apps.append(calc(desk, ledger, home / "calc"))
        s.apps.append(
            _xmessage(desk, home, PHONE, XMESSAGE_AT)  # sets no _NET_WM_PID
        )
        s.xids["chromium"] = find_window(desk, "Salesforce - Lightning Experience - Chromium")
        s.xids["firefox"] = find_window(desk, "Salesforce - Lightning Experience.*Mozilla Firefox")
        s.xids["calc"] = find_window(desk, "顧客台帳.ods")
        s.xids["xmessage"] = find_window(desk, "xmessage", timeout=10)
        place(desk, s.xids["firefox"], FIREFOX_BOX)
        place(desk, s.xids["calc"], CALC_BOX)
        place(desk, s.xids["chromium"], CHROMIUM_BOX)
        notes = desk.open_window(
            "memo.txt - Mousepad",
            text=OTHER,
            process="mousepad",
            x=NOTES_AT[0],
            y=NOTES_AT[1],
            width=560,
            height=140,
        )
        s.xids["notes"] = notes.xid
        yield s
    finally:
        s.stop()
        desk.stop()
        shutil.rmtree(home, ignore_errors=True)


def _xmessage(desk: XDesktop, home: Path, text: str, at: tuple[int, int]) -> App:
    from tests.harness.realapps import spawn

    return spawn(
        desk,
        "xmessage",
        [
            "xmessage",
            "-geometry",
            f"+{at[0]}+{at[1]}",
            "-fn",
            "-*-*-bold-r-*-*-34-*-*-*-*-*-iso10646-1",
            text,
        ],
        home / "xmessage",
    )


def _box(scene: Scene, name: str) -> Box:
    """Where the app shows the number: the page below a browser's toolbars, the sheet below Calc's."""
    box = scene.desk.window_box(scene.xids[name])
    skip, height = {"chromium": (140, 150), "firefox": (100, 150), "calc": (120, 80)}.get(
        name, (0, box.height)
    )
    return Box(box.x + 4, box.y + skip, box.width - 8, min(box.height - skip - 4, height))


def _readable(scene: Scene, name: str, text: str = PHONE) -> bool:
    return scene.desk.can_read(text, _box(scene, name))


def test_real_apps_are_readable_before_protection(scene: Scene) -> None:
    # Not vacuous: OCR reads every number while nothing covers it.
    for name in ("chromium", "firefox", "calc"):
        wait_for(lambda n=name: _readable(scene, n), timeout=15, what=f"{name} to show the number")
    assert _readable(scene, "notes", OTHER)


def test_real_windows_have_a_process_identity(scene: Scene) -> None:
    desktop = X11Desktop(scene.desk.display)
    try:
        by_id = {w.id: w for w in desktop.windows()}
    finally:
        desktop.close()
    assert by_id[scene.xids["chromium"]].process_name == "chromium"
    assert by_id[scene.xids["firefox"]].process_name == "firefox-esr"
    assert by_id[scene.xids["calc"]].process_name == "soffice.bin"
    xmessage = by_id[scene.xids["xmessage"]]
    # xmessage sets no _NET_WM_PID: the X server's X-Resource record names its process.
    assert (xmessage.process_name, xmessage.pid_source) == ("xmessage", "xres")
    assert by_id[scene.xids["chromium"]].pid_source == "net_wm_pid"


def test_unchanged_example_policy_covers_chromium_firefox_and_calc(scene: Scene, tmp_path: Path) -> None:
    policy = standard_policy(warn_after=3000.0, protect_after=3600.0, lock_after=7200.0)
    assert policy.customer_apps == standard_policy().customer_apps  # the shipped rules, unchanged
    agent = ProtectedDesktop(scene.desk, tmp_path, policy).start()
    try:
        agent.runtime.protection.step_away()
        agent.wait_covered(3, timeout=10)
        status = agent.runtime.status()
        assert status["covered"]["rules"] == ["Salesforce", "顧客台帳 (Excel)"]
        assert status["cover_state"]["state"] == "covered"
        assert "kintone" in status["cover_state"]["unmatched_rules"]
        for name in ("chromium", "firefox", "calc"):
            assert not _readable(scene, name), f"{name}: the number is readable through the cover"
        assert _readable(scene, "notes", OTHER), "an ordinary window must stay readable"
        wait_for(lambda: agent.events(Kind.PROTECTION_APPLIED), timeout=3, what="protection.applied")
        applied = agent.events(Kind.PROTECTION_APPLIED)
        assert applied == [{"reason": "step_away", "rules": ["Salesforce", "顧客台帳 (Excel)"], "count": 3}]
    finally:
        agent.stop()
    wait_for(lambda: _readable(scene, "chromium"), timeout=10, what="chromium readable after the agent stops")


def test_window_without_net_wm_pid_matches_by_pid_and_by_class_fallback(scene: Scene, tmp_path: Path) -> None:
    from dataclasses import replace

    base = standard_policy(warn_after=3000.0, protect_after=3600.0, lock_after=7200.0)
    policy: Policy = replace(base, customer_apps=(CustomerApp(name="legacy", processes=("xmessage",)),))
    agent = ProtectedDesktop(scene.desk, tmp_path, policy).start()
    try:
        agent.runtime.protection.step_away()
        agent.wait_covered(1)
        assert not _readable(scene, "xmessage")
        assert agent.runtime.status()["covered"]["rules"] == ["legacy"]
    finally:
        agent.stop()
    # Without X-Resource (an X server that lacks it), the window's class is the stated fallback.
    desktop = X11Desktop(scene.desk.display)
    try:
        desktop._x.has_xres = False
        xmessage = next(w for w in desktop.windows() if w.id == scene.xids["xmessage"])
    finally:
        desktop.close()
    from agent.decide.match import identity, rule_matches

    assert xmessage.pid is None and identity(xmessage) == ("wm_class", "Xmessage")
    assert rule_matches(policy.customer_apps[0], xmessage)


def test_agent_apps_lists_the_real_windows_and_why(scene: Scene, tmp_path: Path) -> None:
    keys = policy_keys(tmp_path / "keys")
    drop = tmp_path / "policy.dsse.json"
    drop.write_bytes(keys.sign(STANDARD_POLICY.read_bytes()))
    config = write_agent_config(
        tmp_path,
        state_dir=tmp_path / "state",
        trusted_keys=[keys.public_path],
        policy_bundle=drop,
        language="en",
    )
    env = {**scene.desk.env, "MAMORI_DESKTOP_BACKEND": "x11"}
    run = subprocess.run(
        [sys.executable, "-m", "agent", "agent", "apps", "--config", str(config), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    by_id = {w["id"]: w for w in doc["windows"]}
    assert by_id[scene.xids["chromium"]]["rule"] == "Salesforce"
    assert by_id[scene.xids["firefox"]]["rule"] == "Salesforce"
    assert by_id[scene.xids["calc"]]["rule"] == "顧客台帳 (Excel)"
    notes = by_id[scene.xids["notes"]]
    assert notes["rule"] is None and {v["why"] for v in notes["rules"]} == {"process"}
    assert "kintone" in doc["unmatched_rules"]
    text = subprocess.run(
        [sys.executable, "-m", "agent", "agent", "apps", "--config", str(config)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert text.returncode == 0, text.stderr
    assert re.search(r"covered by rule Salesforce", text.stdout)
    assert "Salesforce: process mousepad is not in its processes/families" in text.stdout
