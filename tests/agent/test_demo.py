"""`mamori demo` for real: keys, signed demo policy, server on SQLite, enrolled agent; the dashboard answers;
Ctrl-C stops everything. Run headless here (no DISPLAY), so the demo must say it runs posture + reporting only.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from agent.demo import demo_policy, free_port
from policy.load import load_policy
from tests.harness.xdesktop import XDesktop

ROOT = Path(__file__).resolve().parents[2]


def test_demo_policy_has_short_timers_and_no_blocking() -> None:
    text = demo_policy((ROOT / "policy" / "examples" / "standard.toml").read_text(encoding="utf-8"))
    policy = load_policy(text.encode())
    assert (policy.presence.warn_after, policy.presence.protect_after) == (20.0, 30.0)
    assert policy.network.vpn.mode == "warn"
    assert '"block"' not in "".join(line.split("#")[0] for line in text.splitlines() if "mode" in line)


def run_demo(env: dict[str, str], tmp_path: Path) -> str:
    """Start `mamori demo`, check the dashboard and the enrolled device, Ctrl-C it; return its whole output."""
    env = {
        **env,
        "MAMORI_DEMO_DIR": str(tmp_path / "demo"),
        "MAMORI_DEMO_PORT": str(free_port()),
        "PYTHONPATH": str(ROOT),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "demo"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    url = None
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip())
            if line.startswith("Dashboard: "):
                url = line.split(" ", 1)[1].strip()
            if line.startswith("Press Ctrl-C"):
                break
        out = "\n".join(lines)
        assert url is not None, out
        assert requests.get(url, timeout=10).status_code == 200  # the dashboard answers
        assert requests.get(url + "healthz", timeout=10).json()
        token = next(line.split(": ", 1)[1] for line in lines if line.startswith("Admin token"))
        devices = requests.get(
            url + "v1/admin/devices", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        assert devices.status_code == 200 and devices.json(), devices.text  # this machine enrolled
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, rest
    assert "stopped server" in rest
    with pytest.raises(requests.ConnectionError):
        requests.get(url, timeout=3)
    return out + "\n" + rest


@pytest.mark.slow
def test_demo_headless(tmp_path: Path) -> None:
    if not (ROOT / "policy" / "examples" / "standard.toml").exists():
        pytest.skip("policy/examples/standard.toml is not in this tree")
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    out = run_demo(env, tmp_path)
    assert "No display: the agent runs its posture checks and reporting only" in out


@pytest.mark.slow
def test_demo_on_a_desktop(xdesktop: XDesktop, tmp_path: Path) -> None:
    out = run_demo(dict(xdesktop.env), tmp_path)
    assert "[4/4] agent running: mamori agent run" in out, out
    assert "stay idle 30 s to see the cover" in out
    assert "stopped agent" in out


def test_a_bad_demo_port_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    from agent.cli import main

    # Before the fix: "internal error: ValueError: invalid literal for int()".
    monkeypatch.setenv("MAMORI_DEMO_PORT", "http")
    assert main(["demo"]) == 2  # MamoriError: a usage problem
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "MAMORI_DEMO_PORT='http' is not a TCP port" in err
