"""Every `mamori agent …` command, registered in one place (SPEC.md, "Command line").

- run.py      ``run`` (hands agent.toml to the composition root, agent/app.py), ``status``, ``step-away``
- check.py    ``check``: every posture check once, exit 0 / 1 / 2
- enroll.py   ``enroll``: exchange an enrollment secret for device credentials
- doctor.py   ``doctor``: what works on this PC, and how to fix what does not
- apps.py     ``apps``: the open windows, the rule that covers each and why the others do not

Each module imports heavy libraries inside its functions so that ``mamori --help`` stays fast.
"""

from __future__ import annotations

from typing import Any

from agent.commands import apps, check, doctor, enroll, run


def register(subparsers: Any) -> None:
    for module in (run, check, enroll, doctor, apps):
        module.register(subparsers)
