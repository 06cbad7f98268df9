"""Issue 11: covers and real screen lockers never fight. i3lock, xsecurelock and xscreensaver each lock with nothing
of Mamori drawn above them (X stacking order and pixels of the customer window's area), the lock is verified by
what the X server says (a held keyboard grab), and a lock command that runs but locks nothing (``sleep``) ends in
``session.lock_failed`` with the whole screen covered.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.report.stream import Kind
from policy.load import load_policy
from tests.harness.realapps import ProtectedDesktop, need
from tests.harness.xdesktop import XDesktop, wait_for

pytestmark = [pytest.mark.apps, pytest.mark.desktop]

PHONE = "03-1234-5678"
LOCKER_RGB = (0x20, 0x30, 0x40)

POLICY = """
schema = 1
id = "locker-test"
version = 1

[presence]
warn_after = "1s"
protect_after = "2s"
lock_after = "3s"
cover = "opaque"
inhibit_lock_when = []
hotkey = ""

[[customer_apps]]
name = "ledger"
processes = ["excel"]
title = "顧客台帳"
"""


def top_level_stack(desk: XDesktop) -> list[tuple[int, int | None, bool]]:
    """The root's mapped children, bottom to top: (xid, owning pid from X-Resource, covers the whole screen)."""
    from Xlib import X, display
    from Xlib.ext import res

    d = display.Display(desk.display)
    try:
        out = []
        for child in d.screen().root.query_tree().children:
            with contextlib.suppress(Exception):
                if child.get_attributes().map_state != X.IsViewable:
                    continue
                geom = child.get_geometry()
                # xsecurelock's own window has a 1-pixel border inside the screen (it draws in the composite
                # overlay window, above every root child, too).
                full = geom.width >= desk.width - 4 and geom.height >= desk.height - 4
                reply = d.res_query_client_ids([{"client": child.id, "mask": res.LocalClientPIDMask}])
                pid = next((int(i.value[0]) for i in reply.ids if len(i.value)), None)
                out.append((child.id, pid, full))
        return out
    finally:
        d.close()


def helper_windows_above_the_locker(desk: XDesktop, helper_pid: int) -> list[int]:
    """Mapped windows of the cover helper stacked above the topmost full-screen window of another client (the
    lock screen)."""
    stack = top_level_stack(desk)
    locker_at = max((i for i, (_, pid, full) in enumerate(stack) if full and pid != helper_pid), default=None)
    assert locker_at is not None, f"no lock screen on top of the desktop: {stack}"
    return [xid for xid, pid, _ in stack[locker_at + 1 :] if pid == helper_pid]


@pytest.fixture
def scene(xdesktop: XDesktop, tmp_path: Path) -> Iterator[tuple[XDesktop, Path]]:
    xdesktop.open_window("顧客台帳 - 山田 太郎", text=PHONE, process="excel", x=40, y=120)
    yield xdesktop, tmp_path


def _agent(desk: XDesktop, tmp: Path, lock_command: list[str]) -> ProtectedDesktop:
    return ProtectedDesktop(
        desk,
        tmp,
        load_policy(POLICY.encode(), "policy.toml"),
        lock_command=lock_command,
        lock_verify_timeout=8.0,
    )


def _locker_process(agent: ProtectedDesktop) -> subprocess.Popen[bytes] | None:
    return agent.desktop._locker._locker


def _check_locked_with_nothing_above(agent: ProtectedDesktop, desk: XDesktop) -> None:
    wait_for(lambda: agent.events(Kind.SESSION_LOCKED), timeout=20, what="session.locked")
    assert agent.events(Kind.LOCK_FAILED) == []
    helper = agent.overlay.pid
    assert helper is not None
    # xscreensaver reports "locked" a moment before its lock window is mapped: wait for the lock screen itself.
    wait_for(
        lambda: any(full and pid != helper for _, pid, full in top_level_stack(desk)),
        timeout=5,
        what="the lock screen mapped",
    )
    assert helper_windows_above_the_locker(desk, helper) == []
    # Once the OS says locked, no cover is drawn at all.
    wait_for(
        lambda: agent.runtime.status()["cover_state"]["state"] == "locked", timeout=3, what="covers hidden"
    )
    assert agent.overlay.wait_applied(3)
    assert helper_windows_above_the_locker(desk, helper) == []
    assert not desk.can_read(PHONE)


def _end(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def test_i3lock_locks_above_the_covers(scene: tuple[XDesktop, Path]) -> None:
    need("i3lock")
    desk, tmp = scene
    agent = _agent(desk, tmp, ["i3lock", "-n", "-c", "203040"]).start()
    try:
        wait_for(lambda: _locker_process(agent) is not None, timeout=15, what="i3lock started")
        locker = _locker_process(agent)
        assert locker is not None
        _check_locked_with_nothing_above(agent, desk)
        assert desk.pixel(300, 200) == LOCKER_RGB  # the lock screen, where the customer window is
    finally:
        _end(_locker_process(agent))
        agent.stop()


def test_xsecurelock_locks_above_the_covers(scene: tuple[XDesktop, Path]) -> None:
    need("xsecurelock")
    desk, tmp = scene
    agent = _agent(desk, tmp, ["xsecurelock"]).start()
    try:
        wait_for(lambda: _locker_process(agent) is not None, timeout=15, what="xsecurelock started")
        locker = _locker_process(agent)
        assert locker is not None
        _check_locked_with_nothing_above(agent, desk)
    finally:
        _end(_locker_process(agent))
        agent.stop()


def test_xscreensaver_locks_above_the_covers(scene: tuple[XDesktop, Path]) -> None:
    need("xscreensaver", "xscreensaver-command")
    desk, tmp = scene
    home = tmp / "home"
    home.mkdir()
    (home / ".xscreensaver").write_text(
        "mode: blank\nfade: False\nunfade: False\nlock: True\nsplash: False\n"
    )
    # xscreensaver refuses to lock for root ("locking disabled"): as root (CI), run it as nobody.
    user: list[str] = []
    if os.geteuid() == 0:
        user = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        for path in (home, home / ".xscreensaver"):
            os.chown(path, 65534, 65534)
    env = {**desk.env, "HOME": str(home)}
    daemon = subprocess.Popen(
        [*user, "xscreensaver", "--no-splash"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for(
            lambda: (
                subprocess.run(
                    [*user, "xscreensaver-command", "-version"], env=env, capture_output=True, check=False
                ).returncode
                == 0
            ),
            timeout=15,
            what="xscreensaver daemon",
        )
        agent = _agent(desk, tmp, [*user, "env", f"HOME={home}", "xscreensaver-command", "-lock"]).start()
        try:
            _check_locked_with_nothing_above(agent, desk)
        finally:
            agent.stop()
    finally:
        _end(daemon)


def test_sleep_as_lock_command_ends_in_lock_failed_with_the_whole_screen_covered(
    scene: tuple[XDesktop, Path],
) -> None:
    desk, tmp = scene
    agent = ProtectedDesktop(
        desk,
        tmp,
        load_policy(POLICY.encode(), "policy.toml"),
        lock_command=["sleep", "25"],
        lock_verify_timeout=3.0,
    ).start()
    try:
        wait_for(lambda: agent.events(Kind.LOCK_FAILED), timeout=15, what="session.lock_failed")
        assert agent.events(Kind.SESSION_LOCKED) == []
        assert agent.events(Kind.LOCK_FAILED)[0]["reason"] == "not_locked"
        wait_for(
            lambda: agent.runtime.status()["cover_state"]["state"] == "screen", timeout=3, what="whole screen"
        )
        assert agent.overlay.wait_applied(3)
        assert not desk.can_read(PHONE)
    finally:
        _end(_locker_process(agent))
        agent.stop()
