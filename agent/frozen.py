"""How the agent starts its own helper processes (the cover helper, the onlooker guard), frozen or not.

From a Python install a helper is ``python -m <module>``. A frozen build (PyInstaller: installer/linux and
installer/windows ``mamori-agent.spec``) has no interpreter and no ``-m``: its executable is the launcher
installer/frozen/launch.py, which runs ``--run-module <module>`` for modules of the agent only.
"""

from __future__ import annotations

import sys

RUN_MODULE = "--run-module"


def is_frozen() -> bool:
    return bool(getattr(sys, "frozen", False))


def module_command(module: str, python: str | None = None) -> list[str]:
    """The command line that runs ``module`` as a helper process of this agent."""
    if is_frozen():
        return [sys.executable, RUN_MODULE, module]
    return [python or sys.executable, "-m", module]
