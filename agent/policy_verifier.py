"""The policy-signature child process of the running agent (policy/verify_child.py), started through
agent/frozen.py so that it runs the same from a Python install and from a frozen build.

The agent checks every policy signature (drop, server pull, the minute re-read of its trusted store) in this
child, so it never loads cryptography itself (docs/performance.md, "Agent memory"). Its entry point is here,
under ``agent.``, because the frozen launcher runs the agent's own modules only (installer/frozen/launch.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from agent.frozen import helper_env, module_command
from policy.verify_child import ChildVerifier, VerdictCache

MODULE = "agent.policy_verifier"

KeyLoader = Callable[[Sequence[str | os.PathLike[str]]], ChildVerifier]


def child_key_loader(command: Sequence[str] | None = None) -> KeyLoader:
    """What :class:`agent.policy_source.PolicySource` calls to get its trusted keys: the key files read now,
    their signatures checked by a child; one cache for the agent's lifetime."""
    argv = list(command) if command is not None else module_command(MODULE)
    env = helper_env()
    cache = VerdictCache()

    def load(paths: Sequence[str | os.PathLike[str]]) -> ChildVerifier:
        return ChildVerifier.load(paths, argv, env, cache=cache)

    return load


if __name__ == "__main__":
    from policy.verify_child import main

    raise SystemExit(main())
