"""The onlooker guard in the agent (agent/onlooker/guard.py) over the real guard process and real videos, with the
agent around it replaced by plain recorders: report mode, a missing or unset camera, a dying guard process,
a policy that turns it off."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from agent.onlooker.guard import OnlookerGuard
from agent.report.stream import EventStream, Kind
from core.clock import SystemClock
from policy.model import Onlooker, Policy
from tests.agent.onlooker import video
from tests.harness.xdesktop import wait_for

pytestmark = pytest.mark.slow


@dataclass
class Recorder:
    policy: Policy | None
    reasons: list[tuple[str, bool, str | None]] = field(default_factory=list)
    degraded: list[tuple[str, str]] = field(default_factory=list)

    def set_cover_reason(self, source: str, active: bool, key: str | None = None) -> None:
        self.reasons.append((source, active, key))

    def report_degraded(self, capability: str, reason: str, detail: str = "") -> None:
        self.degraded.append((capability, reason))


def policy(**onlooker: object) -> Policy:
    return Policy(schema=1, id="t", version=1, onlooker=replace(Onlooker(), **onlooker))  # type: ignore[arg-type]


@dataclass
class Running:
    guard: OnlookerGuard
    host: Recorder
    stream: EventStream

    def events(self, kind: Kind) -> list[dict[str, object]]:
        return [dict(e.data) for e in self.stream.recent() if e.kind is kind]


@pytest.fixture
def start() -> Iterator[object]:
    stops: list[tuple[threading.Event, threading.Thread]] = []

    def run(camera: str | None, pol: Policy | None, retry: float = 30.0, **kwargs: object) -> Running:
        host = Recorder(pol)
        stream = EventStream()
        guard = OnlookerGuard(
            lambda: host.policy,
            host.set_cover_reason,
            host.report_degraded,
            stream,
            SystemClock(),
            camera=camera,
            retry=retry,
            **kwargs,  # type: ignore[arg-type]
        )
        stop = threading.Event()
        thread = threading.Thread(target=guard.run, args=(stop,), daemon=True)
        thread.start()
        stops.append((stop, thread))
        return Running(guard, host, stream)

    yield run
    for stop, thread in stops:
        stop.set()
        thread.join(10)


def test_report_mode_says_how_many_faces_and_covers_nothing(start, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    clip = video.write_video(tmp_path / "c.avi", [(1, 2.0), (2, 3.0), (1, 30.0)])
    run = start(str(clip), policy(mode="report", clear_after=1.0))
    wait_for(lambda: run.events(Kind.ONLOOKER_CLEARED), timeout=30, what="onlooker seen and cleared")
    assert run.events(Kind.ONLOOKER_STARTED) == [{"mode": "report", "frame_rate": 2}]
    assert run.events(Kind.ONLOOKER_DETECTED) == [{"faces": 2, "allowed": 1, "mode": "report"}]
    assert run.host.reasons == []  # report only: no cover reason, ever
    assert run.guard.status()["onlooker"] is False


def test_faces_allowed_two_lets_two_people_work_together(start, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    clip = video.write_video(tmp_path / "c.avi", [(2, 30.0)])
    run = start(str(clip), policy(mode="cover", faces_allowed=2))
    wait_for(lambda: run.guard.status()["faces"] == 2, timeout=30, what="two faces counted")
    time.sleep(1.5)
    assert run.events(Kind.ONLOOKER_DETECTED) == [] and run.host.reasons == []


def test_a_missing_camera_is_degraded_and_tried_again(start) -> None:  # type: ignore[no-untyped-def]
    run = start("/dev/video97", policy(mode="cover"), retry=1.0)
    wait_for(lambda: ("camera", "absent") in run.host.degraded, timeout=30, what="degraded camera")
    status = run.guard.status()
    assert status["unavailable"] == "absent" and status["running"] is False
    # Tried again after `retry`: the guard process is started anew (and says absent again).
    first = len([d for d in run.host.degraded if d == ("camera", "absent")])
    assert first == 1  # the guard reports it once per try; Degraded itself says it once
    wait_for(lambda: run.guard.pid is not None, timeout=20, interval=0.01, what="a second try")
    assert run.host.reasons == []


def test_a_policy_without_a_camera_on_this_pc_is_degraded_not_configured(start) -> None:  # type: ignore[no-untyped-def]
    run = start(None, policy(mode="cover"))
    wait_for(lambda: run.host.degraded, timeout=5, what="degraded")
    assert run.host.degraded[0] == ("camera", "not_configured")
    assert run.guard.pid is None


def test_a_guard_process_that_dies_keeps_the_cover_until_a_picture_clears_it(start, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    clip = video.write_video(tmp_path / "c.avi", [(2, 60.0)])
    run = start(str(clip), policy(mode="cover", clear_after=30.0))
    wait_for(lambda: run.host.reasons == [("onlooker", True, "cover.onlooker")], timeout=30, what="cover")
    pid = run.guard.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    # No picture: the onlooker may still be there, so the cover holds (fail closed) and says why; the new
    # guard sees the two faces again and the cover is the onlooker's again. Nothing was lifted in between.
    wait_for(lambda: ("onlooker", True, "cover.onlooker_blind") in run.host.reasons, timeout=10, what="held")
    wait_for(
        lambda: run.host.reasons[-1] == ("onlooker", True, "cover.onlooker"), timeout=30, what="seen again"
    )
    assert ("onlooker", False, None) not in run.host.reasons
    assert run.events(Kind.ONLOOKER_CLEARED) == [] and len(run.events(Kind.ONLOOKER_DETECTED)) == 1
    assert run.guard.pid not in (None, pid) and run.guard.status()["blind"] is False
    assert len(run.events(Kind.ONLOOKER_STARTED)) == 1  # the worker was told once


def test_a_camera_that_goes_away_holds_the_cover_until_it_sees_only_the_worker(start, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    camera = tmp_path / "camera.avi"
    video.write_video(camera, [(2, 60.0)])
    run = start(str(camera), policy(mode="cover", clear_after=1.0), retry=1.0)
    wait_for(lambda: run.host.reasons == [("onlooker", True, "cover.onlooker")], timeout=30, what="cover")
    pid = run.guard.pid
    assert pid is not None
    camera.rename(tmp_path / "unplugged.avi")  # the camera is unplugged...
    os.kill(pid, signal.SIGKILL)  # ...and its stream ends
    wait_for(lambda: ("camera", "absent") in run.host.degraded, timeout=20, what="camera absent")
    status = run.guard.status()
    assert status["blind"] is True and status["onlooker"] is True and status["running"] is False
    assert run.host.reasons[-1] == ("onlooker", True, "cover.onlooker_blind")
    assert run.events(Kind.ONLOOKER_CLEARED) == []
    # The camera comes back and sees one face: cleared after clear_after, as any onlooker.
    video.write_video(camera, [(1, 60.0)])
    wait_for(lambda: run.events(Kind.ONLOOKER_CLEARED), timeout=30, what="cleared by a picture")
    assert run.host.reasons[-1] == ("onlooker", False, None)
    assert run.events(Kind.ONLOOKER_CLEARED)[0]["faces"] == 2
    assert run.guard.status()["blind"] is False


def test_report_mode_clears_an_onlooker_when_the_camera_stops(start, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    clip = video.write_video(tmp_path / "c.avi", [(2, 60.0)])
    run = start(str(clip), policy(mode="report", clear_after=30.0))
    wait_for(lambda: run.events(Kind.ONLOOKER_DETECTED), timeout=30, what="detected")
    pid = run.guard.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: run.events(Kind.ONLOOKER_CLEARED), timeout=10, what="cleared")  # nothing more is known
    assert run.host.reasons == [] and run.guard.status()["blind"] is False


def test_turning_the_policy_off_stops_the_guard_and_lifts_the_cover(start, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    clip = video.write_video(tmp_path / "c.avi", [(2, 60.0)])
    run = start(str(clip), policy(mode="cover"))
    wait_for(lambda: run.host.reasons == [("onlooker", True, "cover.onlooker")], timeout=30, what="cover")
    pid = run.guard.pid
    assert pid is not None
    run.host.policy = policy(mode="off")
    wait_for(lambda: run.guard.pid is None, timeout=10, what="guard stopped")
    assert run.host.reasons[-1] == ("onlooker", False, None)
    assert run.events(Kind.ONLOOKER_CLEARED)[-1]["faces"] == 2
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), timeout=5, what="process gone")
    wait_for(lambda: run.guard.status()["mode"] == "off", timeout=5, what="status off")


def test_a_guard_that_keeps_crashing_is_degraded_not_restarted_in_a_loop(start, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    clip = video.write_video(tmp_path / "c.avi", [(1, 5.0)])
    crash = [
        sys.executable,
        "-c",
        "import sys; sys.exit(1)",
    ]  # a guard that dies at once, as a broken install
    run = start(str(clip), policy(mode="cover"), command=crash)
    wait_for(lambda: ("camera", "guard_failed") in run.host.degraded, timeout=20, what="guard_failed")
    assert run.guard.status()["unavailable"] == "guard_failed"
    time.sleep(2.0)
    assert run.guard.pid is None  # waits RETRY (30 s) before the next try, no restart loop
    assert run.host.degraded.count(("camera", "guard_failed")) == 1
