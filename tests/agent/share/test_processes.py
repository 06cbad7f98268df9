"""The psutil process lister sees a real process by the name psutil reports, and forgets it when it exits."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from agent.share.processes import PsutilProcessLister


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
    import psutil

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
