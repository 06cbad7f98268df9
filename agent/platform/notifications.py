"""Notification backends of each OS: libnotify's notify-send, a Windows toast (PowerShell), Notification Center
(osascript), or none. Chosen by :func:`agent.platform.create_notifications`; each says why it cannot show a
notification (:meth:`NotifyBackend.unavailable_reason`) and raises :class:`NotifyError` with a one-line reason.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from core.errors import MamoriError

Urgency = Literal["low", "normal", "critical"]
Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]
APP_NAME = "Mamori"


class NotifyError(MamoriError):
    """A notification could not be shown."""

    def __init__(self, backend: str, reason: str) -> None:
        self.backend = backend
        self.reason = reason
        super().__init__(f"{backend}: {reason}")


@dataclass(frozen=True)
class Notification:
    key: str  # rate-limit key: one notification per key per interval (e.g. "countdown", "blocked.vpn")
    title: str
    body: str
    urgency: Urgency = "normal"
    timeout_ms: int = 8000


def run_command(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=10, check=False)


def run_notifier(backend: str, runner: Runner, argv: Sequence[str]) -> None:
    """Run one backend's notification command; raises NotifyError with a one-line reason (its stderr)."""
    try:
        result = runner(argv)
    except (OSError, subprocess.SubprocessError) as err:
        raise NotifyError(backend, str(err)) from err
    if result.returncode != 0:
        # PowerShell and GLib write several lines; the reason is logged as one (STYLE.md).
        reason = " ".join((result.stderr or "").split())[:200]
        raise NotifyError(backend, reason or f"exit status {result.returncode}")


class NotifyBackend(Protocol):
    name: str

    def unavailable_reason(self) -> str | None:
        """None when notifications can be shown here, else why not (one line)."""
        ...

    def send(self, n: Notification) -> None:
        """Show the notification; raises NotifyError."""
        ...


class LinuxNotifySend:
    name = "notify-send"

    def __init__(self, runner: Runner = run_command, environ: Mapping[str, str] | None = None) -> None:
        self._run = runner
        self._env = os.environ if environ is None else environ

    def unavailable_reason(self) -> str | None:
        if shutil.which("notify-send") is None:
            return "notify-send is not installed (libnotify-bin)"
        if not self._env.get("DBUS_SESSION_BUS_ADDRESS"):
            runtime = self._env.get("XDG_RUNTIME_DIR")
            if not runtime or not (Path(runtime) / "bus").exists():
                return "no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is not set)"
        return None

    def command(self, n: Notification) -> list[str]:
        # "--" ends options: a body starting with "-" stays text.
        return [
            "notify-send",
            f"--app-name={APP_NAME}",
            f"--urgency={n.urgency}",
            f"--expire-time={n.timeout_ms}",
            "--icon=security-high",
            "--",
            n.title,
            n.body,
        ]

    def send(self, n: Notification) -> None:
        run_notifier(self.name, self._run, self.command(n))


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


class WindowsToast:
    name = "windows-toast"
    # The toast XML is built inside PowerShell from base64 inputs and escaped there, so no text from a policy
    # or a translation can inject markup or script. AppUserModelID: PowerShell's, so the toast shows without
    # a registered shortcut (the installer's Start-menu entry registers "Mamori" for production).
    SCRIPT = (
        "$ErrorActionPreference='Stop';"
        "[Windows.UI.Notifications.ToastNotificationManager,Windows.UI.Notifications,ContentType=WindowsRuntime]"
        "|Out-Null;"
        "[Windows.Data.Xml.Dom.XmlDocument,Windows.Data.Xml.Dom.XmlDocument,ContentType=WindowsRuntime]|Out-Null;"
        "$d={{param($s)[Security.SecurityElement]::Escape([Text.Encoding]::UTF8.GetString("
        "[Convert]::FromBase64String($s)))}};"
        "$t=& $d '{title}';$b=& $d '{body}';"
        "$x=New-Object Windows.Data.Xml.Dom.XmlDocument;"
        "$x.LoadXml(\"<toast scenario='{scenario}'><visual><binding template='ToastGeneric'>"
        '<text>$t</text><text>$b</text></binding></visual></toast>");'
        "$n=[Windows.UI.Notifications.ToastNotification]::new($x);"
        "[Windows.UI.Notifications.ToastNotificationManager]::CreateToastNotifier('{app_id}').Show($n)"
    )
    APP_ID = "{1AC14E77-02E7-4E5D-B744-2EB1AE5198B7}\\WindowsPowerShell\\v1.0\\powershell.exe"

    def __init__(self, runner: Runner = run_command) -> None:
        self._run = runner

    def unavailable_reason(self) -> str | None:
        if shutil.which("powershell") is None and shutil.which("powershell.exe") is None:
            return "PowerShell is not available"
        return None

    def command(self, n: Notification) -> list[str]:
        script = self.SCRIPT.format(
            title=_b64(n.title),
            body=_b64(n.body),
            scenario="urgent" if n.urgency == "critical" else "default",
            app_id=self.APP_ID,
        )
        return [
            "powershell",
            "-NoProfile",
            "-NonInteractive",
            "-ExecutionPolicy",
            "Bypass",
            "-Command",
            script,
        ]

    def send(self, n: Notification) -> None:
        run_notifier(self.name, self._run, self.command(n))


class MacOsNotification:
    name = "macos-osascript"
    # Texts arrive as argv: AppleScript never parses them, so quotes and backslashes need no escaping.
    SCRIPT = ("on run argv", "display notification (item 2 of argv) with title (item 1 of argv)", "end run")

    def __init__(self, runner: Runner = run_command) -> None:
        self._run = runner

    def unavailable_reason(self) -> str | None:
        return None if shutil.which("osascript") else "osascript is not available"

    def command(self, n: Notification) -> list[str]:
        argv = ["osascript"]
        for line in self.SCRIPT:
            argv += ["-e", line]
        return [*argv, n.title, n.body]

    def send(self, n: Notification) -> None:
        run_notifier(self.name, self._run, self.command(n))


class NullNotifications:
    """No way to notify on this machine; says why."""

    name = "none"

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def unavailable_reason(self) -> str | None:
        return self.reason

    def send(self, n: Notification) -> None:
        raise NotifyError(self.name, self.reason)
