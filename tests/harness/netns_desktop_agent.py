"""The agent's desktop side plus the posture monitor, inside the client namespace, on the test's X server.

``ip netns exec NS env DISPLAY=:N python -m tests.harness.netns_desktop_agent POLICY.toml`` runs Runtime (real X11
backend + cover helper process) and PostureMonitor wired the way the agent wires them:
``on_change -> runtime.set_cover_reason("posture", state.block, state.message_key)``. Prints one JSON line per
posture change: {"t": time.monotonic(), "block": bool, "vpn": status}.
"""

from __future__ import annotations

import json
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from agent.app import build_runtime
from agent.config import AgentConfig
from agent.decide.enforcement import EnforcementState
from agent.overlay.supervisor import OverlaySupervisor
from agent.platform import create_desktop
from agent.posture.base import CheckResult
from agent.posture.monitor import PostureMonitor
from agent.report.stream import EventStream
from core.clock import SystemClock
from policy.load import load_policy


def main(argv: list[str]) -> int:
    path = Path(argv[0])
    policy = load_policy(path.read_bytes(), str(path))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    clock = SystemClock()
    stream = EventStream()
    config = AgentConfig(
        state_dir=Path(tempfile.mkdtemp(prefix="mamori-netns-agent-")), tray=False, language="en"
    )
    runtime = build_runtime(config, policy, create_desktop(()), stream, clock, overlay=OverlaySupervisor())

    def on_change(state: EnforcementState, results: list[CheckResult]) -> None:
        runtime.set_cover_reason("posture", state.block, state.message_key)
        vpn = next((r.status for r in results if r.id == "vpn"), None)
        sys.stdout.write(json.dumps({"t": time.monotonic(), "block": state.block, "vpn": vpn}) + "\n")
        sys.stdout.flush()

    monitor = PostureMonitor(policy, clock, on_change, stream)
    runtime.start()
    monitor.start()
    stop.wait()
    monitor.stop()
    runtime.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
