"""Memory and idle CPU of the full agent (SPEC.md, "Performance targets").

    .venv/bin/python -m benchmarks.agent_resources [--seconds 600] [--warmup 60] [--windows 20] [--no-browser]

Starts Xvfb + openbox + trayer, opens ``--windows`` Tk windows (4 customer-data ledgers, one "chrome" window so
the share guard has a browser to watch — its costliest case — and the rest ordinary apps), then
``mamori agent run`` with tray, cover helper, posture monitor, share guard, policy drop watcher and reporting
(enrolled with a stub server on loopback). The worker is at the PC: presence stays "active" (the policy's
thresholds are longer than the run), nothing is covered, no check blocks.

After ``--warmup`` seconds it measures for ``--seconds``: CPU of the agent process (user + system, from
/proc/PID/stat) and of the processes it started and reaped (posture probes), the cover helper's CPU, and RSS
sampled every 5 s. Prints one JSON document. Exits non-zero only when the lab cannot be set up.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from typing import Any

from benchmarks.agent_lab import AgentLab, busy_cpu_fraction, cpu_seconds, machine, memory_kb, summary
from tests.harness.xdesktop import XDesktop

POLICY = """
schema = 1
id = "bench-resources"
version = 1

[presence]
warn_after = "4h"
protect_after = "5h"
lock_after = "6h"
cover = "blur"
reveal = "activity"
lock_before_sleep = true
inhibit_lock_when = ["fullscreen", "call"]
hotkey = "<ctrl>+<alt>+m"

[[customer_apps]]
name = "Salesforce"
processes = ["chrome", "msedge", "firefox"]
title = "Salesforce|Lightning Experience"

[[customer_apps]]
name = "ledger"
processes = ["excel", "soffice*", "scalc"]
title = "顧客台帳|顧客名簿|customer list"

[screen_share]
protect = true

[network.vpn]
mode = "report"
interfaces = ["tun*", "tap*", "wg*", "ppp*"]
routes = ["10.0.0.0/8"]

[network.wifi]
untrusted = "require_vpn"
mode = "warn"

[network.plaintext]
forbidden_ports = [21, 23, 80, 110, 143]
mode = "warn"

[device.disk_encryption]
mode = "warn"
[device.firewall]
mode = "warn"
[device.screen_lock]
mode = "warn"
max_timeout = "15m"

[enforcement]
grace = "10m"
on_check_error = "allow"
recheck = "1m"

[reporting]
heartbeat = "5m"
window_titles = "none"

[acknowledgement]
required = false
"""

OTHER_APPS = ("notes", "term", "mail", "files", "calc", "chat", "music", "viewer")


def open_windows(desk: XDesktop, count: int, browser: bool) -> None:
    for i in range(count):
        x, y = 20 + (i % 5) * 150, 40 + (i // 5) * 140
        if i < 4:
            desk.open_window(f"顧客台帳 {i + 1} - Excel", process="excel", x=x, y=y, width=400, height=120)
        elif i == 4 and browser:
            desk.open_window("Inbox - Google Chrome", process="chrome", x=x, y=y, width=400, height=120)
        else:
            app = OTHER_APPS[i % len(OTHER_APPS)]
            desk.open_window(f"{app} {i}", process=app, x=x, y=y, width=400, height=120)


def measure(lab: AgentLab, seconds: float, interval: float = 5.0) -> dict[str, Any]:
    pid = lab.agent_pid
    helper = lab.helper_pid()
    assert helper is not None
    rss: list[float] = []
    helper_rss: list[float] = []
    samples: list[dict[str, int]] = []
    own0, children0 = cpu_seconds(pid)
    helper0, _ = cpu_seconds(helper)
    t0 = time.monotonic()

    def sample_loop() -> None:
        while time.monotonic() - t0 < seconds:
            time.sleep(min(interval, max(0.0, seconds - (time.monotonic() - t0))))
            mem = memory_kb(pid)
            samples.append(mem)
            rss.append(mem["VmRSS"] / 1024)
            helper_rss.append(memory_kb(helper)["VmRSS"] / 1024)

    busy = busy_cpu_fraction(seconds, sample_loop)
    elapsed = time.monotonic() - t0
    own1, children1 = cpu_seconds(pid)
    helper1, _ = cpu_seconds(helper)
    if lab.helper_pid() != helper:
        raise RuntimeError("the cover helper restarted during the measurement")
    last = samples[-1]
    return {
        "seconds": round(elapsed, 1),
        "agent_pid": pid,
        "agent_cpu_percent": round(100 * (own1 - own0) / elapsed, 3),
        "agent_children_cpu_percent": round(100 * (children1 - children0) / elapsed, 3),
        "agent_rss_mb": summary(rss),
        "agent_last": {k: round(v / 1024, 1) for k, v in last.items()},
        "helper_cpu_percent": round(100 * (helper1 - helper0) / elapsed, 3),
        "helper_rss_mb": summary(helper_rss),
        "machine_busy_percent_of_all_cores": round(100 * busy, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="measurement window (default 600)")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds after start-up before measuring")
    parser.add_argument("--windows", type=int, default=20)
    parser.add_argument(
        "--no-browser", action="store_true", help="no browser window (share guard's cheap case)"
    )
    args = parser.parse_args()
    before = machine()
    with XDesktop.start(tray=True) as desk:
        # The worker is at the PC: the X screensaver (Xvfb's default: on after 10 min without input) would
        # count as "locked", i.e. away, and the agent would cover windows during the measurement.
        subprocess.run(["xset", "s", "off"], env=desk.env, check=True, capture_output=True)
        subprocess.run(
            ["xset", "-dpms"], env=desk.env, check=False, capture_output=True
        )  # Xvfb may lack DPMS
        open_windows(desk, args.windows, browser=not args.no_browser)
        lab = AgentLab.create(desk, POLICY)
        try:
            lab.start()
            status = lab.wait_ready(version=1)
            time.sleep(args.warmup)
            status = lab.status()
            result = measure(lab, args.seconds)
            status = lab.status()
            if status["presence"]["stage"] != "active" or status["covered"]["count"]:
                raise RuntimeError(f"the agent left the idle state during the run: {status['presence']}")
            result["stage"] = status["presence"]["stage"]
            result["covered"] = status["covered"]["count"]
            result["degraded"] = status.get("degraded", [])
            result["events_uploaded"] = len(lab.server.events)
        finally:
            lab.stop()
    print(
        json.dumps(
            {"machine_before": before, "machine_after": machine(), "windows": args.windows, **result},
            indent=2,
            ensure_ascii=False,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
