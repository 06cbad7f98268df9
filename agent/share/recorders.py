"""Command-line recorders known by what they do, not by their name (issue 11). Pure: a name and argv in.

ffmpeg, GStreamer's gst-launch and VLC record the screen only with a screen-grab input; the same programs
transcode files all day, so their name alone is no share. :func:`grabs_screen` reads the argument vector of
these few programs (and of no other process) on this PC only: it is never stored, logged or reported (SPEC.md,
Events: command lines never leave the PC). A recorder that grabs the screen is listed to the share signatures
under the name ``screen-grab:<program>`` (:func:`process_key`), which the built-in signatures match; a plain
ffmpeg transcode stays ``ffmpeg`` and matches nothing.

Screen-grab inputs recognised:

- ffmpeg / avconv: ``-f x11grab | kmsgrab | fbdev | gdigrab | avfoundation`` (avfoundation also opens cameras:
  counted as a grab, fail closed) and the lavfi sources ``ddagrab`` / ``gfxcapture`` (``-f lavfi -i ddagrab``).
- gst-launch-1.0: the elements ``ximagesrc``, ``pipewiresrc`` (portal screencasts; also used for cameras:
  counted, fail closed), ``d3d11screencapturesrc``, ``d3d12screencapturesrc``, ``dx9screencapsrc``,
  ``gdiscreencapsrc``, ``avfvideosrc capture-screen=true``.
- vlc / cvlc: an MRL ``screen://``.
- wf-recorder, wl-screenrec, gpu-screen-recorder only record screens: their name is enough (signatures.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from policy.model import ShareSignature

SCREEN_GRAB = "screen-grab:"

FFMPEG = frozenset({"ffmpeg", "avconv"})
GSTREAMER = frozenset({"gst-launch-1.0", "gst-launch"})
VLC = frozenset({"vlc", "cvlc"})
# The programs whose argv is read; every other process is known by its name only.
ARGV_RECORDERS = FFMPEG | GSTREAMER | VLC

FFMPEG_GRAB_FORMATS = frozenset({"x11grab", "kmsgrab", "fbdev", "gdigrab", "avfoundation"})
FFMPEG_GRAB_SOURCES = ("ddagrab", "gfxcapture")
GST_GRAB_ELEMENTS = frozenset(
    {"ximagesrc", "pipewiresrc", "d3d11screencapturesrc", "d3d12screencapturesrc", "dx9screencapsrc",
     "gdiscreencapsrc"}
)  # fmt: skip


def _program(name: str) -> str:
    lowered = name.strip().lower()
    return lowered[:-4] if lowered.endswith(".exe") else lowered


def reads_argv(name: str) -> bool:
    """Whether a process of this name is one whose arguments say if it records the screen."""
    return _program(name) in ARGV_RECORDERS


def grabs_screen(name: str, argv: Sequence[str]) -> bool:
    """Whether ``name`` run with ``argv`` (including argv[0]) captures the screen."""
    program = _program(name)
    args = [a.strip() for a in argv[1:]]
    if program in FFMPEG:
        for i, arg in enumerate(args):
            if arg == "-f" and i + 1 < len(args) and args[i + 1].lower() in FFMPEG_GRAB_FORMATS:
                return True
            lowered = arg.lower()
            if any(lowered.startswith(s) for s in FFMPEG_GRAB_SOURCES):
                return True
        return False
    if program in GSTREAMER:
        tokens = [t for a in args for t in a.replace("!", " ! ").split()]
        if any(t.lower() in GST_GRAB_ELEMENTS for t in tokens):
            return True
        return any(t.lower() == "avfvideosrc" for t in tokens) and any(
            t.lower().replace('"', "") in ("capture-screen=true", "capture-screen=1") for t in tokens
        )
    if program in VLC:
        return any(a.lower().startswith("screen://") for a in args)
    return False


def process_key(normalised_name: str, screen_grab: bool) -> str:
    """The name a process is matched by in the share signatures."""
    return f"{SCREEN_GRAB}{normalised_name}" if screen_grab else normalised_name


def _signature(app: str, programs: frozenset[str]) -> ShareSignature:
    return ShareSignature(app=app, processes=tuple(sorted(process_key(p, True) for p in programs)))


# The signatures of the argv recorders, on every OS: they match only ``screen-grab:<program>``.
COMMAND_LINE: tuple[ShareSignature, ...] = (
    _signature("ffmpeg", FFMPEG),
    _signature("GStreamer", GSTREAMER),
    _signature("VLC", VLC),
)
