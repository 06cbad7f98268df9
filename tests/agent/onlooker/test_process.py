"""The guard process (agent/onlooker/process.py) on real photographs: the detector's counts, the protocol it
speaks, no camera as a reported reason (never a crash), and nothing written to disk (strace)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.onlooker.process import count_faces, load_detector
from agent.onlooker.protocol import Faces, Ready, Unavailable, parse_event
from tests.agent.onlooker import video
from tests.agent.onlooker.trace import disk_writes, strace_wrap, traced_calls

ROOT = Path(__file__).resolve().parents[3]
GUARD = [sys.executable, "-m", "agent.onlooker.process"]
ENV = {"PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1", "PATH": "/usr/bin:/bin"}


def test_the_photographs_ship_inside_the_scikit_image_wheel() -> None:
    import skimage

    data = Path(skimage.__file__).parent / "data"
    assert (data / "astronaut.png").is_file() and (data / "lfw_subset.npy").is_file()
    assert (data / "coffee.png").is_file()


def test_the_face_model_ships_inside_the_opencv_wheel() -> None:
    import cv2

    assert (Path(cv2.data.haarcascades) / "haarcascade_frontalface_alt2.xml").is_file()
    assert not load_detector().empty()


def test_the_detector_counts_the_faces_of_real_photographs() -> None:
    from skimage import data

    detector = load_detector()
    assert [count_faces(detector, video.frame(n)) for n in (0, 1, 2)] == [0, 1, 2]
    # Photographs without a person hold no face.
    for photo in (data.coffee(), data.chelsea(), data.rocket(), data.camera()):
        assert count_faces(detector, photo[..., ::-1] if photo.ndim == 3 else photo) == 0
    # Other people of Labeled Faces in the Wild beside the worker: nearly always two.
    pairs = [count_faces(detector, video.frame(2, other=i)) for i in range(40)]
    assert pairs.count(2) >= 34, pairs


def run_guard(
    camera: str, seconds: float, fps: int = 5, wrap: list[str] | None = None, ops: list[str] | None = None
) -> tuple[list[str], int]:
    proc = subprocess.Popen(
        [*(wrap or []), *GUARD, "--camera", camera, "--fps", str(fps)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    assert proc.stdin is not None
    for op in ops or []:
        proc.stdin.write(op + "\n")
        proc.stdin.flush()
    deadline = time.monotonic() + seconds  # stdin stays open: its end would tell the guard to quit
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if proc.poll() is None:
        proc.stdin.write('{"op": "quit"}\n')
        proc.stdin.flush()
    out, _ = proc.communicate(timeout=20)
    return out.splitlines(), proc.returncode


def test_the_guard_plays_a_video_in_real_time_and_prints_only_counts(tmp_path: Path) -> None:
    clip = video.write_video(tmp_path / "clip.avi", [(1, 2.0), (2, 2.0)])
    lines, code = run_guard(str(clip), seconds=9.0)
    assert code == 0
    events = [parse_event(line) for line in lines]
    assert all(e is not None for e in events), lines  # nothing but protocol messages
    assert isinstance(events[0], Ready) and events[0].source == "file"
    started = events[0].started
    faces = [e for e in events if isinstance(e, Faces)]
    assert all(set(json.loads(line)) == {"event", "n", "t"} for line in lines[1:])
    early = [f.n for f in faces if f.t - started < 1.8]
    late = [f.n for f in faces if 2.2 < f.t - started < 3.8]
    assert early and set(early) == {1}, early
    assert late and set(late) == {2}, late
    # At 5 frames per second, about 5 counts a second.
    span = faces[-1].t - faces[0].t
    assert 3.5 <= (len(faces) - 1) / span <= 5.5


def test_a_rate_op_makes_the_guard_look_faster(tmp_path: Path) -> None:
    clip = video.write_video(tmp_path / "clip.avi", [(1, 4.0)])
    lines, _ = run_guard(str(clip), seconds=6.0, fps=1, ops=['{"op": "rate", "fps": 10}'])
    faces = [e for e in map(parse_event, lines) if isinstance(e, Faces)]
    span = faces[-1].t - faces[0].t
    assert (len(faces) - 1) / span >= 6, len(faces)


@pytest.mark.parametrize(
    ("camera", "reason"),
    [
        ("/dev/video97", "absent"),
        ("97", "absent"),
        ("/nonexistent/clip.avi", "absent"),
        # A device node that gives no picture, as a camera held by a meeting app does (OpenCV cannot start it
        # streaming); there is no real camera here to hold.
        ("/dev/null", "busy"),
    ],
)
def test_no_camera_is_a_reason_and_an_exit_code_not_a_crash(camera: str, reason: str) -> None:
    lines, code = run_guard(camera, seconds=20.0)
    assert code == 3
    assert len(lines) == 1
    event = parse_event(lines[0])
    assert isinstance(event, Unavailable) and event.reason == reason, lines


@pytest.mark.apps  # strace, from .ci/run: CI fails instead of skipping
def test_the_guard_writes_nothing_to_disk(tmp_path: Path) -> None:
    clip = video.write_video(tmp_path / "clip.avi", [(1, 1.5), (2, 1.5)])
    log = tmp_path / "strace.log"
    before = {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    lines, code = run_guard(str(clip), seconds=6.0, wrap=strace_wrap(log))
    assert code == 0
    faces = [e for e in map(parse_event, lines) if isinstance(e, Faces)]
    assert {f.n for f in faces} == {1, 2}  # it did look at both parts of the video
    assert traced_calls(log) > 100  # the trace saw the guard's opens and its writes to stdout
    assert "clip.avi" in log.read_text()  # and the video being read
    assert disk_writes(log) == []
    after = {p: p.stat().st_mtime_ns for p in tmp_path.iterdir() if p != log}
    assert after == {p: m for p, m in before.items()}  # no new or changed file beside the video


@pytest.mark.apps
def test_the_write_check_would_catch_a_write(tmp_path: Path) -> None:
    log = tmp_path / "strace.log"
    target = tmp_path / "frame.png"
    subprocess.run(
        [*strace_wrap(log), sys.executable, "-c", f"open({str(target)!r}, 'wb').write(b'x')"],
        check=True,
        env=ENV,
    )
    writes = disk_writes(log)
    assert any("frame.png" in w for w in writes), writes
