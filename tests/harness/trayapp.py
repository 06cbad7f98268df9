"""The real Tray driven by files, for desktop tests (run as its own process on the test X display).

    python tests/harness/trayapp.py --status status.json --out out.jsonl --lang ja [--policy p.toml] [--show-ack]

- status.json is re-read on every refresh: the test changes the tray's state by rewriting it.
- every command the tray sends is appended to out.jsonl as {"command": ...}; "acknowledge ID VERSION" goes
  through the real AckFlow and the published event is appended as {"event": kind, "data": {...}}.
- SIGTERM stops the tray cleanly.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from agent.i18n import Translator
from agent.report.stream import EventStream
from agent.ui.ack import AckFlow, AckStore
from agent.ui.tray import Tray
from core.clock import SystemClock
from policy.load import load_policy
from policy.model import Policy


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--status", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--lang", default="en")
    parser.add_argument("--policy", type=Path)
    parser.add_argument("--state-dir", type=Path)
    parser.add_argument("--show-ack", action="store_true")
    parser.add_argument("--report-config", type=Path, help="agent.toml: send events to its server for real")
    parser.add_argument(
        "--runtime", action="store_true", help="drive the real agent runtime (X11 + cover helper)"
    )
    args = parser.parse_args()
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # the test dumps our stacks when we hang
    logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(name)s: %(message)s")

    lock = threading.Lock()

    def write(record: dict[str, Any]) -> None:
        with lock, args.out.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")

    def status() -> dict[str, Any]:
        try:
            data = json.loads(args.status.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    policy: Policy | None = load_policy(args.policy.read_bytes()) if args.policy else None
    stream = EventStream()
    events = stream.subscribe()
    t = Translator(args.lang)
    state_dir = args.state_dir or args.out.parent / "state"

    def on_command(command: str) -> None:
        write({"command": command})
        parts = command.split()
        if parts[0] == "acknowledge" and flow is not None:
            flow.acknowledge(parts[1], int(parts[2]))
            while not events.empty():
                event = events.get_nowait()
                write({"event": event.kind.value, "data": dict(event.data)})

    runtime = None
    if args.runtime:
        # The real agent: X11 backend, cover helper process, presence loop; the tray reads runtime.status().
        from agent.app import build_agent
        from agent.config import AgentConfig

        config = AgentConfig(state_dir=state_dir, lock_command=("true",), language=args.lang, tray=True)
        runtime = build_agent(config, args.policy, hotkey=False).runtime
        runtime.start()
        status = runtime.status  # type: ignore[assignment]

    def dispatch(command: str) -> None:
        on_command(command)
        if runtime is not None and command == "step_away":
            runtime.step_away()

    tray = Tray(
        t,
        status,
        dispatch,
        reported_provider=lambda: [{"class_uid": 2003, "activity_id": 1, "message": "policy.acknowledged"}],
        policy_provider=lambda: policy,
        refresh_interval=0.2,
    )
    flow: AckFlow | None = None
    if policy is not None:
        flow = AckFlow(
            AckStore(state_dir),
            stream,
            SystemClock(),
            set_cover=lambda active: write({"cover_ack": active}),
            show_dialog=tray.show_ack_for if args.show_ack else None,
        )
        threading.Timer(0.5, flow.on_policy, args=(policy,)).start()
    service = None
    if args.report_config is not None:
        from agent.config import load_config
        from agent.report.service import ReportingService

        service = ReportingService(load_config(args.report_config), stream, SystemClock(), batch_delay=0.2)
        service.start()
    signal.signal(signal.SIGTERM, lambda *_: tray.stop())
    tray.run()
    if service is not None:
        service.flush(10)
        service.stop()
    if runtime is not None:
        runtime.stop()
    write({"stopped": True, "backend": tray.backend})
    return 0


if __name__ == "__main__":
    sys.exit(main())
