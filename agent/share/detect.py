"""Is the screen being shared or recorded? A pure decision over one snapshot (STYLE.md: decide/ habits).

Inputs are what the platform can see: the top-level windows, the running processes (names only, never
command lines) and, on Wayland, the PipeWire screencast streams. Each may be unreadable (``None``): the
signatures that depend on it are then reported in ``ShareState.unknown`` — never silently "not sharing"
(issue 6). No OS or network library is imported here.
"""

from __future__ import annotations

import fnmatch
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from agent.platform.base import Window
from agent.share.recorders import process_key
from policy.model import ShareSignature

# The app name of a PipeWire screencast whose consumer is not a known app, and of the PipeWire signal when it
# cannot be read on a Wayland session.
PIPEWIRE_APP = "Screencast"


@dataclass(frozen=True)
class ProcessInfo:
    """A running process as the share guard sees it: id, executable base name and, for the few command-line
    recorders whose arguments say it (agent/share/recorders.py), whether it grabs the screen."""

    pid: int
    name: str
    screen_grab: bool = False

    @property
    def key(self) -> str:
        """The name signatures match: ``screen-grab:ffmpeg`` for an ffmpeg recording the screen."""
        return process_key(normalise_name(self.name), self.screen_grab)


@dataclass(frozen=True)
class CaptureStream:
    """A live screen capture seen below the window level (a PipeWire screencast node being consumed)."""

    app: str


@dataclass(frozen=True)
class ShareState:
    """``apps``: names of the sharing/recording apps detected; ``unknown``: apps whose state could not be
    read (their signals were unavailable). ``active`` is true when any app is detected."""

    active: bool
    apps: tuple[str, ...] = ()
    unknown: tuple[str, ...] = ()


NOT_SHARING = ShareState(active=False)


@dataclass(frozen=True)
class _Compiled:
    process_re: re.Pattern[str] | None  # None: the signature names no process


def normalise_name(name: str) -> str:
    """A process name as signatures match it."""
    # Same rule as agent.decide.match for customer apps: case-insensitive, ".exe" optional. Compiled into one
    # regex per signature here because this runs over every process several times a second.
    lowered = name.strip().lower()
    return lowered[:-4] if lowered.endswith(".exe") else lowered


@lru_cache(maxsize=512)
def _compile(signature: ShareSignature) -> _Compiled:
    if not signature.processes:
        return _Compiled(process_re=None)
    parts = [fnmatch.translate(normalise_name(p)) for p in signature.processes]
    return _Compiled(process_re=re.compile("|".join(f"(?:{p})" for p in parts)))


def _window_matches(signature: ShareSignature, compiled: _Compiled, window: Window) -> bool:
    if signature.title is not None and not signature.title.search(window.title):
        return False
    if signature.wm_class is not None and not signature.wm_class.search(window.wm_class):
        return False
    # An indicator must belong to the signature's process when the owner is known: a text editor showing
    # a file named like an indicator is not a share. An unknown owner ("") does not rule it out.
    return not (
        compiled.process_re is not None
        and window.process_name
        and not compiled.process_re.match(normalise_name(window.process_name))
    )


class ProcessSnapshot(tuple[ProcessInfo, ...]):
    """A process list that also carries its set of normalised names (:func:`normalise_name`).

    Built by a lister that keeps the names up to date as processes start and exit, so that detection does
    not re-normalise every name; the lister hands out the same ``names`` object while the set of distinct
    names is unchanged.
    """

    names: frozenset[str]

    def __new__(cls, processes: Iterable[ProcessInfo], names: frozenset[str]) -> ProcessSnapshot:
        snapshot = super().__new__(cls, processes)
        snapshot.names = names
        return snapshot


_last_names: tuple[Sequence[ProcessInfo] | None, frozenset[str]] = (None, frozenset())


def _process_names(processes: Sequence[ProcessInfo]) -> frozenset[str]:
    if isinstance(processes, ProcessSnapshot):
        return processes.names
    # Another caller's list: the poller hands in the same list object while no process started or exited;
    # remembering the last one keeps a poll at a few microseconds instead of re-normalising every name
    # (rebinding a tuple is atomic, so concurrent callers at worst recompute).
    global _last_names  # noqa: PLW0603
    last, names = _last_names
    if last is not processes:
        names = frozenset(p.key for p in processes)
        _last_names = (processes, names)
    return names


class _NameIndex:
    """For every signature asked about, how many of the running names its ``processes`` globs match.

    Kept up to date from the names that appeared or went away since the previous name set, so a process
    starting or exiting costs a match of the new names only (and of none when the name was seen before: the
    per-name results are remembered), not every signature against every name.
    """

    _MAX_NAMES = 8192  # per-name results remembered; beyond, start again (names of short-lived processes)
    _MAX_SIGNATURES = 256  # signatures tracked; beyond (many policy changes), start again

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._names: frozenset[str] = frozenset()
        self._counts: dict[ShareSignature, int] = {}  # tracked signature -> matching names in _names
        self._matching: dict[str, tuple[ShareSignature, ...]] = {}  # name -> tracked signatures it matches

    def running(self, signature: ShareSignature, names: frozenset[str]) -> bool:
        with self._lock:
            if names is not self._names:
                self._move_to(names)
            count = self._counts.get(signature)
            if count is None:
                count = self._track(signature)
            return count > 0

    def _hits(self, name: str) -> tuple[ShareSignature, ...]:
        hits = self._matching.get(name)
        if hits is None:
            if len(self._matching) >= self._MAX_NAMES:
                self._matching.clear()
            hits = tuple(s for s in self._counts if _process_re(s).match(name))
            self._matching[name] = hits
        return hits

    def _move_to(self, names: frozenset[str]) -> None:
        counts = self._counts
        for name in self._names - names:
            for signature in self._hits(name):
                counts[signature] -= 1
        for name in names - self._names:
            for signature in self._hits(name):
                counts[signature] += 1
        self._names = names

    def _track(self, signature: ShareSignature) -> int:
        if len(self._counts) >= self._MAX_SIGNATURES:
            self._counts.clear()
        pattern = _process_re(signature)
        count = sum(1 for n in self._names if pattern.match(n))
        self._counts[signature] = count
        self._matching.clear()  # the remembered results do not cover the new signature
        return count


def _process_re(signature: ShareSignature) -> re.Pattern[str]:
    pattern = _compile(signature).process_re
    assert pattern is not None  # only signatures naming processes are tracked
    return pattern


_index = _NameIndex()


def _running(signature: ShareSignature, names: frozenset[str]) -> bool:
    if _compile(signature).process_re is None:
        return True
    return _index.running(signature, names)


def _evaluate(
    signature: ShareSignature,
    windows: Sequence[Window] | None,
    process_names: frozenset[str] | None,
    titles_readable: bool,
) -> bool | None:
    """True: sharing; False: not sharing; None: cannot tell."""
    compiled = _compile(signature)
    if compiled.process_re is None:
        running: bool | None = True
    elif process_names is None:
        running = None
    else:
        running = _running(signature, process_names)
    if signature.title is None and signature.wm_class is None:
        return running
    if running is False:
        return False
    if windows is None:
        return None
    if any(_window_matches(signature, compiled, w) for w in windows):
        return True
    if signature.title is not None and not titles_readable:
        return None
    # The window list is readable and shows no indicator: a share needs its indicator, so this is a "no"
    # even when the process list could not be read.
    return False


def windows_needed(signatures: Sequence[ShareSignature], processes: Sequence[ProcessInfo] | None) -> bool:
    """Whether the window list can change the answer: some window signature's process is running (or the
    signature names no process, or the process list is unreadable). When not, the poller skips reading
    windows, which is by far the costliest input (one X round trip per window property)."""
    if processes is None:
        return True
    names = _process_names(processes)
    return any(
        _running(signature, names)
        for signature in signatures
        if signature.title is not None or signature.wm_class is not None
    )


def process_keys_matter(signatures: Sequence[ShareSignature]) -> Callable[[str], bool]:
    """Whether a process with this :attr:`ProcessInfo.key` can change :func:`detect`'s answer for these
    signatures: some signature's ``processes`` glob matches it. Only those processes' exits need watching
    (agent/share/processes.py, ``ProcfsGatedLister``). Answers are remembered per key."""
    patterns = tuple(p for p in (_compile(s).process_re for s in signatures) if p is not None)
    answers: dict[str, bool] = {}

    def matters(key: str) -> bool:
        answer = answers.get(key)
        if answer is None:
            if len(answers) >= _NameIndex._MAX_NAMES:
                answers.clear()
            answer = answers[key] = any(p.match(key) for p in patterns)
        return answer

    return matters


def _unique(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(names))


def detect(
    windows: Sequence[Window] | None,
    processes: Sequence[ProcessInfo] | None,
    signatures: Sequence[ShareSignature],
    *,
    captures: Sequence[CaptureStream] | None = (),
    titles_readable: bool = True,
) -> ShareState:
    """Evaluate every signature over one snapshot.

    ``windows``/``processes``/``captures`` are ``None`` when that source could not be read;
    ``titles_readable`` is false when the OS hides other apps' window titles (macOS without the Screen
    Recording permission). An app that is detected by any signature is never also listed as unknown.
    """
    process_names = _process_names(processes) if processes is not None else None
    found: list[str] = []
    unknown: list[str] = []
    for signature in signatures:
        result = _evaluate(signature, windows, process_names, titles_readable)
        if result is True:
            found.append(signature.app)
        elif result is None:
            unknown.append(signature.app)
    if captures is None:
        unknown.append(PIPEWIRE_APP)
    else:
        found.extend(c.app for c in captures)
    apps = _unique(found)
    return ShareState(
        active=bool(apps),
        apps=apps,
        unknown=tuple(a for a in _unique(unknown) if a not in apps),
    )
