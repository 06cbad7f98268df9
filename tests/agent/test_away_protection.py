"""Issue 3 acceptance: the real runtime, X11 backend and cover helper under Xvfb + openbox, read by tesseract.

Policy times are short (warn 1 s, protect 2 s) so each test takes a few seconds of real idle time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.app import build_runtime
from agent.config import AgentConfig
from agent.i18n import Translator
from agent.overlay.supervisor import OverlaySupervisor
from agent.platform.base import Monitor, Rect
from agent.platform.linux_x11 import X11Desktop
from agent.report.stream import EventStream, Kind
from agent.runtime import Runtime
from core.clock import SystemClock
from policy.load import load_policy
from tests.harness.policies import write_agent_config
from tests.harness.xdesktop import Box, TkWindow, XDesktop, wait_for

PHONE = "03-1234-5678"
OTHER = "090-8765-4321"

POLICY = """
schema = 1
id = "desktop-test"
version = 1

[presence]
warn_after = "1s"
protect_after = "{protect_after}"
lock_after = "{lock_after}"
cover = "{cover}"
reveal = "{reveal}"
inhibit_lock_when = ["fullscreen"]
max_inhibit = "{max_inhibit}"
hotkey = ""

[[customer_apps]]
name = "ledger"
processes = ["excel"]
title = "顧客台帳"
"""


def policy_text(
    cover: str = "blur",
    lock_after: str = "1h",
    max_inhibit: str = "1h",
    reveal: str = "activity",
    protect_after: str = "2s",
) -> str:
    return POLICY.format(
        cover=cover,
        lock_after=lock_after,
        max_inhibit=max_inhibit,
        reveal=reveal,
        protect_after=protect_after,
    )


class SplitMonitors(X11Desktop):
    """The X11 backend with the monitor layout the test split the wide Xvfb screen into."""

    def __init__(self, desk: XDesktop, lock_command: list[str]) -> None:
        super().__init__(desk.display, lock_command=lock_command)
        self._split = [
            Monitor(Rect(b.x, b.y, b.width, b.height), i == 0) for i, b in enumerate(desk.monitors)
        ]

    def monitors(self) -> list[Monitor]:
        return self._split


class Agent:
    def __init__(
        self,
        desk: XDesktop,
        tmp: Path,
        *,
        cover: str = "blur",
        lock_after: str = "1h",
        max_inhibit: str = "1h",
        lock_command: list[str] | None = None,
        split: bool = False,
        reveal: str = "activity",
        protect_after: str = "2s",
    ) -> None:
        self.desk = desk
        self.stream = EventStream()
        lock_command = lock_command or ["true"]
        self.desktop = (
            SplitMonitors(desk, lock_command)
            if split
            else X11Desktop(desk.display, lock_command=lock_command)
        )
        policy = load_policy(
            policy_text(cover, lock_after, max_inhibit, reveal, protect_after).encode(), "policy.toml"
        )
        holder: list[Runtime] = []
        self.overlay = OverlaySupervisor(env=desk.env, on_click=lambda key: holder[0].protection.reveal(key))  # noqa: PLW0108 - bound later
        self.runtime = build_runtime(
            AgentConfig(state_dir=tmp),
            policy,
            self.desktop,
            self.stream,
            SystemClock(),
            overlay=self.overlay,
            translator=Translator("en"),
            lock_verify_timeout=1.5,
        )
        holder.append(self.runtime)

    def start(self) -> None:
        self.desk.nudge()
        self.runtime.start()

    def covered(self) -> int:
        return int(self.runtime.status()["covered"]["count"])

    def wait_covered(self, count: int = 1, timeout: float = 6.0) -> None:
        wait_for(lambda: self.covered() == count, timeout=timeout, what=f"{count} covered window(s)")
        assert self.overlay.wait_applied(3)

    def events(self, kind: Kind) -> list[dict[str, object]]:
        return [dict(e.data) for e in self.stream.recent() if e.kind is kind]

    def stop(self) -> None:
        self.runtime.stop()
        self.desktop.close()


@pytest.fixture
def make_agent(tmp_path: Path) -> Iterator[object]:
    agents: list[Agent] = []

    def make(desk: XDesktop, **kwargs: object) -> Agent:
        agent = Agent(desk, tmp_path, **kwargs)  # type: ignore[arg-type]
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        agent.stop()


def title_bar(win: TkWindow) -> Box:
    client, frame = win.rect(), win.frame_rect()
    return Box(frame.x, frame.y, frame.width, client.y - frame.y)


def cover_at(desk: XDesktop, box: Box) -> bool:
    return any(b == box for b in desk.override_redirect_windows())


def test_idle_covers_customer_window_input_reveals_idle_covers_again(xdesktop: XDesktop, make_agent) -> None:
    win = xdesktop.open_window("顧客台帳.xlsx - Excel", text=PHONE, process="excel", x=40, y=150)
    other = xdesktop.open_window("memo.txt", text=OTHER, process="notes", x=700, y=150, width=560)
    box, other_box = win.rect(), other.rect()
    assert xdesktop.can_read(PHONE, box) and xdesktop.can_read(OTHER, other_box)
    agent = make_agent(xdesktop)
    agent.start()

    agent.wait_covered(1)
    assert agent.runtime.status()["covered"]["rules"] == ["ledger"]
    assert cover_at(xdesktop, win.rect()), "the cover spans the title bar too (titles can be customer data)"
    assert not xdesktop.can_read(PHONE, box), "the covered phone number must be unreadable"
    assert xdesktop.can_read(OTHER, other_box), "the window beside it stays readable"

    xdesktop.nudge()  # the worker comes back (reveal = "activity")
    agent.wait_covered(0, timeout=3)
    wait_for(lambda: xdesktop.can_read(PHONE, box), timeout=3, what="number readable again")

    agent.wait_covered(1)  # the next idle period covers it again
    assert not xdesktop.can_read(PHONE, box)
    stages = [e["stage"] for e in agent.events(Kind.PRESENCE_STAGE)]
    assert stages[:4] == ["warn", "protect", "active", "warn"]
    applied = agent.events(Kind.PROTECTION_APPLIED)
    assert applied[0] == {"reason": "away", "rules": ["ledger"], "count": 1}
    assert "顧客台帳" not in json.dumps([e.data for e in agent.stream.recent()], ensure_ascii=False)


def test_cover_follows_move_and_close_removes_it(xdesktop: XDesktop, make_agent) -> None:
    win = xdesktop.open_window("顧客台帳 - Excel", text=PHONE, process="excel", x=40, y=150)
    agent = make_agent(xdesktop, cover="opaque")
    baseline = set(xdesktop.override_redirect_windows())
    agent.start()
    agent.wait_covered(1)
    win.move(500, 380)
    moved = win.rect()
    wait_for(lambda: cover_at(xdesktop, win.rect()), timeout=2, what="cover at the new position")
    assert not xdesktop.can_read(PHONE, moved)
    win.close()
    agent.wait_covered(0, timeout=3)
    wait_for(lambda: set(xdesktop.override_redirect_windows()) <= baseline, timeout=2, what="cover gone")


def test_two_monitors_and_failed_lock_covers_every_screen(
    xdesktop_wide: XDesktop, make_agent, tmp_path
) -> None:
    desk = xdesktop_wide
    right = desk.open_window("顧客台帳 - Excel", text=PHONE, process="excel", x=1500, y=150)
    left = desk.open_window("memo.txt", text=OTHER, process="notes", x=100, y=150, width=560)
    marker = tmp_path / "lock-attempts"
    agent = make_agent(
        desk, lock_after="4s", lock_command=["sh", "-c", f"echo attempt >> {marker}"], split=True
    )
    agent.start()
    agent.wait_covered(1)
    box = right.rect()
    assert box.x >= 1280 and cover_at(desk, box) and cover_at(desk, title_bar(right))
    assert not desk.can_read(PHONE, box)
    assert desk.can_read(OTHER, left.rect())

    # lock_command "locks" nothing: after verification the whole screen is covered, monitor by monitor.
    wait_for(lambda: agent.events(Kind.LOCK_FAILED), timeout=8, what="lock_failed")
    for monitor in desk.monitors:
        wait_for(lambda m=monitor: cover_at(desk, m), timeout=3, what=f"full cover on {monitor}")
    assert not desk.can_read(OTHER, left.rect())
    assert agent.events(Kind.LOCK_FAILED) == [{"method": "command", "reason": "not_locked"}]
    assert marker.read_text().count("attempt") == 1
    assert agent.runtime.status()["lock_failed"]


def test_lock_runs_once_and_is_verified(xdesktop: XDesktop, make_agent, tmp_path) -> None:
    xdesktop.open_window("顧客台帳 - Excel", text=PHONE, process="excel", x=40, y=150)
    marker = tmp_path / "lock-attempts"
    # A real, verifiable lock on Xvfb: activate the X screensaver (MIT-SCREEN-SAVER state On).
    lock = ["sh", "-c", f"echo attempt >> {marker}; DISPLAY={xdesktop.display} xset s activate"]
    agent = make_agent(xdesktop, lock_after="3s", lock_command=lock)
    agent.start()
    wait_for(lambda: agent.events(Kind.SESSION_LOCKED), timeout=8, what="session locked")
    time.sleep(1.5)  # more idle ticks in the lock stage must not lock again
    assert marker.read_text().count("attempt") == 1
    assert agent.events(Kind.SESSION_LOCKED)[0]["method"] == "command"
    assert not agent.events(Kind.LOCK_FAILED)
    assert agent.runtime.status()["presence"]["stage"] == "lock"


def test_fullscreen_inhibitor_delays_lock_not_cover(xdesktop: XDesktop, make_agent, tmp_path) -> None:
    win = xdesktop.open_window("顧客台帳 - Excel", text=PHONE, process="excel", x=40, y=150)
    movie = xdesktop.open_window("Movie", text="", process="vlc", x=600, y=300, width=200, height=100)
    movie.set_fullscreen(True)
    marker = tmp_path / "lock-attempts"
    agent = make_agent(
        xdesktop, lock_after="3s", max_inhibit="3s", lock_command=["sh", "-c", f"echo attempt >> {marker}"]
    )
    agent.start()
    started = time.monotonic()
    agent.wait_covered(1)
    assert time.monotonic() - started < 4, "the cover is not delayed by the inhibitor"
    assert cover_at(xdesktop, win.rect())
    wait_for(
        lambda: agent.runtime.status()["presence"]["lock_inhibited_by"] == ["fullscreen"],
        timeout=5,
        what="lock inhibited",
    )
    assert not marker.exists(), "the lock is delayed while fullscreen"
    wait_for(marker.exists, timeout=6, what="lock after max_inhibit")
    assert marker.read_text().count("attempt") == 1


def test_killing_the_helper_covers_again_within_one_second(xdesktop: XDesktop, make_agent) -> None:
    win = xdesktop.open_window("顧客台帳 - Excel", text=PHONE, process="excel", x=40, y=150)
    agent = make_agent(xdesktop)
    agent.start()
    agent.wait_covered(1)
    pid = agent.overlay.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    wait_for(lambda: agent.overlay.pid not in (None, pid), timeout=1, interval=0.01, what="new helper")
    assert agent.overlay.wait_applied(1.0)
    wait_for(lambda: cover_at(xdesktop, win.rect()), timeout=1.0, interval=0.02, what="cover back")
    assert time.monotonic() - killed < 1.0
    assert not xdesktop.can_read(PHONE, win.rect())


def _mamori(desk: XDesktop, *args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        check=False,
        env=desk.env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_cli_run_status_and_step_away(xdesktop: XDesktop, tmp_path: Path) -> None:
    win = xdesktop.open_window("顧客台帳 - Excel", text=PHONE, process="excel", x=40, y=150)
    config = write_agent_config(tmp_path, state_dir=tmp_path / "state", tray=False, lock_command=["true"])
    policy = tmp_path / "policy.toml"
    text = policy_text(lock_after="2h", protect_after="1h")
    policy.write_text(text.replace('warn_after = "1s"', 'warn_after = "50m"'))
    env = {**xdesktop.env, "MAMORI_DESKTOP_BACKEND": "x11"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agent",
            "agent",
            "run",
            "--config",
            str(config),
            "--no-tray",
            "--unsigned-policy",
            str(policy),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def status() -> dict[str, object] | None:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            result = _mamori(xdesktop, "agent", "status", "--config", str(config), "--json")
            return json.loads(result.stdout) if result.returncode == 0 else None

        first = wait_for(status, timeout=15, interval=0.2, what="agent status")
        assert first["presence"]["stage"] == "active"  # type: ignore[index]
        assert first["capabilities"]["backend"] == "x11"  # type: ignore[index]
        assert xdesktop.can_read(PHONE, win.rect())

        assert _mamori(xdesktop, "agent", "step-away", "--config", str(config)).returncode == 0
        covered = wait_for(
            lambda: (s := status()) and s["covered"]["count"] == 1 and s,
            timeout=5,
            what="covered",  # type: ignore[index]
        )
        assert covered["cover_reasons"] == ["away", "step_away"]  # type: ignore[index]
        assert covered["covered"]["rules"] == ["ledger"]  # type: ignore[index]
        wait_for(lambda: not xdesktop.can_read(PHONE, win.rect()), timeout=3, what="number hidden")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    result = _mamori(xdesktop, "agent", "status", "--config", str(config))
    assert result.returncode == 3 and "mamori agent run" in result.stderr


def test_reveal_on_click_keeps_cover_through_input_until_clicked(
    xdesktop: XDesktop, make_agent, tmp_path
) -> None:
    win = xdesktop.open_window("顧客台帳 - Excel", text=PHONE, process="excel", x=40, y=150)
    agent = make_agent(xdesktop, cover="opaque", reveal="click")
    agent.start()
    agent.wait_covered(1)
    xdesktop.nudge()
    wait_for(
        lambda: agent.runtime.status()["presence"]["awaiting_reveal"], timeout=3, what="awaiting a click"
    )
    assert agent.covered() == 1 and not xdesktop.can_read(PHONE, win.rect())
    x, y = win.rect().center
    xdesktop.click(x, y)
    agent.wait_covered(0, timeout=3)
    wait_for(lambda: xdesktop.can_read(PHONE, win.rect()), timeout=3, what="readable after the click")


def test_hotkey_steps_away(xdesktop: XDesktop) -> None:
    code = (
        "import sys, threading\n"
        "from agent.hotkey import start_hotkey\n"
        "fired = threading.Event()\n"
        "h = start_hotkey('<ctrl>+<alt>+m', fired.set)\n"
        "print('ready', flush=True)\n"
        "sys.exit(0 if fired.wait(10) else 1)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], env=xdesktop.env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    xdesktop.key("ctrl+alt+m")
    assert proc.wait(timeout=15) == 0, "the hotkey callback did not run"


def test_locker_that_only_grabs_the_keyboard_is_verified(xdesktop: XDesktop, make_agent, tmp_path) -> None:
    xdesktop.open_window("顧客台帳 - Excel", text=PHONE, process="excel", x=40, y=150)
    pidfile = tmp_path / "locker.pid"
    locker = Path(__file__).parents[1] / "harness" / "locker.py"
    # Forks like i3lock: the command exits at once, the locker keeps the keyboard grabbed.
    lock = ["sh", "-c", f"DISPLAY={xdesktop.display} {sys.executable} {locker} {pidfile} &"]
    agent = make_agent(xdesktop, lock_after="3s", lock_command=lock)
    agent.start()
    try:
        wait_for(lambda: agent.events(Kind.SESSION_LOCKED), timeout=10, what="session locked")
        assert not agent.events(Kind.LOCK_FAILED)
        assert agent.events(Kind.SESSION_LOCKED)[0]["method"] == "command"
    finally:
        if pidfile.exists():
            os.kill(int(pidfile.read_text()), signal.SIGTERM)
    xdesktop.nudge()  # the worker unlocked and is back
    wait_for(lambda: agent.events(Kind.SESSION_UNLOCKED), timeout=5, what="session unlocked")
    agent.wait_covered(0, timeout=3)


def test_warn_countdown_is_shown_and_input_dismisses_it(xdesktop: XDesktop, make_agent) -> None:
    win = xdesktop.open_window("顧客台帳 - Excel", text=PHONE, process="excel", x=40, y=200)
    agent = make_agent(xdesktop, protect_after="30s")
    baseline = set(xdesktop.override_redirect_windows())
    agent.start()
    wait_for(lambda: agent.runtime.status()["presence"]["stage"] == "warn", timeout=5, what="warn stage")
    banner = wait_for(
        lambda: [b for b in xdesktop.override_redirect_windows() if b not in baseline and b.y == 40],
        timeout=3,
        what="countdown banner",
    )[0]
    text = xdesktop.ocr(banner)
    assert "hidden in" in text and "Move the mouse" in text, text
    assert xdesktop.can_read(PHONE, win.rect()), "warn does not cover yet"
    xdesktop.nudge()
    wait_for(lambda: agent.runtime.status()["presence"]["stage"] == "active", timeout=3, what="active again")
    wait_for(lambda: banner not in xdesktop.override_redirect_windows(), timeout=3, what="banner gone")


@pytest.mark.parametrize(
    ("reveal", "english"), [("activity", "press a key to return"), ("click", "Click here to show")]
)
def test_the_cover_says_how_to_get_back_in_both_languages(
    xdesktop: XDesktop, make_agent, reveal: str, english: str
) -> None:
    win = xdesktop.open_window("顧客台帳.xlsx - Excel", text=PHONE, process="excel", x=40, y=150, width=900)
    agent = make_agent(xdesktop, cover="opaque", reveal=reveal)
    agent.start()
    agent.wait_covered(1)
    text = " ".join(xdesktop.ocr(win.rect(), lang="eng+jpn").split())
    assert english in text, text
    # The worker's language first, the other below it (agent.protection.bilingual): the Japanese line too.
    japanese = "".join(text.split())
    assert ("戻ります" if reveal == "activity" else "クリックすると表示") in japanese, text
