"""The psutil process lister sees a real process by the name psutil reports, and forgets it when it exits."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from agent.platform import HAS_PROCFS
from agent.share.processes import COMM_MAX, PsutilProcessLister, procfs_name


def test_lister_reports_new_processes_by_name_and_drops_exited_ones(tmp_path: Path) -> None:
    exe = tmp_path / "obs"
    exe.symlink_to(os.path.realpath(sys.executable))  # comm = basename of the executed path
    lister = PsutilProcessLister()
    before = lister()
    assert before is not None and all(p.name != "obs" for p in before)

    proc = subprocess.Popen([str(exe), "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        seen = lister()
        assert seen is not None
        assert any(p.pid == proc.pid and p.name == "obs" for p in seen)
        assert seen is not before
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=10)
    after = lister()
    assert after is not None and all(p.pid != proc.pid for p in after)


def test_a_recorder_whose_arguments_cannot_be_read_counts_as_grabbing(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """On Windows another user's (or an elevated) ffmpeg.exe refuses its command line: fail closed. Linux
    always lets /proc/PID/cmdline be read, so psutil's refusal is scripted here."""

    class Refusing:
        def __init__(self, pid: int) -> None:
            self.pid = pid

        def cmdline(self) -> list[str]:
            raise psutil.AccessDenied(self.pid)

    class Gone(Refusing):
        def cmdline(self) -> list[str]:
            raise psutil.NoSuchProcess(self.pid)

    monkeypatch.setattr(psutil, "Process", Refusing)
    assert PsutilProcessLister._grabs_screen(4242, "ffmpeg.exe") is True
    assert PsutilProcessLister._grabs_screen(4242, "notepad.exe") is False  # never asked: not a recorder
    monkeypatch.setattr(psutil, "Process", Gone)
    assert PsutilProcessLister._grabs_screen(4242, "ffmpeg.exe") is False


needs_procfs = pytest.mark.skipif(not HAS_PROCFS, reason="reads /proc (Linux)")


@needs_procfs
def test_procfs_name_is_the_name_psutil_gives_for_every_running_process(tmp_path: Path) -> None:
    # A name with a space and a ")" (the kernel keeps it; psutil takes the text up to the last ")"), and one
    # the kernel truncates, which is left to psutil.
    short = tmp_path / "a b) c"
    long = tmp_path / "averyverylongrecordername"
    for exe in (short, long):
        exe.symlink_to(os.path.realpath(sys.executable))
    procs = [
        subprocess.Popen([str(e), "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
        for e in (short, long)
    ]
    try:
        compared = 0
        for pid in psutil.pids():
            try:
                expected = psutil.Process(pid).name()
                got = procfs_name(pid)
            except (psutil.Error, FileNotFoundError, ProcessLookupError):
                continue  # exited meanwhile
            if got is None:
                assert len(expected) >= COMM_MAX
                continue
            assert got == expected, pid
            compared += 1
        assert compared > 3
        assert procfs_name(procs[0].pid) == "a b) c"
        assert procfs_name(procs[1].pid) is None  # truncated by the kernel: psutil completes it
        lister = PsutilProcessLister()
        seen = {p.pid: p.name for p in lister() or ()}
        assert seen[procs[0].pid] == "a b) c"
        assert seen[procs[1].pid] == "averyverylongrecordername"
    finally:
        for p in procs:
            assert p.stdin is not None
            p.stdin.close()
            p.wait(timeout=10)
    with pytest.raises((FileNotFoundError, ProcessLookupError)):
        procfs_name(procs[0].pid)  # reaped: gone
    assert PsutilProcessLister._read_name(procs[0].pid) is None
