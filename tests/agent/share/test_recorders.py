"""Command-line recorders known by their screen-grab inputs (agent/share/recorders.py); the real ffmpeg
recording and transcode under Xvfb are in tests/agent/share/test_real_recorders.py."""

from __future__ import annotations

import pytest

from agent.share.detect import ProcessInfo, detect
from agent.share.recorders import grabs_screen, reads_argv
from agent.share.signatures import builtin_signatures


@pytest.mark.parametrize(
    ("name", "argv"),
    [
        ("ffmpeg", ["ffmpeg", "-video_size", "1280x800", "-f", "x11grab", "-i", ":0.0", "out.mp4"]),
        ("ffmpeg", ["ffmpeg", "-device", "/dev/dri/card0", "-f", "kmsgrab", "-i", "-", "o.mkv"]),
        ("ffmpeg.exe", ["ffmpeg.exe", "-f", "gdigrab", "-i", "desktop", "o.mp4"]),
        ("ffmpeg.exe", ["ffmpeg.exe", "-f", "lavfi", "-i", "ddagrab=output_idx=0", "o.mkv"]),
        ("ffmpeg", ["ffmpeg", "-f", "avfoundation", "-i", "1:0", "o.mov"]),
        (
            "gst-launch-1.0",
            ["gst-launch-1.0", "ximagesrc", "!", "videoconvert", "!", "x264enc", "!", "fakesink"],
        ),
        ("gst-launch-1.0", ["gst-launch-1.0", "ximagesrc!videoconvert!fakesink"]),
        ("gst-launch-1.0", ["gst-launch-1.0", "avfvideosrc", "capture-screen=true", "!", "fakesink"]),
        ("vlc", ["vlc", "screen://", "--sout", "file/ts:o.ts"]),
        ("cvlc", ["cvlc", "-I", "dummy", "screen://", ":screen-fps=10"]),
    ],
)
def test_screen_grab_inputs_are_recognised(name: str, argv: list[str]) -> None:
    assert reads_argv(name)
    assert grabs_screen(name, argv)


@pytest.mark.parametrize(
    ("name", "argv"),
    [
        ("ffmpeg", ["ffmpeg", "-i", "meeting.mkv", "-c:v", "libx264", "meeting.mp4"]),
        ("ffmpeg", ["ffmpeg", "-f", "lavfi", "-i", "testsrc", "-f", "null", "-"]),
        ("ffmpeg", ["ffmpeg", "-i", "x11grab.mp4", "out.webm"]),  # a file named like an input format
        (
            "gst-launch-1.0",
            ["gst-launch-1.0", "filesrc", "location=a.mp4", "!", "decodebin", "!", "fakesink"],
        ),
        ("gst-launch-1.0", ["gst-launch-1.0", "avfvideosrc", "!", "fakesink"]),  # a camera
        ("vlc", ["vlc", "holiday.mp4"]),
    ],
)
def test_transcodes_and_playback_are_not_recordings(name: str, argv: list[str]) -> None:
    assert not grabs_screen(name, argv)


def test_other_programs_are_never_asked_for_their_arguments() -> None:
    assert not reads_argv("bash") and not reads_argv("chromium") and not reads_argv("ffprobe")
    assert not grabs_screen("bash", ["bash", "-c", "ffmpeg -f x11grab -i :0 o.mp4"])


def test_linux_signatures_fire_on_a_screen_grab_not_on_a_transcode() -> None:
    sigs = builtin_signatures("linux")
    recording = [ProcessInfo(pid=10, name="ffmpeg", screen_grab=True)]
    transcode = [ProcessInfo(pid=11, name="ffmpeg")]
    assert detect([], recording, sigs).apps == ("ffmpeg",)
    assert not detect([], transcode, sigs).active
    assert detect([], [ProcessInfo(pid=12, name="wf-recorder")], sigs).apps == ("wf-recorder",)
    assert detect([], [ProcessInfo(pid=13, name="vlc", screen_grab=True)], sigs).apps == ("VLC",)


@pytest.mark.parametrize(
    ("os_family", "name", "argv"),
    [
        (
            "windows",
            "ffmpeg.exe",
            ["ffmpeg.exe", "-f", "gdigrab", "-framerate", "10", "-i", "desktop", "o.mp4"],
        ),
        ("windows", "ffmpeg.exe", ["ffmpeg.exe", "-f", "lavfi", "-i", "ddagrab", "o.mkv"]),
        ("windows", "vlc.exe", ["vlc.exe", "screen://", "--sout", "file/ts:o.ts"]),
        ("windows", "gst-launch-1.0.exe", ["gst-launch-1.0.exe", "d3d11screencapturesrc", "!", "fakesink"]),
        ("macos", "ffmpeg", ["ffmpeg", "-f", "avfoundation", "-i", "Capture screen 0", "o.mov"]),
        (
            "macos",
            "gst-launch-1.0",
            ["gst-launch-1.0", "avfvideosrc", "capture-screen=true", "!", "fakesink"],
        ),
    ],
)
def test_windows_and_macos_signatures_fire_on_a_screen_grab_not_on_a_transcode(
    os_family: str, name: str, argv: list[str]
) -> None:
    sigs = builtin_signatures(os_family)  # type: ignore[arg-type]
    grab = grabs_screen(name, argv)
    assert grab
    assert detect([], [ProcessInfo(pid=10, name=name, screen_grab=grab)], sigs).active
    transcode = ["ffmpeg.exe" if os_family == "windows" else "ffmpeg", "-i", "in.mov", "out.mp4"]
    assert not grabs_screen(transcode[0], transcode)
    assert not detect([], [ProcessInfo(pid=11, name=transcode[0])], sigs).active
