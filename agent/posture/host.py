"""Pick the posture backend once (STYLE.md: the pynput/pystray model).

``MAMORI_POSTURE_BACKEND`` (linux | windows | macos | unsupported) wins, else the running OS.
"""

from __future__ import annotations

import os
import sys

from agent.posture.base import HostProbe, Unsupported

ENV_BACKEND = "MAMORI_POSTURE_BACKEND"


def default_host() -> HostProbe:
    name = os.environ.get(ENV_BACKEND) or {"linux": "linux", "win32": "windows", "darwin": "macos"}.get(
        sys.platform, "unsupported"
    )
    if name == "linux":
        from agent.posture.linux import LinuxHost

        return LinuxHost()
    if name == "windows":
        from agent.posture.windows import WindowsHost

        return WindowsHost()
    if name == "macos":
        from agent.posture.macos import MacHost

        return MacHost()
    return Unsupported(reason=f"no posture backend for {name or sys.platform}")
