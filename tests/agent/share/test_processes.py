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
