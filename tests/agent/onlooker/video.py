"""Camera frames and video files made from real photographs that ship inside scikit-image's wheel.

``skimage.data.astronaut()`` (Eileen Collins, NASA) and ``skimage.data.lfw_subset()`` (faces from Labeled
Faces in the Wild) are files of the installed package (skimage/data/astronaut.png, lfw_subset.npy): no pooch
download. A frame is 640x480 like a laptop camera's: the worker is the astronaut's head; an onlooker is a
second real face beside it; "nobody" is the coffee photograph.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

WIDTH, HEIGHT = 640, 480
FPS = 10


def _bgr(rgb: Any) -> Any:
    return np.ascontiguousarray(rgb[:, :, ::-1])


def _fit(image: Any, width: int, height: int) -> Any:
    import cv2

    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def worker_face() -> Any:
    """The astronaut's head and shoulders (a crop of the photograph), BGR."""
    from skimage import data

    return _bgr(data.astronaut())[0:300, 110:370]


def second_face(index: int = 0) -> Any:
    """Another person's face from the LFW subset (25x25 grey), scaled up and padded like a face in a room."""
    import cv2
    from skimage import data

    face = (data.lfw_subset()[index] * 255).astype(np.uint8)
    face = cv2.resize(face, (180, 180), interpolation=cv2.INTER_CUBIC)
    face = cv2.copyMakeBorder(face, 60, 60, 40, 40, cv2.BORDER_CONSTANT, value=110)
    return cv2.cvtColor(face, cv2.COLOR_GRAY2BGR)


def frame(faces: int, other: int = 0) -> Any:
    """A 640x480 BGR camera frame with 0, 1 or 2 real faces (``other``: which LFW person is the second)."""
    from skimage import data

    canvas = np.full((HEIGHT, WIDTH, 3), 90, dtype=np.uint8)
    if faces == 0:
        return _fit(_bgr(data.coffee()), WIDTH, HEIGHT)
    canvas[:, :320] = _fit(worker_face(), 320, HEIGHT)
    if faces >= 2:
        canvas[:, 320:] = _fit(second_face(other), 320, HEIGHT)
    return canvas


def write_video(path: Path, segments: Sequence[tuple[int, float]], fps: int = FPS) -> Path:
    """An MJPEG AVI of ``segments`` [(faces, seconds), ...] at ``fps`` (OpenCV's own writer, no ffmpeg)."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (WIDTH, HEIGHT))
    assert writer.isOpened(), "OpenCV cannot write MJPEG here"
    for faces, seconds in segments:
        image = frame(faces)
        for _ in range(round(seconds * fps)):
            writer.write(image)
    writer.release()
    return path
