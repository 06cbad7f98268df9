"""Errors of the policy package. Each rejection reason has its own class (STYLE.md, python-tuf model)."""

from __future__ import annotations

from dataclasses import dataclass

from agent.errors import MamoriError


class PolicyError(MamoriError):
    """Base of every policy failure."""


@dataclass(frozen=True)
class Problem:
    """One validation problem, printed as FILE:LINE:COL: dotted.path: message."""

    path: str  # dotted path, e.g. "presence.warn_after" or "customer_apps[1].title"
    message: str
    line: int = 0
    col: int = 0

    def format(self, source: str) -> str:
        return f"{source}:{self.line}:{self.col}: {self.path or '(top)'}: {self.message}"


class PolicyValidationError(PolicyError):
    """The policy file is not valid; carries every problem found, not just the first."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(p.format(source) for p in problems) or f"{source}: invalid policy")
