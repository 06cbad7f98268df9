"""The root of every expected Mamori error.

Each package has its own small tree under :class:`MamoriError`. The CLI prints ``str(err)`` as one line on
stderr and exits with ``err.exit_code``; a traceback is shown only with ``--debug``.
"""

from __future__ import annotations


class MamoriError(Exception):
    """An expected failure with a one-line, actionable message."""

    exit_code: int = 2

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code
