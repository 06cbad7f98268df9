"""The procfs gate (agent/share/processes.py, ``ProcfsGatedLister``) over the real /proc of this machine:
idle polls do not list /proc, a process started between two polls is seen on the next one, a watched
recorder's exit is seen at once, and a reused pid cannot keep an exited recorder "running".

Other jobs start and exit processes on this machine while these tests run; the assertions hold under that
churn (the gate probes each new pid instead of listing).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from agent.platform import HAS_PROCFS
from agent.share.detect import detect, process_keys_matter
from agent.share.processes import ProcfsGatedLister, PsutilProcessLister, procfs_gate_usable
from agent.share.signatures import signatures_for
from policy.model import Policy

pytestmark = pytest.mark.skipif(
    not HAS_PROCFS or not procfs_gate_usable(), reason="needs Linux /proc and pidfds"
)

SIGNATURES = signatures_for(Policy(schema=1, id="builtin", version=1), None)


@pytest.fixture
def listings(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the real listings of /proc (psutil.pids still runs)."""
    calls: list[int] = []
    real = psutil.pids

    def counting() -> list[int]:
        calls.append(1)
        return real()

    monkeypatch.setattr(psutil, "pids", counting)
    return calls


@pytest.fixture
def gate() -> Iterator[ProcfsGatedLister]:
    lister = ProcfsGatedLister(PsutilProcessLister(), full_interval=600.0, max_probe=100_000)
    lister.watch(process_keys_matter(SIGNATURES))
    yield lister
    lister.close()


def _named(tmp_path: Path, name: str) -> Path:
    exe = tmp_path / name
    exe.symlink_to(os.path.realpath(sys.executable))  # comm = basename of the executed path
    return exe


def _start(exe: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([str(exe), "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)


def _end(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(timeout=10)


def _apps(lister: Callable[[], object]) -> tuple[str, ...]:
    processes = lister()
    assert isinstance(processes, tuple)
    return detect((), processes, SIGNATURES).apps


def test_idle_polls_do_not_list_proc(gate: ProcfsGatedLister, listings: list[int]) -> None:
    first = gate()
    assert first is not None and listings == [1]
    for _ in range(20):
        time.sleep(0.05)
        assert gate() is not None
    # Without the gate each of the 21 polls lists /proc; with it only a watched process exiting meanwhile
    # (another job's browser or recorder) lists again.
    assert len(listings) <= 3, listings
    assert gate.listings == len(listings)


def test_a_recorder_started_between_polls_is_seen_on_the_next_poll_and_its_exit_at_once(
    gate: ProcfsGatedLister, listings: list[int], tmp_path: Path
) -> None:
    assert "OBS Studio" not in _apps(gate)
    before = len(listings)
    proc = _start(_named(tmp_path, "obs"))
    try:
        assert "OBS Studio" in _apps(gate)
        assert len(listings) == before, "seen by probing its pid, without listing /proc"
    finally:
        _end(proc)
    assert "OBS Studio" not in _apps(gate)
    assert all(p.pid != proc.pid for p in gate() or ())


def test_an_unwatched_process_is_seen_and_a_thread_is_not_a_process(
    gate: ProcfsGatedLister, tmp_path: Path
) -> None:
    gate()
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)  # its id is a new pid that /proc resolves, not a process
    thread.start()
    proc = _start(_named(tmp_path, "notarecorder"))
    try:
        assert thread.native_id is not None
        seen = {p.pid: p.name for p in gate() or ()}
        assert seen.get(proc.pid) == "notarecorder"
        assert thread.native_id not in seen
        assert os.getpid() in seen
    finally:
        stop.set()
        thread.join()
        _end(proc)


def test_the_safety_listing_comes_after_full_interval(listings: list[int]) -> None:
    now = [0.0]
    lister = ProcfsGatedLister(
        PsutilProcessLister(), full_interval=5.0, max_probe=100_000, monotonic=lambda: now[0]
    )
    lister.watch(process_keys_matter(SIGNATURES))
    try:
        lister()
        now[0] = 4.9
        lister()
        assert len(listings) <= 2  # the second only if a watched process exited meanwhile
        count = len(listings)
        now[0] = 5.0
        lister()
        assert len(listings) == count + 1
    finally:
        lister.close()


def test_without_a_watch_every_poll_lists(listings: list[int]) -> None:
    lister = ProcfsGatedLister(PsutilProcessLister())
    try:
        for _ in range(3):
            lister()
        assert len(listings) == 3  # fail closed: it cannot know whose exits matter
    finally:
        lister.close()


def _spawn_at(pid: int, exe: Path) -> subprocess.Popen[bytes] | None:
    with open("/proc/sys/kernel/ns_last_pid", "w", encoding="ascii") as f:
        f.write(str(pid - 1))
    proc = _start(exe)
    if proc.pid == pid:
        return proc
    _end(proc)
    return None


# Writing ns_last_pid needs root, like the network-namespace tests: the "network" marker keeps CI from
# skipping it (tests/conftest.py, REQUIRED_MARKERS).
@pytest.mark.network
@pytest.mark.skipif(os.geteuid() != 0, reason="reusing a pid on purpose needs root (ns_last_pid)")
def test_a_reused_pid_cannot_keep_an_exited_recorder_running(gate: ProcfsGatedLister, tmp_path: Path) -> None:
    recorder, other = _named(tmp_path, "obs"), _named(tmp_path, "calculator")
    for _ in range(30):
        proc = _start(recorder)
        try:
            assert "OBS Studio" in _apps(gate)
        finally:
            _end(proc)
        successor = _spawn_at(proc.pid, other)  # the recorder's pid, now another program's
        if successor is None:
            continue  # another job took the pid first
        try:
            seen = {p.pid: p.name for p in gate() or ()}
            assert seen.get(proc.pid) == "calculator"
            assert "OBS Studio" not in _apps(gate)
            return
        finally:
            _end(successor)
    pytest.fail("could not reuse a pid in 30 tries")
