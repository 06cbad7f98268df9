"""Issue 11: X errors from vanished windows never end the agent. 50 windows a second are created, moved,
retitled and destroyed (half of them from another X connection, like ``xdotool windowclose``) for 60 s while the
real protection loop, share guard and cover helper run; afterwards nothing crashed or restarted and every
customer window is covered.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
from pathlib import Path

import pytest

from agent.platform.linux_x11 import X11Desktop
from agent.share.guard import install_share_guard
from core.clock import SystemClock
from policy.load import load_policy
from tests.harness.realapps import ProtectedDesktop
from tests.harness.xdesktop import XDesktop, wait_for

pytestmark = [pytest.mark.desktop]

CHURN = Path(__file__).resolve().parents[2] / "harness" / "churn.py"
SECONDS = float(os.environ.get("MAMORI_CHURN_SECONDS", "60"))
RATE = 50
PHONE = "03-1234-5678"

POLICY = """
schema = 1
id = "churn-test"
version = 1

[presence]
warn_after = "1h"
protect_after = "2h"
lock_after = "3h"
cover = "opaque"
hotkey = ""

[screen_share]
protect = true

[[customer_apps]]
name = "ledger"
processes = ["excel"]
title = "顧客台帳"
"""


def test_window_churn_never_ends_the_agent_and_customer_windows_stay_covered(
    xdesktop: XDesktop, tmp_path: Path
) -> None:
    ledger = xdesktop.open_window("顧客台帳 - 山田 太郎", text=PHONE, process="excel", x=40, y=560)
    agent = ProtectedDesktop(xdesktop, tmp_path, load_policy(POLICY.encode(), "policy.toml"))
    share_desktop = X11Desktop(xdesktop.display, lock_command=["true"])
    install_share_guard(agent.runtime, share_desktop, agent.stream, SystemClock())
    agent.start()
    try:
        agent.runtime.protection.step_away()
        agent.wait_covered(1)
        # The churn process is named "excel" too: its windows are customer windows, covered as they come and go.
        exe = xdesktop.workdir / "bin" / "excel"
        churn = subprocess.run(
            [str(exe), str(CHURN), str(SECONDS), str(RATE)],
            # The symlink runs the base interpreter: give it this environment's python-xlib.
            env={**xdesktop.env, "PYTHONPATH": os.pathsep.join(site.getsitepackages())},
            capture_output=True,
            text=True,
            timeout=SECONDS + 60,
            check=False,
        )
        assert churn.returncode == 0, churn.stderr
        made = int(churn.stdout.split()[-1])
        assert made >= RATE * SECONDS * 0.8, f"only {made} windows were churned"
        status = agent.runtime.status()
        assert status["restarts"] == {}, f"a worker crashed: {status['restarts']}"
        assert agent.overlay.restarts == 0
        wait_for(lambda: agent.covered() == 1, timeout=10, what="only the ledger covered once the churn ends")
        assert agent.overlay.wait_applied(5)
        assert not xdesktop.can_read(PHONE, ledger.rect()), "the customer window is readable after the churn"
        assert agent.runtime.status()["cover_state"]["state"] == "covered"
        assert agent.runtime.status()["restarts"] == {}
    finally:
        agent.stop()
        share_desktop.close()
    print(f"churned {made} windows in {SECONDS:.0f}s", file=sys.stderr)
