"""`mamori agent enroll --server URL --secret S [--config FILE]` (SPEC.md, Command line)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from agent.report.enrollment import enroll


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "enroll",
        help="enroll this device with a Mamori server",
        description="Exchange an enrollment secret for a device id and token, stored in the state directory (0600).",
    )
    parser.add_argument("--server", required=True, help="server URL, e.g. https://mamori.example.com")
    parser.add_argument(
        "--secret", required=True, help="enrollment secret from `mamori server enroll-secret create`"
    )
    parser.add_argument("--config", type=Path, default=None, help="agent.toml (default: the installed one)")
    parser.add_argument(
        "--insecure-http",
        action="store_true",
        help="allow a plain http:// server (a lab only: the token and events cross the network unencrypted)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(func=run_enroll)


def run_enroll(args: argparse.Namespace) -> int:
    from agent.config import load_config

    config = load_config(args.config)
    enrollment = enroll(
        args.server, args.secret, config.state_dir, config.server_ca, insecure_http=args.insecure_http
    )
    if args.json:
        import json

        print(
            json.dumps(
                {"device_id": enrollment.device_id, "group": enrollment.group, "server": enrollment.server}
            )
        )
    else:
        path = config.state_dir / "enrollment.json"
        print(f"enrolled as device {enrollment.device_id} (group {enrollment.group}); credentials in {path}")
    if config.server and config.server.rstrip("/") != enrollment.server:
        print(
            f"note: agent.toml names server {config.server}; events go to {enrollment.server}",
            file=sys.stderr,
        )
    return 0
