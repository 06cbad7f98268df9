"""The device's enrollment with a server: device id + bearer token, kept in the state directory with mode 0600.

Written by ``mamori agent enroll``, read by the reporting service. The token is the device's only credential;
the server stores just its hash.
"""

from __future__ import annotations

import json
import logging
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.platform import OS_NAME
from core.errors import MamoriError

logger = logging.getLogger(__name__)

ENROLLMENT_FILE = "enrollment.json"


class EnrollmentError(MamoriError):
    """Enrollment failed or the stored enrollment cannot be used."""


@dataclass(frozen=True)
class Enrollment:
    server: str
    device_id: str
    token: str
    group: str = "default"

    def __repr__(self) -> str:  # never print the token
        return f"Enrollment(server={self.server!r}, device_id={self.device_id!r}, group={self.group!r})"


def enrollment_path(state_dir: Path) -> Path:
    """This user's enrollment if there is one, else the PC's machine-wide one (the installers enroll each PC
    once, agent.config.machine_state_dir), else where ``mamori agent enroll`` writes a new one."""
    own = state_dir / ENROLLMENT_FILE
    if own.exists():
        return own
    from agent.config import machine_state_dir

    machine = machine_state_dir() / ENROLLMENT_FILE
    return machine if machine.exists() else own


def load_enrollment(state_dir: Path) -> Enrollment | None:
    path = enrollment_path(state_dir)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return Enrollment(
            str(doc["server"]), str(doc["device_id"]), str(doc["token"]), str(doc.get("group", "default"))
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise EnrollmentError(
            f"{path}: enrollment file is damaged ({type(err).__name__}); run `mamori agent enroll` again"
        ) from err


def save_enrollment(state_dir: Path, enrollment: Enrollment) -> Path:
    from policy.store import atomic_write

    path = state_dir / ENROLLMENT_FILE  # never the machine-wide one: that is the installer's
    doc = {
        "server": enrollment.server,
        "device_id": enrollment.device_id,
        "token": enrollment.token,
        "group": enrollment.group,
    }
    atomic_write(path, json.dumps(doc, indent=2).encode("utf-8"), mode=0o600)
    return path


class EnrollmentWatch:
    """The stored enrollment, re-read only when its file changes (``mamori agent enroll`` while running)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self._enrollment: Enrollment | None = None
        self._mtime: float | None = None

    def current(self) -> tuple[Enrollment | None, bool]:
        """(the enrollment or None, whether the file changed since the last call)."""
        try:
            mtime = enrollment_path(self.state_dir).stat().st_mtime
        except OSError:
            self._enrollment, self._mtime = None, None
            return None, False
        if mtime == self._mtime:
            return self._enrollment, False
        try:
            self._enrollment = load_enrollment(self.state_dir)
        except EnrollmentError as err:
            logger.warning("%s", err)
            self._enrollment = None
        self._mtime = mtime
        return self._enrollment, True


def enroll(
    server: str,
    secret: str,
    state_dir: Path,
    ca: Path | None = None,
    timeout: float = 30.0,
    *,
    insecure_http: bool = False,
) -> Enrollment:
    """POST /v1/enroll and store the device id + token. Raises EnrollmentError with an actionable message.

    ``http://`` is refused unless ``insecure_http`` (a lab): the token and every event would cross the network
    in clear text. TLS trusts ``ca`` (agent.toml's server_ca) or the OS store, never the environment's CA
    variables (agent/report/transport.py).
    """
    import requests

    from agent.report import transport

    if server.startswith("http://") and not insecure_http:
        raise EnrollmentError(
            f"{server}: plain http:// would send the device token and every event unencrypted; use the "
            "server's https:// URL, or pass --insecure-http for a lab"
        )
    if not server.startswith(("https://", "http://")):
        raise EnrollmentError(
            f"{server}: the server must be an https:// URL, e.g. https://mamori.example.com"
        )
    url = server.rstrip("/") + "/v1/enroll"
    body = {"secret": secret, "hostname": socket.gethostname()[:255], "os": OS_NAME}
    try:
        with transport.http_session(ca) as session:
            response = session.post(url, json=body, timeout=timeout)
    except requests.exceptions.SSLError as err:
        advice = transport.tls_advice(transport.tls_problem(err), ca)
        raise EnrollmentError(f"{url}: {advice}") from err
    except requests.RequestException as err:
        raise EnrollmentError(
            f"{url}: cannot reach the server ({type(err).__name__}); check the URL and network"
        ) from err
    if response.status_code in (401, 403):
        # The server's detail may carry its own advice ("...; ask IT for a new one"): say the cause once,
        # with one fix.
        detail = _detail(response).split(";", 1)[0].strip()
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
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    save_enrollment(state_dir, enrollment)
    return enrollment


def _detail(response: Any) -> str:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    return str(detail)[:200] if detail else f"HTTP {response.status_code}"
