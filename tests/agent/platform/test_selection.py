from __future__ import annotations

import subprocess
import sys

import pytest

from agent.platform import ENV_BACKEND, backend_name, create_desktop
from agent.platform.base import PlatformError
from agent.platform.fake import FakeDesktop


@pytest.mark.parametrize(
    ("env", "platform", "expected"),
    [
        ({}, "win32", "windows"),
        ({}, "darwin", "macos"),
        ({"DISPLAY": ":0"}, "linux", "x11"),
        (
            {"XDG_SESSION_TYPE": "wayland", "DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0"},
            "linux",
            "wayland",
        ),
        ({"WAYLAND_DISPLAY": "wayland-0"}, "linux", "wayland"),
        ({ENV_BACKEND: "fake"}, "win32", "fake"),
        ({ENV_BACKEND: "X11", "XDG_SESSION_TYPE": "wayland"}, "linux", "x11"),
    ],
)
def test_backend_choice(env: dict[str, str], platform: str, expected: str) -> None:
    assert backend_name(env, platform) == expected


def test_unknown_override_names_the_choices() -> None:
    with pytest.raises(PlatformError, match="x11, wayland, windows, macos, fake"):
        backend_name({ENV_BACKEND: "beos"}, "linux")


def test_create_fake_and_errors_are_platform_errors() -> None:
    assert isinstance(create_desktop(backend="fake"), FakeDesktop)
    with pytest.raises(PlatformError):
        create_desktop(backend="x11", display=":999")  # no such X server
    if sys.platform != "win32":
        with pytest.raises(PlatformError, match="only on Windows"):
            create_desktop(backend="windows")


def test_importing_the_platform_package_touches_no_os_library() -> None:
    code = (
        "import sys, agent.platform, agent.runtime, agent.commands;"
        "bad = [m for m in ('Xlib', 'pynput', 'Quartz', 'jeepney', 'tkinter', 'mss') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, env={})
    assert result.returncode == 0, result.stdout + result.stderr
