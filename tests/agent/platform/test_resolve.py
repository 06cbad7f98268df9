"""resolve_platform: each OS resolves to its own parts once; environment overrides win."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.platform import (
    ENV_BACKEND,
    ENV_NOTIFY,
    ENV_POSTURE,
    ENV_TRAY,
    Platform,
    PlatformError,
    resolve_platform,
)
from agent.platform.fake import FakeDesktop
from agent.platform.notifications import LinuxNotifySend, MacOsNotification, NullNotifications, WindowsToast
from agent.platform.posture_linux import LinuxHost
from agent.platform.posture_macos import MacHost
from agent.platform.posture_windows import WindowsHost
from agent.posture.base import Unsupported
from agent.share.signatures import LINUX, MACOS, WINDOWS


@pytest.mark.parametrize(
    ("platform", "name", "desktop", "posture", "notify", "tray", "signatures", "font"),
    [
        ("linux", "linux", "x11", LinuxHost, LinuxNotifySend, ("appindicator", "xorg"), LINUX, "IPAGothic"),
        ("win32", "windows", "windows", WindowsHost, WindowsToast, ("win32",), WINDOWS, "Yu Gothic UI"),
        ("darwin", "macos", "macos", MacHost, MacOsNotification, ("darwin",), MACOS, "Hiragino Sans"),
    ],
)
def test_each_os_resolves_to_its_own_parts(
    platform: str,
    name: str,
    desktop: str,
    posture: type,
    notify: type,
    tray: tuple[str, ...],
    signatures: tuple[object, ...],
    font: str,
) -> None:
    plat = resolve_platform({"DISPLAY": ":0"}, platform)
    assert (plat.name, plat.os_name, plat.desktop_backend, plat.tray_backends) == (
        name,
        platform,
        desktop,
        tray,
    )
    assert isinstance(plat.create_posture_host(), posture)
    assert isinstance(plat.create_notifications(), notify)
    assert plat.share_signatures() == signatures
    assert plat.features.cover_font == font


def test_capability_flags_per_os() -> None:
    linux, windows, macos = (resolve_platform({}, p).features for p in ("linux", "win32", "darwin"))
    assert linux.has_procfs and linux.has_netlink and linux.display_from_env
    assert not (
        windows.has_procfs or windows.has_netlink or windows.has_unix_sockets or windows.display_from_env
    )
    assert macos.has_unix_sockets and not (macos.has_procfs or macos.has_netlink or macos.display_from_env)


def test_config_path_per_os() -> None:
    assert resolve_platform({}, "linux").config_path == Path("/etc/mamori/agent.toml")
    assert resolve_platform({}, "darwin").config_path == Path(
        "/Library/Application Support/Mamori/agent.toml"
    )
    assert (
        resolve_platform({"PROGRAMDATA": "D:\\PD"}, "win32").config_path
        == Path("D:\\PD") / "Mamori" / "agent.toml"
    )


def test_a_wayland_session_resolves_to_the_wayland_desktop() -> None:
    assert resolve_platform({"XDG_SESSION_TYPE": "wayland"}, "linux").desktop_backend == "wayland"


def test_environment_overrides_win() -> None:
    env = {ENV_BACKEND: "fake", ENV_POSTURE: "linux", ENV_NOTIFY: "none", ENV_TRAY: "gtk"}
    plat = resolve_platform(env, "win32")
    assert (plat.name, plat.desktop_backend, plat.tray_backends) == ("windows", "fake", ("gtk",))
    assert isinstance(plat.create_desktop(), FakeDesktop)
    assert isinstance(plat.create_posture_host(), LinuxHost)
    notifications = plat.create_notifications()
    assert isinstance(notifications, NullNotifications)
    assert notifications.unavailable_reason() == f"disabled by {ENV_NOTIFY}=none"


def test_an_unknown_desktop_backend_is_one_platform_error() -> None:
    with pytest.raises(
        PlatformError, match=f"{ENV_BACKEND}='beos' is not a backend; use one of x11, wayland"
    ):
        resolve_platform({ENV_BACKEND: "beos"}, "linux")


def test_an_os_without_backends_degrades_and_says_why() -> None:
    plat = resolve_platform({}, "sunos5")
    host = plat.create_posture_host()
    assert isinstance(host, Unsupported) and host.reason == "no posture backend for unsupported"
    assert plat.create_notifications().unavailable_reason() == "no notification backend for sunos5"
    assert (plat.name, plat.desktop_backend) == ("linux", "x11")  # a Unix desktop: X11, Linux signatures
    assert not (plat.features.has_procfs or plat.features.has_netlink)


def test_the_bundle_is_frozen_and_compares_without_its_environment() -> None:
    plat = resolve_platform({"DISPLAY": ":0"}, "linux")
    assert isinstance(plat, Platform)
    assert plat == resolve_platform({"DISPLAY": ":1"}, "linux")
    with pytest.raises(AttributeError):
        plat.desktop_backend = "fake"  # type: ignore[misc]
