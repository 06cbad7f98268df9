"""The running processes, by name, for the share signatures (psutil adapter).

Polled several times a second, so it is kept cheap: listing pids is one directory read, and a process's
name is read once, when its pid first appears (psutil's ``process_iter`` would re-read every name on every
call). A pid that disappears is forgotten; a pid reused between two polls keeps its old name until it goes
away — polls are a fraction of a second apart, so this is accepted. Only names are read, never command
lines (SPEC.md: command lines never leave the PC, and Mamori has no need to see them).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import psutil

from agent.share.detect import ProcessInfo

logger = logging.getLogger(__name__)

ProcessLister = Callable[[], Sequence[ProcessInfo] | None]


class PsutilProcessLister:
    """``__call__`` returns the processes, or ``None`` when the process table cannot be read at all."""

    def __init__(self) -> None:
        self._names: dict[int, str] = {}
        self._snapshot: tuple[ProcessInfo, ...] = ()

    def __call__(self) -> Sequence[ProcessInfo] | None:
        try:
            pids = psutil.pids()
        except (OSError, psutil.Error) as err:
            logger.warning("process list unavailable: %s", type(err).__name__)
            return None
        current = set(pids)
        gone = self._names.keys() - current
        new = current - self._names.keys()
        if not gone and not new:
            # The same object while nothing changed: detect() then reuses its work on the names.
            return self._snapshot
        for pid in gone:
            del self._names[pid]
        for pid in new:
            name = self._read_name(pid)
            if name is not None:
                self._names[pid] = name
        self._snapshot = tuple(ProcessInfo(pid=pid, name=name) for pid, name in self._names.items())
        return self._snapshot

    @staticmethod
    def _read_name(pid: int) -> str | None:
        # Degrade item by item (STYLE.md, psutil's ad_value): a process we may not inspect or that just
        # exited is skipped, the rest of the list stands.
        try:
            return psutil.Process(pid).name()
        except psutil.ZombieProcess:
            return ""  # kept (as unnamed) so that a lingering zombie is not looked up on every poll
        except psutil.NoSuchProcess:
            return None
        except (psutil.AccessDenied, OSError):
            return ""
