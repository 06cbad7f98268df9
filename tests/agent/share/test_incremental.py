"""The incremental process snapshot and name index give the same detection as a full re-match.

A scripted sequence of process tables (starts, exits, names coming back, case and ".exe" variants, the last
process of a name exiting) goes through ``PsutilProcessLister`` (psutil scripted) and ``detect()``; every
step is compared with a fresh, full evaluation of a plain list of the same processes.
"""

from __future__ import annotations

import importlib
import random
import re
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

from agent.platform.base import Rect, Window
from agent.share.detect import ProcessInfo, ProcessSnapshot, ShareState, detect, windows_needed
from agent.share.processes import PsutilProcessLister
from policy.model import ShareSignature

detect_mod: Any = importlib.import_module("agent.share.detect")  # the package re-exports the function

SIGS = (
    ShareSignature(app="Zoom", processes=("zoom",), title=re.compile("^as_toolbar$")),
    ShareSignature(app="OBS Studio", processes=("obs", "obs64.exe")),
    ShareSignature(app="Teams", processes=("ms-teams*", "teams")),
    ShareSignature(app="Bar", title=re.compile("is sharing your screen")),
    ShareSignature(app="Recorder", processes=("*record*",)),
)
OTHER_SIGS = (ShareSignature(app="Loom", processes=("loom*",)), SIGS[1])  # a policy change mid-sequence
POOL = ("bash", "sh", "zoom", "Zoom.exe", "obs", "OBS64.EXE", "ms-teams", "teams", "screenrecorder", "cc1",
        "ld", "python3", "loom", "LoomHelper", "", "chrome")  # fmt: skip
WINDOWS: tuple[list[Window] | None, ...] = (
    None,
    [],
    [Window(id=1, title="as_toolbar", pid=3, process_name="zoom", rect=Rect(0, 0, 9, 9), wm_class="zoom")],
)


def _script(seed: int, steps: int) -> Iterator[dict[int, str]]:
    """Process tables: each step some pids exit and some new pids (never reused) start."""
    rng = random.Random(seed)
    next_pid = 100
    table: dict[int, str] = {}
    for _ in range(steps):
        for pid in rng.sample(sorted(table), k=min(len(table), rng.choice((0, 0, 1, 3, 10)))):
            del table[pid]
        for _ in range(rng.choice((0, 1, 1, 2, 8))):
            table[next_pid] = rng.choice(POOL)
            next_pid += 1
        yield dict(table)


def _full(
    windows: list[Window] | None, processes: list[ProcessInfo] | None, sigs: tuple[ShareSignature, ...]
) -> tuple[ShareState, bool]:
    """Reference: a fresh index (nothing remembered) over a plain list."""
    saved = detect_mod._index
    detect_mod._index = detect_mod._NameIndex()
    try:
        return detect(windows, processes, sigs), windows_needed(sigs, processes)
    finally:
        detect_mod._index = saved


@pytest.mark.parametrize("seed", range(5))
def test_incremental_detection_equals_full_detection(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    table: dict[int, str] = {}
    monkeypatch.setattr(psutil, "pids", lambda: sorted(table))
    monkeypatch.setattr(PsutilProcessLister, "_read_name", staticmethod(table.get))
    lister = PsutilProcessLister()
    rng = random.Random(seed)
    previous: ProcessSnapshot | None = None
    for step, state in enumerate(_script(seed, 300)):
        table.clear()
        table.update(state)
        snapshot = lister()
        assert isinstance(snapshot, ProcessSnapshot)
        assert sorted((p.pid, p.name) for p in snapshot) == sorted(state.items())
        if previous is not None and {p.name.lower().removesuffix(".exe") for p in previous} == {
            n.lower().removesuffix(".exe") for n in state.values()
        }:
            assert snapshot.names is previous.names  # same distinct names: same object, no re-match
        previous = snapshot
        sigs = OTHER_SIGS if 100 <= step < 150 else SIGS
        windows = rng.choice(WINDOWS)
        incremental = (detect(windows, snapshot, sigs), windows_needed(sigs, snapshot))
        assert incremental == _full(windows, list(snapshot), sigs), f"step {step}"
        # A plain list through the shared index (another caller between two polls) also agrees.
        assert detect(windows, [ProcessInfo(p, n) for p, n in state.items()], sigs) == incremental[0]


def test_unchanged_table_returns_the_same_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    table = {1: "obs", 2: "bash"}
    monkeypatch.setattr(psutil, "pids", lambda: sorted(table))
    monkeypatch.setattr(PsutilProcessLister, "_read_name", staticmethod(table.get))
    lister = PsutilProcessLister()
    first = lister()
    assert lister() is first
    table[3] = "bash"  # a new pid, a known name
    second = lister()
    assert isinstance(first, ProcessSnapshot) and isinstance(second, ProcessSnapshot)
    assert second is not first and second.names is first.names
    del table[1]  # the last "obs" exits
    third = lister()
    assert isinstance(third, ProcessSnapshot) and third.names == frozenset({"bash"})
    assert detect([], third, SIGS).apps == ()
