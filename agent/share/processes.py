"""The running processes, by name, for the share signatures (psutil adapter).

Polled several times a second, so it is kept cheap: listing pids is one directory read, and a process's
name is read once, when its pid first appears (psutil's ``process_iter`` would re-read every name on every
call). On Linux that read is one ``read`` of /proc/PID/stat, the file psutil takes the name from (psutil's
``Process(pid).name()`` reads it twice and builds an object); a name of 15 characters or more, which the
kernel truncates, is still asked of psutil, which completes it from the command line. A pid that disappears
is forgotten. A listing compares pids, so for :class:`PsutilProcessLister` alone a pid reused between two
listings keeps its old name until it goes away (polls are a fraction of a second apart); on Linux
:class:`ProcfsGatedLister` holds the processes whose names matter by pidfd, so their exit is seen even when
the pid is reused, and re-reads each newly allocated pid. Only names are read, except the command
line of the few recorders whose arguments say whether they grab the screen (ffmpeg, gst-launch, vlc:
agent/share/recorders.py); it is read once, reduced to one yes/no and dropped — never stored, logged or sent
(SPEC.md: command lines never leave the PC).

The snapshot is updated, not rebuilt: a start or exit touches only that pid's entry and the count of its
(normalised) name, and the set of distinct names handed to detection is the same object until a name
appears or the last process of a name exits (agent/share/detect.py then matches only the names that changed).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import time
from collections.abc import Callable, Sequence
from typing import Any

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
        infos = self._infos
        gone = infos.keys() - current
        new = current - infos.keys()
        if not gone and not new:
            # The same object while nothing changed: detect() then reuses its work on the names.
            return self._snapshot
        names_changed = False
        # Starts before exits: a name whose process was replaced within one poll stays in the set.
        for pid in new:
            name = self._read_name(pid)
            if name is not None:
                names_changed |= self._add(pid, name)
        for pid in gone:
            names_changed |= self._remove(pid)
        return self._publish(names_changed)

    @property
    def snapshot(self) -> ProcessSnapshot:
        """The processes as of the last listing or :meth:`put`/:meth:`forget`."""
        return self._snapshot

    def put(self, pid: int, name: str) -> ProcessInfo:
        """A process seen without a listing (:class:`ProcfsGatedLister`): replaces what ``pid`` was."""
        changed = self._remove(pid) if pid in self._infos else False
        changed |= self._add(pid, name)
        self._publish(changed)
        return self._infos[pid]

    def snapshot_info(self, pid: int) -> ProcessInfo | None:
        return self._infos.get(pid)

    def read_name(self, pid: int) -> str | None:
        """The name of ``pid`` as a listing reads it; None when it is gone."""
        return self._read_name(pid)

    def forget(self, pid: int) -> None:
        """A process known to be gone (or whose pid may have been reused): the next listing reads it again."""
        if pid in self._infos:
            self._publish(self._remove(pid))

    def _add(self, pid: int, name: str) -> bool:
        info = ProcessInfo(pid=pid, name=name, screen_grab=self._grabs_screen(pid, name))
        self._infos[pid] = info
        key = info.key
        if key in self._counts:
            self._counts[key] += 1
            return False
        self._counts[key] = 1
        return True

    def _remove(self, pid: int) -> bool:
        key = self._infos.pop(pid).key
        self._counts[key] -= 1
        if self._counts[key]:
            return False
        del self._counts[key]
        return True

    def _publish(self, names_changed: bool) -> ProcessSnapshot:
        names = frozenset(self._counts) if names_changed else self._snapshot.names
        self._snapshot = ProcessSnapshot(self._infos.values(), names)
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
    data = _read_stat(pid)
    return None if data is None else _stat_name(data)


def _read_stat(pid: int) -> bytes | None:
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)  # not inherited (PEP 446)
    except (FileNotFoundError, ProcessLookupError):
        raise
    except OSError:
        return None
    try:
        return os.read(fd, 1024)
    except ProcessLookupError:
        raise
    except OSError:
        return None
    finally:
        os.close(fd)


def _stat_name(data: bytes) -> str | None:
    start, end = data.find(b"("), data.rfind(b")")
    if start < 0 or end < start:
        return None
    name = os.fsdecode(data[start + 1 : end])
    return name if len(name) < COMM_MAX else None


# proc(5): the fields after the name, from "state" (field 3); "exit_signal" is field 38. copy_process() sets
# it to -1 for a thread (CLONE_THREAD), whose id /proc also resolves though it lists only processes.
_EXIT_SIGNAL = 38 - 3


def _stat_is_thread(data: bytes) -> bool | None:
    fields = data[data.rfind(b")") + 1 :].split()
    if len(fields) <= _EXIT_SIGNAL:
        return None
    return fields[_EXIT_SIGNAL] == b"-1"


def _read_last_pid(fd: int) -> int | None:
    """The last field of /proc/loadavg, re-read from offset 0 (a seq_file regenerates its text on every read
    from the start): the pid most recently allocated in this pid namespace."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return int(os.read(fd, 256).rsplit(None, 1)[-1])
    except (OSError, IndexError, ValueError):
        return None


def procfs_gate_usable() -> bool:
    """Whether :class:`ProcfsGatedLister` can be trusted here: Linux with /proc/loadavg readable, not replaced
    (lxcfs mounts its own over it in containers), and pidfds available (Linux 5.3)."""
    if not HAS_PROCFS or _pidfd_open is None or _poll is None:
        return False
    try:
        fd = os.open("/proc/loadavg", os.O_RDONLY)
    except OSError:
        return False
    try:
        if _read_last_pid(fd) is None:
            return False
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            return not any(len(parts) > 4 and parts[4] == "/proc/loadavg" for parts in map(str.split, f))
    except OSError:
        return False
    finally:
        os.close(fd)


# Linux only (typeshed declares them for Linux / POSIX): looked up once so the module imports everywhere.
_pidfd_open: Callable[[int], int] | None = getattr(os, "pidfd_open", None)
_poll: Callable[[], Any] | None = getattr(select, "poll", None)
_POLLIN: int = getattr(select, "POLLIN", 1)


class ProcfsGatedLister:
    """Linux: lists /proc only when it may have changed in a way detection can see.

    An idle poll costs one read of /proc/loadavg and one ``poll()`` of the watched processes' pidfds, instead
    of listing /proc (~450 µs of kernel time with cold caches, docs/performance-agent.md):

    - a start moves the last allocated pid (pids are allocated cyclically, ``alloc_pid``); the pids between the
      previous value and the new one are probed one by one (a thread is recognised by its exit signal and
      skipped), or /proc is listed when they are more than ``max_probe`` or the counter wrapped;
    - an exit matters only for a process whose name some signature matches (``watch``): those are held by a
      pidfd, which becomes readable when the process exits and, unlike a pid, cannot be reused. Their exit
      forgets the pid and lists /proc. Other processes' exits are seen at the next listing;
    - /proc is listed anyway every ``full_interval`` seconds, so what the counter cannot show (a /proc of
      another pid namespace than this process's, a pid written to ns_last_pid) is missed for that long at most.

    Fails closed to a listing on every poll: before ``watch`` is given, when /proc/loadavg cannot be read, or
    when a watched process cannot be held (no pidfd, more than ``max_watched``).
    """

    def __init__(
        self,
        inner: PsutilProcessLister,
        *,
        full_interval: float = 5.0,
        max_probe: int = 64,
        max_watched: int = 256,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._inner = inner
        self.full_interval = full_interval
        self.max_probe = max_probe
        self.max_watched = max_watched
        self._monotonic = monotonic
        self._loadavg: int | None = None
        self._last_pid: int | None = None  # as read before the last listing or probe
        self._next_full = float("-inf")
        self._listed = False
        self._watch: Callable[[str], bool] | None = None
        self._pidfds: dict[int, int] = {}  # watched pid -> its pidfd
        self._fd_pids: dict[int, int] = {}
        self._poller = _poll() if _poll is not None else None
        self._can_watch = _pidfd_open is not None and self._poller is not None
        self.listings = 0  # for the benchmark and tests: how many polls listed /proc

    def watch(self, matters: Callable[[str], bool]) -> None:
        """Which processes' exits can change detection, by :attr:`ProcessInfo.key`; /proc is listed next."""
        self._watch = matters
        self._next_full = float("-inf")

    def __call__(self) -> Sequence[ProcessInfo] | None:
        now = self._monotonic()
        last = self._read_counter()
        if (
            last is None
            or self._last_pid is None
            or not self._listed
            or self._watch is None
            or not self._can_watch
            or now >= self._next_full
            or self._watched_exited()
        ):
            return self._list(last, now)
        if last == self._last_pid:
            return self._inner.snapshot
        if not 0 < last - self._last_pid <= self.max_probe:
            return self._list(last, now)  # wrapped, or a burst: one listing is cheaper
        for pid in range(self._last_pid + 1, last + 1):
            self._probe(pid)
        self._last_pid = last
        return self._inner.snapshot

    def close(self) -> None:
        for pid in list(self._pidfds):
            self._unwatch(pid)
        if self._loadavg is not None:
            fd, self._loadavg = self._loadavg, None
            with contextlib.suppress(OSError):
                os.close(fd)

    def _read_counter(self) -> int | None:
        if self._loadavg is None:
            try:
                self._loadavg = os.open("/proc/loadavg", os.O_RDONLY)  # kept open: 2 calls a poll, not 5
            except OSError:
                return None
        last = _read_last_pid(self._loadavg)
        if last is None:
            self.close()
        return last

    def _list(self, last: int | None, now: float) -> Sequence[ProcessInfo] | None:
        self.listings += 1
        snapshot = self._inner()
        self._listed = snapshot is not None
        self._last_pid = last if snapshot is not None else None
        self._next_full = now + self.full_interval
        if snapshot is not None:
            self._rewatch()
        return snapshot

    def _rewatch(self) -> None:
        matters = self._watch
        if matters is None or not self._can_watch:
            return
        wanted = {p.pid for p in self._inner.snapshot if matters(p.key)}
        for pid in self._pidfds.keys() - wanted:
            self._unwatch(pid)
        for pid in wanted - self._pidfds.keys():
            self._hold(pid)

    def _hold(self, pid: int) -> None:
        if len(self._pidfds) >= self.max_watched:
            self._give_up("more than %d processes to watch", self.max_watched)
            return
        assert _pidfd_open is not None and self._poller is not None
        try:
            fd = _pidfd_open(pid)
        except ProcessLookupError:
            self._inner.forget(pid)  # exited already: the next listing no longer has it
            self._listed = False
            return
        except OSError as err:
            self._give_up("pidfd_open failed: %s", type(err).__name__)
            return
        self._pidfds[pid] = fd
        self._fd_pids[fd] = pid
        self._poller.register(fd, _POLLIN)
        # The name was read before the pidfd was taken: had the pid been reused in between, its name now
        # differs (or it is gone): read again at the next listing.
        try:
            name = procfs_name(pid)
        except (FileNotFoundError, ProcessLookupError):
            name = None
        known = self._inner.snapshot_info(pid)
        if known is None or (name is not None and name != known.name):
            self._unwatch(pid)
            self._inner.forget(pid)
            self._listed = False

    def _unwatch(self, pid: int) -> None:
        fd = self._pidfds.pop(pid)
        del self._fd_pids[fd]
        if self._poller is not None:
            self._poller.unregister(fd)
        with contextlib.suppress(OSError):
            os.close(fd)

    def _give_up(self, reason: str, arg: object) -> None:
        logger.warning("process start/exit gate off, /proc is listed on every poll: " + reason, arg)
        self._can_watch = False
        for pid in list(self._pidfds):
            self._unwatch(pid)

    def _watched_exited(self) -> bool:
        if not self._pidfds or self._poller is None:
            return False
        events = self._poller.poll(0)
        for fd, _ in events:
            pid = self._fd_pids[fd]
            self._unwatch(pid)
            self._inner.forget(pid)
        return bool(events)

    def _probe(self, pid: int) -> None:
        try:
            data = _read_stat(pid)
        except (FileNotFoundError, ProcessLookupError):
            data = b""  # already gone
        if data is None:
            self._listed = False  # unreadable: let a listing decide
            return
        if pid in self._pidfds:  # cannot be: a held pid is not reallocated; but never trust a stale hold
            self._unwatch(pid)
        if not data or _stat_is_thread(data) is not False:
            self._inner.forget(pid)  # a pid newly allocated is no longer what the snapshot says
            return
        name = _stat_name(data)
        if name is None:
            name = self._inner.read_name(pid)
            if name is None:
                self._inner.forget(pid)
                return
        info = self._inner.put(pid, name)
        matters = self._watch
        if matters is not None and matters(info.key):
            self._hold(pid)
