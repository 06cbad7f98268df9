"""Issue 5 done-when, end to end: a customer window under Xvfb is covered while the real OpenVPN tunnel is
down and revealed after it is back (OCR of the phone number on screen)."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.harness.netns import PYTHON, ROOT, VpnLab
from tests.harness.policies import write_policy
from tests.harness.xdesktop import XDesktop, wait_for

pytestmark = [pytest.mark.network, pytest.mark.desktop, pytest.mark.slow]

PHONE = "03-1234-5678"


def test_customer_window_covered_while_vpn_down_and_revealed_after(
    xdesktop: XDesktop,  # set up first, torn down last (after the agent process is stopped)
    lab: VpnLab,
    tmp_path: Path,
) -> None:
    window = xdesktop.open_window("顧客台帳 - CRM", text=PHONE, x=60, y=80)
    box = window.rect()
    assert xdesktop.can_read(PHONE, box)

    policy = write_policy(
        tmp_path / "policy.toml",
        policy_id="netns-test",
        presence={"warn_after": "59m", "protect_after": "1h", "lock_after": "2h"},
        customer_apps=[{"name": "crm", "processes": ["custapp"]}],
        vpn={"mode": "block", "interfaces": ["tun*"]},
        enforcement={"grace": "0s"},
    )
    agent = subprocess.Popen(
        lab.client.argv(
            "env",
            f"DISPLAY={xdesktop.display}",
            PYTHON,
            "-m",
            "tests.harness.netns_desktop_agent",
            str(policy),
        ),
        stdout=subprocess.PIPE,
        stderr=open(tmp_path / "agent.log", "wb"),  # noqa: SIM115 - lives as long as the process
        cwd=ROOT,
    )
    lab.client.procs.append(agent)
    lines: list[dict[str, Any]] = []

    def read() -> None:
        for raw in agent.stdout or []:
            lines.append(json.loads(raw))

    threading.Thread(target=read, daemon=True).start()

    wait_for(
        lambda: any(line["vpn"] == "pass" for line in lines), timeout=30, what="the agent's first evaluation"
    )
    time.sleep(1.0)  # a few presence ticks: nothing must be covered while the VPN is up
    assert xdesktop.can_read(PHONE, box), "covered although the VPN is up"

    t0 = lab.disconnect()
    wait_for(
        lambda: not xdesktop.can_read(PHONE, box), timeout=10, interval=0.1, what="the window to be covered"
    )
    covered_after = time.monotonic() - t0
    # the cover tells the worker how to fix it (the remediation message of the failing check)
    wait_for(
        lambda: "VPN" in xdesktop.ocr(box), timeout=10, interval=0.2, what="the remediation text on the cover"
    )
    block = next(line for line in lines if line["block"] is True)
    print(
        f"VPN down -> block decided {float(block['t']) - t0:.3f} s; -> cover seen by OCR {covered_after:.2f} s"
    )
    assert float(block["t"]) - t0 <= 2.0

    lab.connect()
    wait_for(
        lambda: xdesktop.can_read(PHONE, box), timeout=15, interval=0.2, what="the window to be revealed"
    )
