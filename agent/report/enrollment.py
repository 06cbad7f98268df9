"""The device's enrollment with a server: device id + bearer token, kept in the state directory with mode 0600.

Written by ``mamori agent enroll``, read by the reporting service. The token is the device's only credential;
the server stores just its hash.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from core.errors import MamoriError

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
    return state_dir / ENROLLMENT_FILE


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

    path = enrollment_path(state_dir)
    doc = {
        "server": enrollment.server,
        "device_id": enrollment.device_id,
        "token": enrollment.token,
        "group": enrollment.group,
    }
    atomic_write(path, json.dumps(doc, indent=2).encode("utf-8"), mode=0o600)
    return path
