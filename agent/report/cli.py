"""`mamori agent enroll --server URL --secret S [--config FILE]` (SPEC.md, Command line)."""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path
from typing import Any

from agent.report.enrollment import Enrollment, EnrollmentError


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
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(func=run_enroll)


def enroll(
    server: str, secret: str, state_dir: Path, ca: Path | None = None, timeout: float = 30.0
) -> Enrollment:
    """POST /v1/enroll and store the device id + token. Raises EnrollmentError with an actionable message."""
    import requests

    if not server.startswith(("https://", "http://")):
        raise EnrollmentError(f"{server}: the server must be an https:// URL")
    url = server.rstrip("/") + "/v1/enroll"
    body = {"secret": secret, "hostname": socket.gethostname()[:255], "os": sys.platform}
    try:
        response = requests.post(url, json=body, timeout=timeout, verify=str(ca) if ca else True)
    except requests.exceptions.SSLError as err:
        raise EnrollmentError(
            f"{url}: TLS verification failed; set server_ca in agent.toml to the server's CA"
        ) from err
    except requests.RequestException as err:
        raise EnrollmentError(
            f"{url}: cannot reach the server ({type(err).__name__}); check the URL and network"
        ) from err
    if response.status_code in (401, 403):
        detail = _detail(response)
        raise EnrollmentError(
            f"enrollment refused: {detail}; ask IT for a new enrollment secret", exit_code=1
        )
    if response.status_code != 200:
        raise EnrollmentError(
            f"{url}: server answered HTTP {response.status_code}: {_detail(response)}", exit_code=1
        )
    try:
        doc = response.json()
        enrollment = Enrollment(
            server.rstrip("/"), str(doc["device_id"]), str(doc["token"]), str(doc.get("group", "default"))
        )
    except (ValueError, KeyError, TypeError) as err:
        raise EnrollmentError(
            f"{url}: unexpected answer from the server; is this a Mamori server?", exit_code=1
        ) from err
    from agent.report.enrollment import save_enrollment

    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    save_enrollment(state_dir, enrollment)
    return enrollment


def _detail(response: Any) -> str:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    return str(detail)[:200] if detail else f"HTTP {response.status_code}"


def run_enroll(args: argparse.Namespace) -> int:
    from agent.config import load_config

    config = load_config(args.config)
    enrollment = enroll(args.server, args.secret, config.state_dir, config.server_ca)
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
