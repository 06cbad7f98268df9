"""`mamori agent doctor`: rows, fixes in the worker's language, exit status; once for real on Xvfb."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.commands.doctor import Probes, Row, diagnose, essential_ok, render
from agent.config import AgentConfig
from agent.i18n import Translator
from agent.platform.base import Capabilities
from tests.harness.policies import write_agent_config
from tests.harness.xdesktop import XDesktop

ROOT = Path(__file__).resolve().parents[3]
FULL = Capabilities(
    backend="x11", idle=True, window_list=True, window_pids=True, lock=True, lock_state=True, cover=True
)


def probes(**kw: object) -> Probes:
    base: dict[str, object] = {
        "capabilities": lambda: FULL,
        "tk": lambda: None,
        "tray": lambda: ("appindicator", True, "appindicator"),
        "notifications": lambda: None,
        "platform": "linux",
        "environ": {"DISPLAY": ":0"},
    }
    base.update(kw)
    return Probes(**base)  # type: ignore[arg-type]


def row(rows: list[Row], key: str) -> Row:
    return next(r for r in rows if r.key == key)


def test_everything_works(tmp_path: Path) -> None:
    rows = diagnose(AgentConfig(state_dir=tmp_path), probes())
    assert essential_ok(rows) and all(r.ok for r in rows)
    assert "All essential capabilities work." in render(rows, Translator("en"))


def test_wayland_without_window_list_fails_with_the_wayland_fix(tmp_path: Path) -> None:
    caps = Capabilities(
        backend="wayland",
        idle=True,
        lock=True,
        lock_state=True,
        cover=False,
        notes=("Wayland does not let clients list other windows",),
    )
    rows = diagnose(
        AgentConfig(state_dir=tmp_path),
        probes(capabilities=lambda: caps, environ={"XDG_SESSION_TYPE": "wayland"}),
    )
    assert not essential_ok(rows)
    assert row(rows, "window_list").fix_key == "doctor.fix.wayland"
    text = render(rows, Translator("ja"))
    assert "ログイン画面で「Xorg」セッションを選ぶ" in text
    assert "必須の機能で動作しないものがあります: ウィンドウ一覧, 画面の保護 (カバー)" in text


def test_lock_command_in_config_makes_lock_work(tmp_path: Path) -> None:
    caps = Capabilities(
        backend="x11", idle=True, window_list=True, lock=False, cover=True, notes=("no lock method",)
    )
    without = diagnose(AgentConfig(state_dir=tmp_path), probes(capabilities=lambda: caps))
    assert row(without, "lock").fix_key == "doctor.fix.lock" and not essential_ok(without)
    with_cmd = diagnose(
        AgentConfig(state_dir=tmp_path, lock_command=("xdg-screensaver", "lock")),
        probes(capabilities=lambda: caps),
    )
    assert row(with_cmd, "lock").ok and essential_ok(with_cmd)


def test_menu_less_tray_and_missing_daemon_are_optional(tmp_path: Path) -> None:
    rows = diagnose(
        AgentConfig(state_dir=tmp_path),
        probes(
            tray=lambda: ("xorg", False, "xorg"),
            notifications=lambda: "no notification daemon on the session bus",
        ),
    )
    assert essential_ok(rows)
    assert row(rows, "tray").ok and not row(rows, "tray_menu").ok
    assert row(rows, "tray_menu").fix_key == "doctor.fix.tray_menu"
    assert row(rows, "notifications").fix_key == "doctor.fix.notify_daemon"
    text = render(rows, Translator("en"))
    assert "[NO] Tray menu (optional)" in text
    assert "clicking the icon opens the status window" in text


def test_backend_that_cannot_load_and_missing_tk(tmp_path: Path) -> None:
    rows = diagnose(
        AgentConfig(state_dir=tmp_path),
        probes(capabilities=lambda: "PlatformError: no X display", environ={}),
    )
    assert not essential_ok(rows)
    assert {r.fix_key for r in rows if r.essential and not r.ok} == {"doctor.fix.display"}
    rows = diagnose(
        AgentConfig(state_dir=tmp_path), probes(tk=lambda: "ModuleNotFoundError: No module named 'tkinter'")
    )
    assert row(rows, "cover").fix_key == "doctor.fix.tk"


def test_macos_permissions_are_essential(tmp_path: Path) -> None:
    rows = diagnose(
        AgentConfig(state_dir=tmp_path),
        probes(
            platform="darwin",
            permissions=lambda: [
                ("doctor.fix.macos_screen", False),
                ("doctor.fix.macos_accessibility", True),
            ],
        ),
    )
    perm = row(rows, "permissions")
    assert perm.essential and not perm.ok and perm.fix_key == "doctor.fix.macos_screen"
    assert "画面収録 で Mamori を許可" in render(rows, Translator("ja"))


def test_unwritable_state_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rows = diagnose(AgentConfig(state_dir=blocker / "state"), probes())
    assert not row(rows, "state_dir").ok and not essential_ok(rows)


def test_doctor_for_real_on_an_x_desktop(xdesktop: XDesktop, tmp_path: Path) -> None:
    config = write_agent_config(tmp_path, state_dir=tmp_path / "state", lock_command=["true"], language="en")
    env = {**xdesktop.env, "PYTHONPATH": str(ROOT)}
    env.pop("DBUS_SESSION_BUS_ADDRESS", None)
    result = subprocess.run(
        [sys.executable, "-m", "agent", "agent", "doctor", "--config", str(config)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    for line in (
        "[OK] Window list",
        "[OK] Cover windows",
        "[OK] Lock the session",
        "[OK] Idle time source",
        "[OK] Tray icon (optional)",
    ):
        assert line in out, out
    # pystray's X11 backend has no menu unless AppIndicator is installed; the doctor says so and how to fix it.
    if "[NO] Tray menu (optional)" in out:
        assert "gir1.2-ayatanaappindicator3" in out
    assert "[NO] Notifications (optional)" in out and "D-Bus" in out
    assert os.path.isdir(tmp_path / "state")


def test_tk_that_cannot_open_the_display_gets_the_display_fix(tmp_path: Path) -> None:
    # Before the fix any Tk problem naming "tkinter" (also "_tkinter.TclError: couldn't connect to display")
    # told the worker to install Tk.
    rows = diagnose(
        AgentConfig(state_dir=tmp_path),
        probes(tk=lambda: '_tkinter.TclError: couldn\'t connect to display ":5"', environ={}),
    )
    assert row(rows, "cover").fix_key == "doctor.fix.display"


def test_doctor_creates_the_state_dir_private(tmp_path: Path) -> None:
    import stat

    # Before the fix the doctor, when first to run, created the state directory with the umask's 0755.
    state = tmp_path / "state"
    diagnose(AgentConfig(state_dir=state), probes())
    assert stat.S_IMODE(state.stat().st_mode) == 0o700


def test_the_capability_probe_closes_the_desktop_it_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import agent.platform
    from agent.commands.doctor import _probe_capabilities

    # Before the fix the backend (its X display or D-Bus connection) was left open.
    closed: list[bool] = []

    class Desktop:
        def capabilities(self) -> Capabilities:
            return FULL

        def close(self) -> None:
            closed.append(True)

    monkeypatch.setattr(agent.platform, "create_desktop", lambda _lock: Desktop())
    assert _probe_capabilities(AgentConfig(state_dir=tmp_path))() == FULL
    assert closed == [True]
