"""`mamori agent run | status | step-away` (SPEC.md, "Command line").

``run`` builds the real objects (desktop backend, cover helper, runtime, control socket), attaches the
monitors (agent.assemble: policy drop, posture, screen share, reporting) and the worker's UI (agent.tray.wiring:
tray, notifications, acknowledgement), and blocks. ``status`` and ``step-away``
talk to the running agent over its control socket.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import MamoriError

logger = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    run = subparsers.add_parser("run", help="run the agent in the foreground (installers start it at login)")
    run.add_argument(
        "--config", type=Path, help="agent.toml (default: $MAMORI_CONFIG or the system location)"
    )
    run.add_argument("--no-tray", action="store_true", help="run without the tray icon")
    # Development and tests only: an unsigned policy TOML instead of the trusted store.
    run.add_argument("--unsigned-policy", type=Path, help=argparse.SUPPRESS)
    run.set_defaults(func=cmd_run)

    status = subparsers.add_parser("status", help="state of the running agent")
    status.add_argument("--config", type=Path)
    status.add_argument("--json", action="store_true", help="print one JSON document")
    status.set_defaults(func=cmd_status)

    step = subparsers.add_parser("step-away", help="ask the running agent to protect now")
    step.add_argument("--config", type=Path)
    step.set_defaults(func=cmd_step_away)


@dataclass
class Agent:
    """The running pieces, for callers that attach more (tray, monitors, reporting)."""

    runtime: Any
    control: Any
    stream: Any


def policy_provider(config: Any, unsigned: Path | None = None) -> Any:
    """The policy source: an unsigned TOML file (development), else the trusted store in state_dir."""
    from policy.load import load_policy

    if unsigned is not None:
        data = unsigned.read_bytes()
        fixed = load_policy(data, str(unsigned))
        logger.warning("using an UNSIGNED policy file (development only): %s", unsigned)
        return lambda: fixed

    from policy.keys import load_trusted_keys
    from policy.store import TrustedStore

    store = TrustedStore(config.state_dir)
    cache: dict[str, Any] = {}

    def current() -> Any:
        # The signature is checked again on every read, against today's trusted_keys: trusted.json lives in the
        # worker's own state directory, and a hand-edited file must never become the policy in force
        # (docs/policy-signing.md, "The trusted store"). A failure raises; the runtime keeps its last good policy.
        verified = store.current(load_trusted_keys(config.trusted_keys))
        if verified is None:
            return None
        key = (verified.policy.id, verified.policy.version)
        if cache.get("key") != key:
            cache["key"] = key
            cache["policy"] = verified.policy
        return cache["policy"]

    return current


def build_agent(config: Any, unsigned_policy: Path | None = None, hotkey: bool = True) -> Agent:
    from core.clock import SystemClock
    from agent.control import ControlServer
    from agent.overlay.supervisor import OverlaySupervisor
    from agent.platform import create_desktop
    from agent.report.stream import EventStream
    from agent.runtime import Runtime

    desktop = create_desktop(config.lock_command)
    stream = EventStream()
    holder: dict[str, Runtime] = {}

    def clicked(key: str) -> None:
        holder["rt"].reveal(key)

    def failed(reason: str) -> None:
        holder["rt"].overlay_failed(reason)

    overlay = OverlaySupervisor(on_click=clicked, on_failure=failed)
    runtime = Runtime(
        config,
        policy_provider(config, unsigned_policy),
        desktop,
        stream,
        SystemClock(),
        overlay=overlay,
        hotkey=hotkey,
    )
    holder["rt"] = runtime
    control = ControlServer(config.control_socket, runtime.handle_control)
    return Agent(runtime, control, stream)


def cmd_run(args: argparse.Namespace) -> int:
    from agent.assemble import attach_monitors
    from agent.config import load_config
    from agent.tray.wiring import attach_ui, run_ui

    config = load_config(args.config)
    agent = build_agent(config, args.unsigned_policy)
    runtime = agent.runtime
    attached = attach_monitors(runtime, agent.stream, config, runtime.clock)
    ui = attach_ui(runtime, agent.stream, config, reporting=attached.reporting, tray=not args.no_tray)
    agent.control.start()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda _s, _f: runtime.stop())
    if attached.reporting is not None:
        attached.reporting.start()
    try:
        runtime.start()
        run_ui(ui, runtime)
    finally:
        runtime.stop()
        agent.control.stop()
        if attached.reporting is not None:
            attached.reporting.stop()
    return 0


def _ask(args: argparse.Namespace, message: dict[str, Any]) -> dict[str, Any]:
    from agent.config import load_config
    from agent.control import request

    config = load_config(args.config)
    reply = request(config.control_socket, message)
    if not reply.get("ok"):
        raise MamoriError(f"the agent refused: {reply.get('error', 'unknown error')}")
    return reply


def cmd_status(args: argparse.Namespace) -> int:
    status = _ask(args, {"cmd": "status"})["status"]
    if args.json:
        json.dump(status, sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
        return 0
    presence = status.get("presence", {})
    covered = status.get("covered", {})
    print(f"stage: {presence.get('stage')}")
    print(f"cover reasons: {', '.join(status.get('cover_reasons', [])) or 'none'}")
    print(f"covered: {covered.get('count', 0)} window(s) ({', '.join(covered.get('rules', [])) or '-'})")
    degraded = status.get("degraded") or []
    if degraded:
        print(f"degraded: {', '.join(degraded)}")
    return 0


def cmd_step_away(args: argparse.Namespace) -> int:
    _ask(args, {"cmd": "step_away"})
    return 0
