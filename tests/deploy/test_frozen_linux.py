"""The frozen one-folder Linux agent (installer/linux/mamori-agent.spec, PyInstaller), built once for the module:
it verifies and applies a signed policy, evaluates it with `agent check`, and under a real X server `agent run`
covers a customer window through its cover helper, started as `mamori --run-module agent.overlay.helper`
(agent/frozen.py). A module PyInstaller missed fails one of these, which is what proves the hidden-import list."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.policies import policy_keys, policy_toml, write_agent_config
from tests.harness.xdesktop import HarnessError, XDesktop, missing_tools, wait_for

pytestmark = [pytest.mark.apps, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "installer/linux/mamori-agent.spec"
PHONE = "03-1234-5678"
POLICY = """
schema = 1
id = "frozen-test"
version = 1

[presence]
warn_after = "50m"
protect_after = "1h"
lock_after = "2h"
hotkey = ""

[[customer_apps]]
name = "ledger"
processes = ["excel"]
title = "顧客台帳"
"""


@pytest.fixture(scope="module")
def frozen(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    pyinstaller = str(Path(sys.executable).with_name("pyinstaller"))
    if not Path(pyinstaller).exists():
        pytest.skip("pyinstaller is not installed (it is a dev dependency: make venv)")
    if missing := missing_tools(tray=False):
        pytest.skip(f"desktop tools not installed: {', '.join(missing)} (run .ci/run)")
    work = tmp_path_factory.mktemp("frozen")
    try:
        desk = XDesktop.start(
            tray=False, wm=False
        )  # pystray's and pynput's build hooks import them: X needed
    except HarnessError as err:
        pytest.skip(f"cannot start an X server for the build: {err}")
    try:
        argv = [pyinstaller, "--noconfirm", "--log-level", "WARN", "--distpath", str(work / "dist"),
                "--workpath", str(work / "build"), str(SPEC)]  # fmt: skip
        build = subprocess.run(
            argv,
            env=desk.env,
            cwd=work,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
    finally:
        desk.stop()
    assert build.returncode == 0, build.stderr[-3000:]
    exe = work / "dist/mamori/mamori"
    assert exe.is_file()
    yield exe


def _run(exe: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=60, env=env, check=False)


def test_the_frozen_agent_verifies_applies_and_checks_a_signed_policy(frozen: Path, tmp_path: Path) -> None:
    assert _run(frozen, "--version").stdout.startswith("mamori ")
    keys = policy_keys(tmp_path / "keys")
    bundle = tmp_path / "policy.dsse.json"
    bundle.write_bytes(keys.sign(policy_toml(policy_id="acme", version=4)))
    verified = _run(frozen, "policy", "verify", str(bundle), "--pub", str(keys.public_path))
    assert verified.returncode == 0 and "id acme version 4" in verified.stdout, verified.stderr
    state = tmp_path / "state"
    applied = _run(
        frozen, "policy", "apply", str(bundle), "--pub", str(keys.public_path), "--state-dir", str(state)
    )
    assert applied.returncode == 0, applied.stderr
    config = write_agent_config(tmp_path, state_dir=state, trusted_keys=[keys.public_path], tray=False)
    check = _run(frozen, "agent", "check", "--json", "--config", str(config))
    assert check.returncode == 0, check.stderr
    assert json.loads(check.stdout)["compliant"] is True
    # the server and the package builder are not in this build: their groups say nothing, they do not crash
    assert _run(frozen, "server", "--help").returncode == 0
    refused = _run(frozen, "--run-module", "os")
    assert refused.returncode != 0 and "agent's own helper modules" in refused.stderr


def test_the_frozen_agent_covers_a_customer_window_through_its_helper(
    frozen: Path, xdesktop: XDesktop, tmp_path: Path
) -> None:
    win = xdesktop.open_window("顧客台帳 - Excel", text=PHONE, process="excel", x=40, y=150)
    config = write_agent_config(tmp_path, state_dir=tmp_path / "state", tray=False, lock_command=["true"])
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    env = {**xdesktop.env, "MAMORI_DESKTOP_BACKEND": "x11"}
    argv = [
        str(frozen),
        "agent",
        "run",
        "--config",
        str(config),
        "--no-tray",
        "--unsigned-policy",
        str(policy),
    ]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:

        def status() -> dict[str, object] | None:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            result = _run(frozen, "agent", "status", "--config", str(config), "--json", env=env)
            return json.loads(result.stdout) if result.returncode == 0 else None

        first = wait_for(status, timeout=20, interval=0.3, what="frozen agent status")
        assert first["presence"]["stage"] == "active"  # type: ignore[index]
        assert xdesktop.can_read(PHONE, win.rect())
        assert _run(frozen, "agent", "step-away", "--config", str(config), env=env).returncode == 0
        covered = wait_for(
            lambda: (s := status()) and s["covered"]["count"] == 1 and s, timeout=10, what="covered"
        )
        assert covered["covered"]["rules"] == ["ledger"]  # type: ignore[index]
        wait_for(lambda: not xdesktop.can_read(PHONE, win.rect()), timeout=5, what="number hidden")
        helper = int(covered["overlay"]["pid"])  # type: ignore[index]
        cmdline = Path(f"/proc/{helper}/cmdline").read_bytes().split(b"\0")
        assert cmdline[:3] == [str(frozen).encode(), b"--run-module", b"agent.overlay.helper"], cmdline
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
