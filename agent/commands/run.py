"""`mamori agent run | status | step-away` (SPEC.md, "Command line").

``run`` hands agent.toml to the composition root (agent/app.py), which builds and runs every part.
``status`` and ``step-away`` talk to the running agent over its control socket.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
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


def cmd_run(args: argparse.Namespace) -> int:
    from agent.app import build_agent, run_agent
    from agent.config import load_config
    from agent.runtime_memory import limit_arenas

    limit_arenas()  # before any thread starts: the agent's threads share two malloc arenas

    config = load_config(args.config)
    if args.no_tray:  # the whole agent knows (macOS: no tray, no main run loop, no lock before sleep)
        config = dataclasses.replace(config, tray=False)
    return run_agent(build_agent(config, args.unsigned_policy), tray=config.tray)


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
