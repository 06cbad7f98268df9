"""The onlooker guard process: camera frames in, face counts out (``python -m agent.onlooker.process``).

It runs apart from the agent so that OpenCV, its frames and their memory never live in the agent process
(issue 16 keeps the agent under 40 MB); the supervisor (agent/onlooker/guard.py) starts and restarts it and
reads its stdout. Protocol: agent/onlooker/protocol.py. What it does with a frame, and nothing more:

1. reads it from the camera into memory (or, for tests and demos, from a video file played in real time);
2. makes it grey and at most :data:`DETECT_WIDTH` pixels wide, and counts the faces OpenCV's frontal-face Haar
   cascade finds (the model ships inside the opencv-python-headless wheel: nothing is downloaded);
3. prints the count and drops the frame. No frame, face crop, face position or feature is written, kept past
   the next frame, or sent; the process opens no file for writing (tests/agent/onlooker checks it under strace).

Usage: ``python -m agent.onlooker.process --camera auto|/dev/video0|0|FILE --fps 2``.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import threading
import time
from typing import Any

from agent.onlooker.protocol import dumps, parse_op

# Frames are made at most this wide before detection: the cascade's cost grows with the pixel count, and a face
# 1.4 m from a 70°-wide laptop camera is still MIN_FACE pixels wide (docs/onlooker.md, "Limits").
DETECT_WIDTH = 320
CASCADE = "haarcascade_frontalface_alt2.xml"  # docs/onlooker.md, "Why this detector" (measured)
MIN_FACE = 24  # pixels at DETECT_WIDTH (a 15 cm face at 1.4 m); smaller costs more CPU (measured)
OPEN_TRIES = 3  # a device that gives no frame this many times in a row counts as held by another app


class Unavailable(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def load_detector() -> Any:
    import cv2

    cv2.setNumThreads(1)  # one core at most: the CPU budget is per core (docs/onlooker.md)
    path = os.path.join(cv2.data.haarcascades, CASCADE)  # type: ignore[attr-defined]
    detector = cv2.CascadeClassifier(path)
    if detector.empty():
        raise Unavailable("no_detector", f"the face model {CASCADE} is missing from opencv-python-headless")
    return detector


def count_faces(detector: Any, frame: Any) -> int:
    """Faces in one BGR or grey frame (a numpy array)."""
    import cv2

    grey = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    height, width = grey.shape[:2]
    if width > DETECT_WIDTH:
        grey = cv2.resize(
            grey, (DETECT_WIDTH, max(1, height * DETECT_WIDTH // width)), interpolation=cv2.INTER_AREA
        )
    grey = cv2.equalizeHist(grey)
    faces = detector.detectMultiScale(grey, scaleFactor=1.25, minNeighbors=4, minSize=(MIN_FACE, MIN_FACE))
    return len(faces)


class VideoFile:
    """A video file played in real time from the first frame read, looping (tests and demos)."""

    kind = "file"

    def __init__(self, path: str) -> None:
        import cv2

        self._cv2 = cv2
        self._cap = cv2.VideoCapture(path)
        if not self._cap.isOpened():
            raise Unavailable("absent", "the video file cannot be opened")
        self._fps = self._cap.get(cv2.CAP_PROP_FPS) or 10.0
        self._frames = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT)) or 0
        self._pos = 0  # index of the next frame the capture returns
        self.started: float | None = None

    def read(self) -> Any:
        now = time.monotonic()
        if self.started is None:
            self.started = now
        target = int((now - self.started) * self._fps)
        if self._frames:
            target %= self._frames
        if target < self._pos or target - self._pos > 8:
            self._cap.set(self._cv2.CAP_PROP_POS_FRAMES, target)
            self._pos = target
        while self._pos < target:
            self._cap.grab()
            self._pos += 1
        ok, frame = self._cap.read()
        self._pos += 1
        if not ok:
            raise Unavailable("absent", "the video file gives no frame")
        return frame

    def close(self) -> None:
        self._cap.release()


class Camera:
    """A camera device. A device that exists but gives no frame is held by another app (a meeting app)."""

    kind = "device"

    def __init__(self, spec: str) -> None:
        import cv2

        self.started: float | None = None
        if spec.isdigit():
            target: int | str = int(spec)
            # Linux numbers cameras by their /dev/videoN node; elsewhere only opening one tells.
            exists = sys.platform != "linux" or os.path.exists(f"/dev/video{spec}")
        else:
            target, exists = spec, os.path.exists(spec)
        if not exists:
            raise Unavailable("absent", f"no camera device {spec}")
        backend = cv2.CAP_V4L2 if sys.platform == "linux" else cv2.CAP_ANY
        self._cap = cv2.VideoCapture(target, backend)
        if self._cap.isOpened():
            self._cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the newest frame, not one queued seconds ago
        for _ in range(OPEN_TRIES):
            if self._cap.isOpened() and self._cap.grab():
                return
            time.sleep(0.2)
        self._cap.release()
        raise Unavailable("busy", f"the camera {spec} gives no picture: another app may be using it")

    def read(self) -> Any:
        ok, frame = self._cap.read()
        if not ok:
            raise Unavailable("busy", "the camera stopped giving pictures: another app may be using it")
        if self.started is None:
            self.started = time.monotonic()
        return frame

    def close(self) -> None:
        self._cap.release()


def open_source(spec: str) -> VideoFile | Camera:
    """``auto``: the first camera that gives a picture; a device path or index; else a video file."""
    if spec == "auto":
        if sys.platform != "linux":
            return Camera("0")
        devices = sorted(glob.glob("/dev/video*"), key=lambda p: (len(p), p))
        if not devices:
            raise Unavailable("absent", "no camera (/dev/video*) on this PC")
        busy: Unavailable | None = None
        for device in devices:
            try:
                return Camera(device)
            except Unavailable as err:
                busy = err
        assert busy is not None
        raise busy
    if spec.isdigit() or spec.startswith("/dev/"):
        return Camera(spec)
    if not os.path.isfile(spec):
        raise Unavailable("absent", "the camera video file does not exist")
    return VideoFile(spec)


def _emit(message: dict[str, Any]) -> None:
    sys.stdout.write(dumps(message))
    sys.stdout.flush()


def run(spec: str, fps: int) -> int:
    rate = [max(1, fps)]
    quit_ = threading.Event()
    wake = threading.Event()  # a new rate or quit: stop waiting for the next frame at the old rate

    def read_ops() -> None:
        for line in sys.stdin:  # EOF: the agent is gone
            op = parse_op(line)
            if op is None:
                continue
            if op["op"] == "quit":
                break
            rate[0] = op["fps"]
            wake.set()
        quit_.set()
        wake.set()

    try:
        detector = load_detector()
        source = open_source(spec)
    except Unavailable as err:
        _emit({"event": "unavailable", "reason": err.reason, "detail": err.detail})
        return 3
    threading.Thread(target=read_ops, name="ops", daemon=True).start()
    try:
        frame = source.read()
        assert source.started is not None
        _emit({"event": "ready", "source": source.kind, "started": source.started})
        while not quit_.is_set():
            taken = time.monotonic()
            n = count_faces(detector, frame)
            del frame  # nothing of the frame outlives its count
            _emit({"event": "faces", "n": n, "t": taken})
            while not quit_.is_set():  # the next frame is due 1/rate after this one was taken
                left = taken + 1.0 / rate[0] - time.monotonic()
                if left <= 0:
                    break
                wake.wait(left)
                wake.clear()
            if quit_.is_set():
                break
            frame = source.read()
    except Unavailable as err:
        _emit({"event": "unavailable", "reason": err.reason, "detail": err.detail})
        return 3
    except BrokenPipeError:
        return 0
    finally:
        source.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent.onlooker.process")
    parser.add_argument("--camera", required=True)
    parser.add_argument("--fps", type=int, default=2)
    args = parser.parse_args(argv)
    return run(args.camera, args.fps)


if __name__ == "__main__":
    sys.exit(main())
