"""`mamori agent doctor`: rows, fixes in the worker's language, exit status; once for real on Xvfb."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.commands.doctor import Probes, Row, diagnose, essential_ok, render
from agent.config import AgentConfig
from agent.i18n import Translator
from agent.platform.base import Capabilities
from tests.harness.policies import policy_keys, policy_toml, write_agent_config
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


def configured(
    tmp_path: Path,
    *,
    state_dir: Path | None = None,
    apply: bool = True,
    policy: str | None = None,
    **agent_toml: Any,
) -> AgentConfig:
    """An installed agent: agent.toml with a trusted key, and (``apply``) a signed policy in the store."""
    import tempfile
    from datetime import UTC, datetime

    from agent.config import load_config
    from policy.keys import load_trusted_keys
    from policy.store import TrustedStore

    tmp_path.mkdir(parents=True, exist_ok=True)
    tmp_path = Path(tempfile.mkdtemp(dir=tmp_path))  # called twice in one test: each its own install
    keys = policy_keys(tmp_path / "keys")
    state = state_dir or tmp_path / "state"
    if apply:
        bundle = keys.sign(policy or policy_toml(policy_id="doc-test"))
        TrustedStore(state).apply(bundle, load_trusted_keys([keys.public_path]), datetime.now(UTC))
    path = write_agent_config(tmp_path, state_dir=state, trusted_keys=[keys.public_path], **agent_toml)
    return load_config(path)


def test_everything_works(tmp_path: Path) -> None:
    rows = diagnose(configured(tmp_path), probes())
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
        configured(tmp_path),
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
    without = diagnose(configured(tmp_path), probes(capabilities=lambda: caps))
    assert row(without, "lock").fix_key == "doctor.fix.lock" and not essential_ok(without)
    with_cmd = diagnose(
        configured(tmp_path / "with", lock_command=["xdg-screensaver", "lock"]),
        probes(capabilities=lambda: caps),
    )
    assert row(with_cmd, "lock").ok and essential_ok(with_cmd)


def test_menu_less_tray_and_missing_daemon_are_optional(tmp_path: Path) -> None:
    rows = diagnose(
        configured(tmp_path),
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
        configured(tmp_path),
        probes(capabilities=lambda: "PlatformError: no X display", environ={}),
    )
    assert not essential_ok(rows)
    assert {r.fix_key for r in rows if r.essential and not r.ok} == {"doctor.fix.display"}
    rows = diagnose(configured(tmp_path), probes(tk=lambda: "ModuleNotFoundError: No module named 'tkinter'"))
    assert row(rows, "cover").fix_key == "doctor.fix.tk"


def test_macos_permissions_are_essential(tmp_path: Path) -> None:
    rows = diagnose(
        configured(tmp_path),
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
    rows = diagnose(configured(tmp_path, state_dir=blocker / "state", apply=False), probes())
    assert not row(rows, "state_dir").ok and not essential_ok(rows)


def _run_doctor(env: dict[str, str], config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", "agent", "doctor", "--config", str(config), *extra],
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )


@pytest.mark.desktop
def test_doctor_for_real_on_an_x_desktop(xdesktop: XDesktop, tmp_path: Path) -> None:
    """A drop-only install (the store is empty), a lock command, one customer-app window open on the desktop."""
    keys = policy_keys(tmp_path / "keys")
    drop = tmp_path / "drop.json"
    rules = [{"name": "crm", "processes": ["custapp"]}, {"name": "ledger", "processes": ["ledger-app"]}]
    drop.write_bytes(keys.sign(policy_toml(policy_id="acme-drop", version=4, customer_apps=rules)))
    config = write_agent_config(
        tmp_path,
        state_dir=tmp_path / "state",
        trusted_keys=[keys.public_path],
        policy_bundle=drop,
        lock_command=["true"],
        language="en",
    )
    xdesktop.open_window("Customer 42", process="custapp")
    env = dict(xdesktop.env)
    env.pop("DBUS_SESSION_BUS_ADDRESS", None)
    result = _run_doctor(env, config)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    for line in (
        "[OK] Trusted policy keys",
        "[OK] Signed policy",
        "acme-drop v4 (" + str(drop) + ")",
        "[OK] Window list",
        "[OK] Cover windows",
        "[OK] Lock the session",
        "[OK] Idle time source",
        "[OK] Tray icon (optional)",
        "[OK] Customer-app rule: crm (optional)",
        "1 window(s): custapp",
        "[--] Customer-app rule: ledger (optional)",
        "no open window matches now",
    ):
        assert line in out, out
    assert "Customer 42" not in out  # a title can be customer data: never printed
    # pystray's X11 backend has no menu unless AppIndicator is installed; the doctor says so and how to fix it.
    if "[NO] Tray menu (optional)" in out:
        assert "gir1.2-ayatanaappindicator3" in out
    assert "[NO] Notifications (optional)" in out and "D-Bus" in out
    assert os.path.isdir(tmp_path / "state")
    doc = json.loads(_run_doctor(env, config, "--json").stdout)
    assert doc["ok"] is True and doc["failing"] == []
    # Without lock_command: this desktop has no screen locker (no xscreensaver daemon, no GNOME, nothing
    # listening to logind), so every real lock would fail. Before: "[OK] 画面ロック", exit 0.
    (tmp_path / "bare").mkdir()
    bare = write_agent_config(
        tmp_path / "bare",
        state_dir=tmp_path / "state",
        trusted_keys=[keys.public_path],
        policy_bundle=drop,
        language="en",
    )
    result = _run_doctor(env, bare)
    assert result.returncode == 1, result.stdout
    assert "[NO] Lock the session" in result.stdout
    assert "Unknown command 'lock'" in result.stdout or "no screen locker that listens" in result.stdout
    by_id = {c["id"]: c for c in doc["checks"]}
    assert by_id["rule:crm"]["status"] == "ok" and by_id["rule:ledger"]["status"] == "info"
    assert set(by_id["policy"]) == {"id", "name", "status", "essential", "detail", "fix"}


def test_a_missing_trusted_key_fails_the_doctor(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Before: "All essential capabilities work" (exit 0) while the agent ran with no policy."""
    from agent.cli import main

    config = write_agent_config(
        tmp_path, state_dir=tmp_path / "state", trusted_keys=[tmp_path / "gone.pub"], language="en"
    )
    code = main(["agent", "doctor", "--config", str(config), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 1 and doc["ok"] is False
    assert {"trusted_keys", "policy"} <= set(doc["failing"])
    keys = next(c for c in doc["checks"] if c["id"] == "trusted_keys")
    assert "gone.pub" in keys["detail"] and "trusted_keys" in keys["fix"]


def test_a_broken_agent_toml_is_the_first_row_with_the_single_quote_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from agent.cli import main

    config = tmp_path / "agent.toml"
    config.write_text('state_dir = "C:\\Users\\taro"\ntrusted_keys = ["C:\\Keys\\p.pub"]\n')
    code = main(["agent", "doctor", "--config", str(config)])
    out = capsys.readouterr().out
    assert code == 1
    first = out.splitlines()[2]
    assert "agent.toml" in first or "設定ファイル" in first
    assert "state_dir = 'C:\\Users\\taro'" in out  # the fix shows the single-quoted form


def test_the_policy_from_the_drop_when_the_store_is_empty(tmp_path: Path) -> None:
    keys = policy_keys(tmp_path / "keys")
    drop = tmp_path / "drop.json"
    drop.write_bytes(keys.sign(policy_toml(policy_id="from-drop", version=2)))
    from agent.config import load_config

    path = write_agent_config(
        tmp_path, state_dir=tmp_path / "state", trusted_keys=[keys.public_path], policy_bundle=drop
    )
    rows = diagnose(load_config(path), probes())
    assert row(rows, "policy").ok and "from-drop v2" in row(rows, "policy").note
    drop.write_bytes(policy_keys(tmp_path / "other").sign(policy_toml(policy_id="from-drop", version=3)))
    rows = diagnose(load_config(path), probes())
    policy = row(rows, "policy")
    assert not policy.ok and "not trusted" in policy.detail and policy.fix_key == "doctor.fix.policy_drop"
    assert not essential_ok(rows)


def test_an_expired_policy_is_said_but_still_enforced(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from core.clock import FakeClock

    text = policy_toml(policy_id="short", extra={"expires": datetime.now(UTC) + timedelta(days=1)})
    config = configured(tmp_path, policy=text)
    later = FakeClock(datetime.now(UTC) + timedelta(days=2))
    policy = row(diagnose(config, probes(clock=later)), "policy")
    assert not policy.ok and not policy.essential and policy.fix_key == "doctor.fix.policy_expired"


def test_a_lock_method_that_does_not_lock_fails_the_doctor(tmp_path: Path) -> None:
    problem = "xdg-screensaver finds no screen locker on this desktop"
    rows = diagnose(configured(tmp_path), probes(lock=lambda caps: problem))
    lock = row(rows, "lock")
    assert not lock.ok and lock.fix_key == "doctor.fix.lock_method" and not essential_ok(rows)
    assert "light-locker" in render(rows, Translator("ja"))


def test_enrollment_and_server_reachability(tmp_path: Path) -> None:
    from agent.report.enrollment import Enrollment, save_enrollment

    config = configured(tmp_path, server="https://mamori.example.com")
    rows = diagnose(config, probes())
    enrollment = row(rows, "enrollment")
    assert not enrollment.ok and enrollment.essential and enrollment.fix_args["server"] == config.server
    save_enrollment(config.state_dir, Enrollment("https://mamori.example.com", "d1", "mdt_x"))
    seen: list[str] = []

    def unreachable(url: str) -> str:
        seen.append(url)
        return "cannot reach the server"

    rows = diagnose(config, probes(server=unreachable))
    assert seen == ["https://mamori.example.com"]
    assert row(rows, "enrollment").ok and not row(rows, "server").ok and not essential_ok(rows)


def test_the_server_probe_tells_plain_http_from_tls(tmp_path: Path) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from agent.commands.doctor import _probe_server

    class Ok(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    port = httpd.server_address[1]
    try:
        probe = _probe_server(AgentConfig(state_dir=tmp_path))
        assert "does not speak TLS" in str(probe(f"https://127.0.0.1:{port}"))
        assert "unencrypted" in str(probe(f"http://127.0.0.1:{port}"))
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_rules_report_matching_process_names_not_titles(tmp_path: Path) -> None:
    from tests.harness.fakes import window

    text = policy_toml(customer_apps=[{"name": "crm", "processes": ["crm-client"]}])
    config = configured(tmp_path, policy=text)
    open_now = [window(1, "山田太郎 様", "crm-client"), window(2, "mail", "thunderbird")]
    rule = row(diagnose(config, probes(windows=lambda: open_now)), "rule")
    assert rule.ok and not rule.info and rule.label == "crm" and "crm-client" in rule.note
    assert "山田" not in rule.note
    unknown = row(diagnose(config, probes(windows=lambda: "no window manager")), "rule")
    assert not unknown.ok and not unknown.essential


@pytest.mark.apps
@pytest.mark.desktop
def test_the_xdg_screensaver_probe_agrees_with_xdg_screensaver(xdesktop: XDesktop, tmp_path: Path) -> None:
    """xdg-utils' own script decides: on a bare X desktop `xdg-screensaver lock` fails with "Unknown command
    'lock'" and the probe says so; with an XScreenSaver to call, both succeed."""
    import shutil

    from agent.commands.doctor import xdg_screensaver_problem

    if shutil.which("xdg-screensaver") is None:
        pytest.skip("xdg-screensaver (xdg-utils) is not installed")
    env = {k: v for k, v in xdesktop.env.items() if k != "DBUS_SESSION_BUS_ADDRESS"}
    real = subprocess.run(["xdg-screensaver", "lock"], env=env, capture_output=True, text=True, check=False)
    assert real.returncode != 0 and "Unknown command 'lock'" in real.stderr
    assert "Unknown command 'lock'" in str(xdg_screensaver_problem(env))

    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "xscreensaver-command"  # answers like XScreenSaver 6 and "locks" by recording the call
    fake.write_text(f'#!/bin/sh\necho "XScreenSaver 6.06"\necho "$@" >> {tmp_path / "calls"}\n')
    fake.chmod(0o755)
    env["PATH"] = f"{bindir}:{env.get('PATH', os.defpath)}"
    assert xdg_screensaver_problem(env) is None
    real = subprocess.run(["xdg-screensaver", "lock"], env=env, capture_output=True, text=True, check=False)
    assert real.returncode == 0, real.stderr
    assert "-lock" in (tmp_path / "calls").read_text()


def test_tk_that_cannot_open_the_display_gets_the_display_fix(tmp_path: Path) -> None:
    # Before the fix any Tk problem naming "tkinter" (also "_tkinter.TclError: couldn't connect to display")
    # told the worker to install Tk.
    rows = diagnose(
        configured(tmp_path),
        probes(tk=lambda: '_tkinter.TclError: couldn\'t connect to display ":5"', environ={}),
    )
    assert row(rows, "cover").fix_key == "doctor.fix.display"


def test_doctor_creates_the_state_dir_private(tmp_path: Path) -> None:
    import stat

    # Before the fix the doctor, when first to run, created the state directory with the umask's 0755.
    state = tmp_path / "state"
    diagnose(configured(tmp_path, state_dir=state, apply=False), probes())
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
