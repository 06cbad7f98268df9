"""Screencasts on GNOME/KDE/wlroots Wayland sessions, read from PipeWire with ``pw-dump``.

On Wayland no app can read the screen by itself: every share or recording (browser, Zoom, OBS, GNOME's
built-in recorder) asks the compositor through xdg-desktop-portal, and the compositor publishes the screen
as a PipeWire video source node. A screencast node whose state is "running" has a consumer, so a capture is
live. ``pw-dump`` prints the whole graph as JSON; :func:`parse_pw_dump` is pure and tested over captured
dumps, :class:`PipeWireProbe` runs the tool.

On X11 apps read the screen directly, so this probe is not used there (the window/process signatures are).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from agent.share.detect import PIPEWIRE_APP, CaptureStream

logger = logging.getLogger(__name__)

# Screencast source nodes by compositor: mutter (GNOME) "meta-screen-cast-src"/"gnome-shell-screencast",
# xdg-desktop-portal-wlr "xdpw-stream", KWin "kwin-screencast"/"screen_cast". Cameras are also
# "Video/Source" nodes (v4l2/libcamera); they do not match these names.
_SCREENCAST_NAME = re.compile(r"screen[-_ ]?cast|xdpw|meta-screen-cast", re.IGNORECASE)
_VIDEO_CLASSES = {"Video/Source", "Stream/Output/Video"}

Runner = Callable[[], str | None]

# Consumers are named by the app they are (events carry app names from a closed vocabulary, never a string
# taken from another process): the first matching pattern wins, anything else is "Screencast".
_CONSUMER_APPS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), app)
    for pattern, app in (
        (r"chrom|msedge|edge|brave|vivaldi|opera|firefox|librewolf|webrtc", "Browser"),
        (r"\bobs\b|obs[ -]studio", "OBS Studio"),
        (r"zoom", "Zoom"),
        (r"teams", "Microsoft Teams"),
        (r"webex", "Webex"),
        (r"kooha", "Kooha"),
        (r"gnome-shell|gnome-screencast", "GNOME Screencast"),
    )
)


def _props(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    info = obj.get("info")
    if not isinstance(info, Mapping):
        return {}
    props = info.get("props")
    return props if isinstance(props, Mapping) else {}


def _is_screencast(props: Mapping[str, Any]) -> bool:
    if props.get("media.class") not in _VIDEO_CLASSES:
        return False
    names = " ".join(str(props.get(k, "")) for k in ("node.name", "media.name", "node.description"))
    return bool(_SCREENCAST_NAME.search(names))


def _consumer_name(props: Mapping[str, Any], clients: Mapping[int, Mapping[str, Any]]) -> str:
    name = props.get("application.name") or props.get("application.process.binary")
    if not name:
        client = clients.get(props.get("client.id", -1), {})
        name = client.get("application.name") or client.get("application.process.binary")
    if not name:
        name = props.get("node.name", "")
    return str(name)


def consumer_app_names() -> frozenset[str]:
    return frozenset(app for _, app in _CONSUMER_APPS)


def _app_for(consumer: str) -> str:
    return next((app for pattern, app in _CONSUMER_APPS if pattern.search(consumer)), PIPEWIRE_APP)


def parse_pw_dump(text: str) -> list[CaptureStream]:
    """Live screencasts in a ``pw-dump`` JSON document, one per consumer app (a known app name, else
    "Screencast").

    Raises ValueError when the text is not a pw-dump document.
    """
    try:
        objects = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"pw-dump output is not JSON: {err.msg}") from err
    if not isinstance(objects, list):
        raise ValueError("pw-dump output is not a JSON array")
    nodes: dict[int, Mapping[str, Any]] = {}
    clients: dict[int, Mapping[str, Any]] = {}
    links: list[Mapping[str, Any]] = []
    for obj in objects:
        if not isinstance(obj, Mapping) or not isinstance(obj.get("id"), int):
            continue
        kind = obj.get("type", "")
        if kind == "PipeWire:Interface:Node":
            nodes[obj["id"]] = obj
        elif kind == "PipeWire:Interface:Client":
            clients[obj["id"]] = _props(obj)
        elif kind == "PipeWire:Interface:Link":
            info = obj.get("info")
            if isinstance(info, Mapping):
                links.append(info)
    streams: list[CaptureStream] = []
    for node_id, node in nodes.items():
        props = _props(node)
        info = node.get("info")
        state = info.get("state") if isinstance(info, Mapping) else None
        if not _is_screencast(props) or state != "running":
            continue
        consumers = [
            _consumer_name(_props(nodes[link["input-node-id"]]), clients)
            for link in links
            if link.get("output-node-id") == node_id and link.get("input-node-id") in nodes
        ]
        apps = [_app_for(c) for c in consumers if c] or [PIPEWIRE_APP]
        streams.extend(CaptureStream(app=app) for app in dict.fromkeys(apps))
    return list(dict.fromkeys(streams))


def _run_pw_dump() -> str | None:
    try:
        done = subprocess.run(
            ["pw-dump", "--no-colors"], capture_output=True, text=True, timeout=2.0, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        logger.warning("pw-dump could not be run: %s", type(err).__name__)
        return None
    if done.returncode != 0:
        logger.warning("pw-dump failed with exit status %d", done.returncode)
        return None
    return done.stdout


class PipeWireProbe:
    """Reads live screencasts; returns ``None`` (unknown) when PipeWire cannot be read."""

    def __init__(self, runner: Runner = _run_pw_dump) -> None:
        self._runner = runner

    def __call__(self) -> Sequence[CaptureStream] | None:
        text = self._runner()
        if text is None:
            return None
        try:
            return parse_pw_dump(text)
        except ValueError as err:
            logger.warning("pw-dump output not understood: %s", err)
            return None


def _unreadable() -> Sequence[CaptureStream] | None:
    return None


def default_capture_probe(
    environ: Mapping[str, str] | None = None, which: Callable[[str], str | None] = shutil.which
) -> Callable[[], Sequence[CaptureStream] | None] | None:
    """The probe for this session: PipeWire on Wayland, nothing on X11/Windows/macOS.

    On a Wayland session without ``pw-dump`` the probe always answers "unknown", so the state of portal
    screencasts is reported as unknown rather than as "not sharing".
    """
    env = os.environ if environ is None else environ
    wayland = env.get("XDG_SESSION_TYPE", "").lower() == "wayland" or bool(env.get("WAYLAND_DISPLAY"))
    if not wayland:
        return None
    if which("pw-dump") is None:
        logger.warning(
            "Wayland session without pw-dump: screencasts cannot be detected; install pipewire-bin"
        )
        return _unreadable
    return PipeWireProbe()
