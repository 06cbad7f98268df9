"""Memory and idle CPU of the full agent (SPEC.md, "Performance targets").

    .venv/bin/python -m benchmarks.agent_resources [--seconds 600] [--warmup 60] [--windows 20] [--no-browser]

Starts Xvfb + openbox + trayer, opens ``--windows`` Tk windows (4 customer-data ledgers, one "chrome" window so
the share guard has a browser to watch — its costliest case — and the rest ordinary apps), then
``mamori agent run`` with tray, cover helper, posture monitor, share guard, policy drop watcher and reporting
(enrolled with a stub server on loopback). The worker is at the PC: presence stays "active" (the policy's
thresholds are longer than the run), nothing is covered, no check blocks.

After ``--warmup`` seconds it measures for ``--seconds``: CPU of the agent process (user + system, from
/proc/PID/stat) and of the processes it started and reaped (posture probes), the cover helper's CPU, and RSS
sampled every 5 s; and the events the agent recorded, by kind (``events_by_kind``: a hot minute with a
``share.started`` in it comes from another process on the machine that looked like a share). Prints one JSON
document. Exits non-zero only when the lab cannot be set up.
"""

from __future__ import annotations

import argparse
import collections
import json
import sqlite3
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


CONFIGS: dict[str, dict[str, bool]] = {
    # what a worker's login starts: enrolled with a server, tray icon
    "enrolled+tray": {"enrolled": True, "tray": True},
    "enrolled-no-tray": {"enrolled": True, "tray": False},
    # an MDM-drop-only deployment: no server in agent.toml, no enrollment
    "drop-only+tray": {"enrolled": False, "tray": True},
    "drop-only-no-tray": {"enrolled": False, "tray": False},
}


def event_kinds(lab: AgentLab) -> dict[str, int]:
    """The events the agent recorded, by kind: uploaded to the stub server, else still in its outbox. A hot
    minute with ``share.started`` in it is another process on the machine that the share guard took for a
    share (it covers, and the presence loop then ticks ten times a second), not idle work."""
    kinds: collections.Counter[str] = collections.Counter(
        str(e.get("metadata", {}).get("event_code", "?")) for e in lab.server.events
    )
    outbox = lab.state_dir / "outbox.sqlite3"
    if outbox.exists():
        with sqlite3.connect(f"file:{outbox}?mode=ro", uri=True) as db:
            kinds.update(
                {kind: n for kind, n in db.execute("SELECT kind, COUNT(*) FROM events GROUP BY kind")}
            )
    return dict(sorted(kinds.items()))


def measure(labs: dict[str, AgentLab], seconds: float, interval: float = 5.0) -> dict[str, Any]:
    """Every lab's agent and cover helper, sampled together every ``interval`` s for ``seconds``."""
    pids = {name: (lab.agent_pid, lab.helper_pid()) for name, lab in labs.items()}
    rss: dict[str, list[float]] = {name: [] for name in labs}
    uss: dict[str, list[float]] = {name: [] for name in labs}
    helper_rss: dict[str, list[float]] = {name: [] for name in labs}
    cpu_trace: dict[str, list[tuple[float, float]]] = {name: [] for name in labs}
    last: dict[str, dict[str, int]] = {}
    start_cpu = {name: cpu_seconds(pid) for name, (pid, _) in pids.items()}
    start_helper = {name: cpu_seconds(helper)[0] for name, (_, helper) in pids.items() if helper}
    t0 = time.monotonic()

    def sample_loop() -> None:
        while time.monotonic() - t0 < seconds:
            time.sleep(min(interval, max(0.0, seconds - (time.monotonic() - t0))))
            now = time.monotonic() - t0
            for name, (pid, helper) in pids.items():
                mem = memory_kb(pid)
                last[name] = mem
                rss[name].append(mem["VmRSS"] / 1024)
                if "USS" in mem:
                    uss[name].append(mem["USS"] / 1024)
                cpu_trace[name].append((now, cpu_seconds(pid)[0]))
                if helper:
                    helper_rss[name].append(memory_kb(helper)["VmRSS"] / 1024)

    busy = busy_cpu_fraction(seconds, sample_loop)
    elapsed = time.monotonic() - t0
    out: dict[str, Any] = {
        "seconds": round(elapsed, 1),
        "machine_busy_percent_of_all_cores": round(100 * busy, 1),
    }
    for name, (pid, helper) in pids.items():
        own1, children1 = cpu_seconds(pid)
        own0, children0 = start_cpu[name]
        if labs[name].helper_pid() != helper:
            raise RuntimeError(f"{name}: the cover helper restarted during the measurement")
        # CPU in one-minute slices (or the whole window when shorter), for min/median/max.
        slices: list[float] = []
        trace = [(0.0, own0), *cpu_trace[name]]
        width = min(60.0, elapsed)
        begin = trace[0]
        for point in trace[1:]:
            if point[0] - begin[0] >= width - 0.5:
                slices.append(100 * (point[1] - begin[1]) / (point[0] - begin[0]))
                begin = point
        out[name] = {
            "agent_pid": pid,
            "agent_cpu_percent": round(100 * (own1 - own0) / elapsed, 3),
            "agent_cpu_percent_per_minute": summary(slices, 3),
            "agent_children_cpu_percent": round(100 * (children1 - children0) / elapsed, 3),
            "agent_rss_mb": summary(rss[name]),
            "agent_uss_mb": summary(uss[name]),
            "agent_last": {k: round(v / 1024, 1) for k, v in last[name].items()},
            "helper_cpu_percent": round(100 * (cpu_seconds(helper)[0] - start_helper[name]) / elapsed, 3)
            if helper
            else None,
            "helper_rss_mb": summary(helper_rss[name]),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="measurement window (default 600)")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds after start-up before measuring")
    parser.add_argument("--windows", type=int, default=20)
    parser.add_argument(
        "--no-browser", action="store_true", help="no browser window (share guard's cheap case)"
    )
    parser.add_argument(
        "--configs",
        default="enrolled+tray",
        help=f"comma-separated, run side by side on one desktop: {', '.join(CONFIGS)} (or 'all')",
    )
    args = parser.parse_args(argv)
    names = list(CONFIGS) if args.configs == "all" else [c.strip() for c in args.configs.split(",")]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        parser.error(f"unknown configuration(s): {unknown}")
    before = machine()
    started: dict[str, float] = {}
    with XDesktop.start(tray=True) as desk:
        # The worker is at the PC: the X screensaver (Xvfb's default: on after 10 min without input) would
        # count as "locked", i.e. away, and the agent would cover windows during the measurement.
        subprocess.run(["xset", "s", "off"], env=desk.env, check=True, capture_output=True)
        subprocess.run(
            ["xset", "-dpms"], env=desk.env, check=False, capture_output=True
        )  # Xvfb may lack DPMS
        open_windows(desk, args.windows, browser=not args.no_browser)
        labs: dict[str, AgentLab] = {}
        try:
            for name in names:
                labs[name] = AgentLab.create(desk, POLICY, **CONFIGS[name])
            for name, lab in labs.items():
                t0 = time.monotonic()
                lab.start()
                lab.wait_ready(version=1)
                # start to "protected": the policy applied and the cover helper running (status answers)
                started[name] = round(time.monotonic() - t0, 2)
            time.sleep(args.warmup)
            result = measure(labs, args.seconds)
            for name, lab in labs.items():
                status = lab.status()
                if status["presence"]["stage"] != "active" or status["covered"]["count"]:
                    raise RuntimeError(
                        f"{name}: the agent left the idle state during the run: cover reasons "
                        f"{status.get('cover_reasons')}, covered {status['covered']}, "
                        f"share {status.get('share')}, presence {status['presence']}"
                    )
                result[name].update(
                    stage=status["presence"]["stage"],
                    covered=status["covered"]["count"],
                    degraded=status.get("degraded", []),
                    events_uploaded=len(lab.server.events),
                    events_by_kind=event_kinds(lab),
                    start_to_protected_s=started[name],
                )
        finally:
            for lab in labs.values():
                lab.stop()
    print(
        json.dumps(
            {
                "benchmark": "agent_resources",
                "machine_before": before,
                "machine_after": machine(),
                "windows": args.windows,
                "configs": names,
                **result,
            },
            indent=2,
            ensure_ascii=False,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
