"""The running processes, by name, for the share signatures (psutil adapter).

Polled several times a second, so it is kept cheap: listing pids is one directory read, and a process's
name is read once, when its pid first appears (psutil's ``process_iter`` would re-read every name on every
call). On Linux that read is one ``read`` of /proc/PID/stat, the file psutil takes the name from (psutil's
``Process(pid).name()`` reads it twice and builds an object); a name of 15 characters or more, which the
kernel truncates, is still asked of psutil, which completes it from the command line. A pid that disappears is forgotten; a pid reused between two polls keeps its old name until it goes
away — polls are a fraction of a second apart, so this is accepted. Only names are read, except the command
line of the few recorders whose arguments say whether they grab the screen (ffmpeg, gst-launch, vlc:
agent/share/recorders.py); it is read once, reduced to one yes/no and dropped — never stored, logged or sent
(SPEC.md: command lines never leave the PC).

The snapshot is updated, not rebuilt: a start or exit touches only that pid's entry and the count of its
(normalised) name, and the set of distinct names handed to detection is the same object until a name
appears or the last process of a name exits (agent/share/detect.py then matches only the names that changed).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence

import psutil

from agent.platform import HAS_PROCFS
from agent.share.detect import ProcessInfo, ProcessSnapshot
from agent.share.recorders import grabs_screen, reads_argv

logger = logging.getLogger(__name__)

ProcessLister = Callable[[], Sequence[ProcessInfo] | None]


class PsutilProcessLister:
    """``__call__`` returns the processes, or ``None`` when the process table cannot be read at all."""

    def __init__(self) -> None:
        self._infos: dict[int, ProcessInfo] = {}
        self._counts: dict[str, int] = {}  # normalised name -> number of listed processes with it
        self._snapshot = ProcessSnapshot((), frozenset())

    def __call__(self) -> Sequence[ProcessInfo] | None:
        try:
            pids = psutil.pids()
        except (OSError, psutil.Error) as err:
            logger.warning("process list unavailable: %s", type(err).__name__)
            return None
        current = set(pids)
        infos, counts = self._infos, self._counts
        gone = infos.keys() - current
        new = current - infos.keys()
        if not gone and not new:
            # The same object while nothing changed: detect() then reuses its work on the names.
            return self._snapshot
        names_changed = False
        # Starts before exits: a name whose process was replaced within one poll stays in the set.
        for pid in new:
            name = self._read_name(pid)
            if name is None:
                continue
            info = ProcessInfo(pid=pid, name=name, screen_grab=self._grabs_screen(pid, name))
            infos[pid] = info
            key = info.key
            if key in counts:
                counts[key] += 1
            else:
                counts[key] = 1
                names_changed = True
        for pid in gone:
            key = infos.pop(pid).key
            counts[key] -= 1
            if not counts[key]:
                del counts[key]
                names_changed = True
        names = frozenset(counts) if names_changed else self._snapshot.names
        self._snapshot = ProcessSnapshot(infos.values(), names)
        return self._snapshot

    @staticmethod
    def _grabs_screen(pid: int, name: str) -> bool:
        if not name or not reads_argv(name):
            return False
        try:
            return grabs_screen(name, psutil.Process(pid).cmdline())
        except psutil.AccessDenied:
            # A recorder whose arguments this user may not read (Windows: another user's, or elevated):
            # fail closed, it may be grabbing the screen.
            return True
        except (psutil.Error, OSError):
            return False  # it exited

    @staticmethod
    def _read_name(pid: int) -> str | None:
        # Degrade item by item (STYLE.md, psutil's ad_value): a process we may not inspect or that just
        # exited is skipped, the rest of the list stands.
        if HAS_PROCFS:
            try:
                name = procfs_name(pid)
            except (FileNotFoundError, ProcessLookupError):
                return None  # it exited
            if name is not None:
                return name
        try:
            return psutil.Process(pid).name()
        except psutil.ZombieProcess:
            return ""  # kept (as unnamed) so that a lingering zombie is not looked up on every poll
        except psutil.NoSuchProcess:
            return None
        except (psutil.AccessDenied, OSError):
            return ""


COMM_MAX = 15  # TASK_COMM_LEN - 1: the kernel truncates longer names (psutil then reads the command line)


def procfs_name(pid: int) -> str | None:
    """Linux: the name psutil's ``Process(pid).name()`` gives, from one read of /proc/PID/stat; None when
    psutil must answer (a truncated name, or the file could not be read or parsed). Raises FileNotFoundError
    or ProcessLookupError when the process is gone.

    psutil takes the text between the first "(" and the last ")" (the name may hold either) and decodes it
    with the file system encoding; so does this.
    """
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)  # not inherited (PEP 446)
    except (FileNotFoundError, ProcessLookupError):
        raise
    except OSError:
        return None
    try:
        data = os.read(fd, 1024)
    except ProcessLookupError:
        raise
    except OSError:
        return None
    finally:
        os.close(fd)
    start, end = data.find(b"("), data.rfind(b")")
    if start < 0 or end < start:
        return None
    name = os.fsdecode(data[start + 1 : end])
    return name if len(name) < COMM_MAX else None
