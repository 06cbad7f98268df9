"""Entry point of the frozen agent (installer/linux and installer/windows mamori-agent.spec): the same `mamori`
command line, plus ``--run-module MODULE ARGS...``, which the agent uses to start its own helper processes (the
cover helper, the onlooker guard) where there is no ``python -m`` (agent/frozen.py)."""

import runpy
import sys

from agent.frozen import RUN_MODULE

if len(sys.argv) > 2 and sys.argv[1] == RUN_MODULE:
    module = sys.argv[2]
    if not module.startswith("agent."):
        sys.exit(f"mamori: {RUN_MODULE} runs the agent's own helper modules (agent.*), not {module!r}")
    sys.argv = [sys.argv[0], *sys.argv[3:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
    sys.exit(0)

from agent.cli import main  # noqa: E402 - after the helper dispatch, which must not pay for the CLI's imports

sys.exit(main())
