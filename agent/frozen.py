"""How the agent starts its own helper processes (the cover helper, the onlooker guard), frozen or not:
their command line, their environment and their pipes.

From a Python install a helper is ``python -m <module>``. A frozen build (PyInstaller: installer/linux and
installer/windows ``mamori-agent.spec``) has no interpreter and no ``-m``: its executable is the launcher
installer/frozen/launch.py, which runs ``--run-module <module>`` for modules of the agent only.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

RUN_MODULE = "--run-module"
PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # where `agent` lives, for a helper's PYTHONPATH


def is_frozen() -> bool:
    return bool(getattr(sys, "frozen", False))


def module_command(module: str, python: str | None = None) -> list[str]:
    """The command line that runs ``module`` as a helper process of this agent."""
    if is_frozen():
        return [sys.executable, RUN_MODULE, module]
    return [python or sys.executable, "-m", module]


def helper_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The helper's environment: ``env`` (default: this process's) with the agent's packages on PYTHONPATH."""
    base = dict(os.environ if env is None else env)
    path = base.get("PYTHONPATH")
    base["PYTHONPATH"] = str(PACKAGE_ROOT) + (os.pathsep + path if path else "")
    return base


def start_helper(argv: Sequence[str], env: Mapping[str, str]) -> subprocess.Popen[str]:
    """Start a helper that speaks one JSON message per line on stdin/stdout (UTF-8, line-buffered); its stderr
    is piped for the agent's log. Raises OSError when it cannot start."""
    return subprocess.Popen(
        list(argv),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env),
        text=True,
        encoding="utf-8",
        bufsize=1,
    )
