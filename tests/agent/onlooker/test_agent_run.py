"""``mamori agent run`` as IT installs it (agent.toml ``camera``, a signed policy with ``[onlooker]``): the composition
root starts the guard, a second face covers the customer window, and OpenCV lives only in the guard process —
the agent process maps none of its libraries (issue 16 keeps the agent's memory small)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.config import toml_string
from benchmarks.agent_lab import AgentLab
from tests.agent.onlooker import video
from tests.harness.xdesktop import Box, XDesktop, wait_for

pytestmark = pytest.mark.slow

POLICY = """
schema = 1
id = "onlooker-run"
version = 1

[presence]
warn_after = "1h"
protect_after = "2h"
lock_after = "3h"
hotkey = ""

[onlooker]
mode = "cover"

[[customer_apps]]
name = "ledger"
processes = ["excel"]
"""


def maps(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text(encoding="utf-8", errors="replace")


def opencv_mapped(pid: int) -> bool:
    text = maps(pid)
    return "/cv2/" in text or "opencv_python_headless.libs" in text


@pytest.fixture
def lab(xdesktop: XDesktop, tmp_path: Path) -> Iterator[AgentLab]:
    clip = video.write_video(tmp_path / "camera.avi", [(1, 3.0), (2, 60.0)])
    made = AgentLab.create(xdesktop, POLICY, enrolled=False, tray=False)
    with made.config.open("a", encoding="utf-8") as config:
        config.write(f"camera = {toml_string(clip)}\n")
    yield made
    made.stop()


def covered(desk: XDesktop, box: Box) -> bool:
    return any(b == box for b in desk.override_redirect_windows())


def test_mamori_agent_run_covers_on_a_second_face_and_keeps_opencv_out_of_the_agent(
    xdesktop: XDesktop, lab: AgentLab
) -> None:
    ledger = xdesktop.open_window("Ledger", text="03-1234-5678", process="excel", x=40, y=120)
    lab.start()
    lab.wait_ready(1)
    status = wait_for(
        lambda: (s := lab.status()).get("onlooker", {}).get("running") and s,
        timeout=40,
        what="the onlooker guard running",
    )
    assert status["onlooker"]["mode"] == "cover" and status["onlooker"]["source"] == "file"
    wait_for(lambda: covered(xdesktop, ledger.rect()), timeout=20, interval=0.05, what="covered")
    assert "onlooker" in lab.status()["cover_reasons"]

    guard = [p for p in _children(lab.agent_pid) if "agent.onlooker.process" in _cmdline(p)]
    assert len(guard) == 1, "one guard process, a child of the agent"
    assert opencv_mapped(guard[0])
    assert not opencv_mapped(lab.agent_pid), "OpenCV must not be loaded into the agent process"


def _children(pid: int) -> list[int]:
    import psutil

    return [c.pid for c in psutil.Process(pid).children(recursive=True)]


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
