"""Linux notifications for real: notify-send over a private D-Bus session to a real daemon (dunst) on Xvfb.

The popup is read back with tesseract: Japanese for a ja worker, English for en. Without a daemon on the bus the
notifier must degrade and say why (one line), not raise.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from agent.i18n import Translator
from agent.platform.notifications import LinuxNotifySend
from agent.report.stream import AgentEvent, Kind
from agent.ui.notify import Notifier, notification_for
from core.clock import SystemClock
from tests.harness.uidesk import save_png, settle, squash
from tests.harness.xdesktop import Box, XDesktop, wait_for

BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:dir={dir}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""
# No <servicedir>: nothing is auto-started, so "no daemon" really means no daemon.

DUNSTRC = """[global]
font = "IPAPGothic 16"
width = 560
height = 300
origin = top-right
offset = 10x40
frame_width = 2
word_wrap = yes
[urgency_normal]
background = "#ffffff"
foreground = "#000000"
timeout = 0
[urgency_critical]
background = "#ffffff"
foreground = "#000000"
timeout = 0
"""


@pytest.fixture
def session_bus(tmp_path: Path) -> Iterator[dict[str, str]]:
    if shutil.which("dbus-daemon") is None:
        pytest.skip("dbus-daemon not installed (dbus package; run .ci/run)")
    conf = tmp_path / "bus.conf"
    sock_dir = tmp_path / "bus"
    sock_dir.mkdir()
    conf.write_text(BUS_CONFIG.format(dir=sock_dir))
    proc = subprocess.Popen(
        ["dbus-daemon", f"--config-file={conf}", "--nofork", "--print-address"],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    address = proc.stdout.readline().strip()
    assert address, "dbus-daemon printed no address"
    yield {"DBUS_SESSION_BUS_ADDRESS": address}
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(5)


def runner_with(env: dict[str, str]):  # type: ignore[no-untyped-def]
    def run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(argv), env=env, capture_output=True, text=True, timeout=10, check=False)

    return run


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_notification_shows_in_worker_language(
    xdesktop: XDesktop, session_bus: dict[str, str], tmp_path: Path, lang: str
) -> None:
    if shutil.which("dunst") is None:
        pytest.skip("no notification daemon installed (dunst; add it to .ci/run)")
    env = {**xdesktop.env, **session_bus}
    rc = tmp_path / "dunstrc"
    rc.write_text(DUNSTRC)
    dunst = subprocess.Popen(
        ["dunst", "-config", str(rc)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        backend = LinuxNotifySend(runner_with(env), env)
        assert backend.unavailable_reason() is None
        notifier = Notifier(backend, SystemClock())
        t = Translator(lang)
        event = AgentEvent(
            Kind.POSTURE_FINDING,
            SystemClock().now(),
            {"check_id": "vpn", "status": "fail", "enforcement": "block"},
        )
        n = notification_for(event, t)
        assert n is not None

        # dunst needs a moment to own the bus name; the first sends may fail while it starts.
        def shown() -> bool:
            try:
                backend.send(n)
            except Exception:
                return False
            return True

        wait_for(shown, timeout=10, what="dunst to accept a notification")
        assert notifier.notify(n)  # the rate limiter lets the first one through
        assert not notifier.notify(n)  # ...and not the same one again right away
        region = Box(xdesktop.width - 620, 30, 620, 260)
        ocr_lang = "jpn" if lang == "ja" else "eng"
        want = squash(t("remedy.vpn")).rstrip("。.")
        wait_for(
            lambda: want in squash(xdesktop.ocr(region, lang=ocr_lang)),
            timeout=10,
            what=f"the {lang} notification on screen",
        )
        settle()
        save_png(f"notification.{lang}.png", xdesktop.screenshot(region))
    finally:
        os.killpg(dunst.pid, signal.SIGTERM)
        dunst.wait(5)


def test_without_a_daemon_notifications_degrade_and_say_why(
    xdesktop: XDesktop, session_bus: dict[str, str]
) -> None:
    env = {**xdesktop.env, **session_bus}
    reasons: list[str] = []
    notifier = Notifier(LinuxNotifySend(runner_with(env), env), SystemClock(), on_degraded=reasons.append)
    n = notification_for(
        AgentEvent(Kind.PROTECTION_APPLIED, SystemClock().now(), {"reason": "away"}), Translator("en")
    )
    assert n is not None
    assert notifier.notify(n) is False
    assert len(reasons) == 1 and notifier.degraded_reason
    assert "\n" not in reasons[0]
