"""The posture probe of this OS: chosen by :mod:`agent.platform` (``resolve_platform().create_posture_host()``).

Kept as the name agent/posture/monitor.py imports until it is handed the resolved Platform's probe.
"""

from __future__ import annotations

from agent.platform import ENV_POSTURE as ENV_BACKEND
from agent.platform import create_posture_host as default_host

__all__ = ["ENV_BACKEND", "default_host"]
