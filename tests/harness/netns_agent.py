"""Runs posture evaluation *inside* a network namespace (``ip netns exec NS python -m tests.harness.netns_agent``).

psutil and the routing table are per namespace, so the agent side of the network tests runs in the client
namespace like the real agent runs on the worker's PC.

    once POLICY.toml      print one JSON document: {"results": [{id, status, mode, detail}], "vpn": [...]}
    monitor POLICY.toml   run PostureMonitor with the real network watcher; print one JSON line per on_change:
                          {"t": time.monotonic(), "block": bool, "message": key, "checks": {id: status}}
                          and one per VPN event {"t": ..., "event": "vpn.up"|"vpn.down", "interface": ...}
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from pathlib import Path

from agent.decide.enforcement import EnforcementState
from agent.platform import create_posture_host
from agent.posture.base import CheckResult
from agent.posture.monitor import PostureMonitor
from agent.posture.suite import evaluate
from agent.report.stream import EventStream, Kind
from core.clock import SystemClock
from policy.load import load_policy


def emit(doc: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()


def main(argv: list[str]) -> int:
    command, path = argv[0], Path(argv[1])
    policy = load_policy(path.read_bytes(), str(path))
    if command == "once":
        ev = evaluate(
            policy,
            create_posture_host(),
            groups=argv[2].split(",") if len(argv) > 2 else ("network", "probes"),
        )
        results = [r.to_json("en") for rs in ev.results.values() for r in rs]
        emit({"results": results, "vpn": list(ev.vpn_interfaces or ())})
        return 0
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stream = EventStream()
    events = stream.subscribe()

    def on_change(state: EnforcementState, results: list[CheckResult]) -> None:
        emit(
            {
                "t": time.monotonic(),
                "block": state.block,
                "message": state.message_key,
                "checks": {r.id: r.status for r in results},
            }
        )

    monitor = PostureMonitor(policy, SystemClock(), on_change, stream)
    monitor.start()
    while not stop.is_set():
        try:
            event = events.get(timeout=0.2)
        except Exception:
            continue
        if event.kind in (Kind.VPN_UP, Kind.VPN_DOWN):
            emit({"t": time.monotonic(), "event": str(event.kind), "interface": event.data["interface"]})
    monitor.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
