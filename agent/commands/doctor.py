"""`mamori agent doctor [--config FILE]`: what works on this machine, and how to fix what does not.

One row per capability (window list, cover, lock, idle source, tray and its menu, notifications, OS permissions,
state directory), each with a one-line fix in the worker's language (ja/en). Exit 0 when every essential
capability works, else 1. The probes are injected (:class:`Probes`), so tests replace the OS, not the logic;
the real probes import OS libraries lazily.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.config import AgentConfig
from agent.i18n import Translator, detect_language
from agent.platform import OS_NAME
from agent.platform.base import Capabilities, Closable

Translate = Callable[..., str]


@dataclass(frozen=True)
class Row:
    key: str  # doctor.cap.<key>
    ok: bool
    essential: bool
    detail: str = ""  # why not (English, technical; from the backend's notes)
    fix_key: str | None = None  # i18n key of the fix line


@dataclass
class Probes:
    """Everything the doctor asks the machine; each returns facts, never raises."""

    capabilities: Callable[[], Capabilities | str]  # Capabilities, or why the backend could not load
    tk: Callable[[], str | None]  # None when Tk can open a window here, else why not
    tray: Callable[[], tuple[str | None, bool, str]]  # (backend or None, has_menu, detail)
    notifications: Callable[[], str | None]  # None when notifications can be shown, else why not
    permissions: Callable[[], list[tuple[str, bool]]] = field(default=lambda: [])  # [(fix_key, granted)]
    platform: str = OS_NAME  # "linux", "win32", "darwin": which OS the fixes are for
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))


def _display_fix(p: Probes) -> str:
    if p.platform.startswith("linux"):
        if p.environ.get("XDG_SESSION_TYPE") == "wayland" or (
            p.environ.get("WAYLAND_DISPLAY") and not p.environ.get("DISPLAY")
        ):
            return "doctor.fix.wayland"
        if not p.environ.get("DISPLAY"):
            return "doctor.fix.display"
    if p.platform == "darwin":
        return "doctor.fix.macos_screen"
    return "doctor.fix.platform"


def diagnose(config: AgentConfig, probes: Probes) -> list[Row]:
    rows: list[Row] = []
    caps = probes.capabilities()
    if isinstance(caps, str):
        fix = _display_fix(probes)
        for key in ("window_list", "cover", "lock", "idle"):
            rows.append(Row(key, False, True, caps, fix))
    else:
        notes = "; ".join(caps.notes)
        rows.append(
            Row(
                "window_list",
                caps.window_list,
                True,
                notes,
                None if caps.window_list else _display_fix(probes),
            )
        )
        tk_problem = probes.tk()
        cover_ok = caps.cover and tk_problem is None
        cover_fix = None
        if not cover_ok:
            cover_fix = "doctor.fix.tk" if tk_problem and _tk_missing(tk_problem) else _display_fix(probes)
        rows.append(Row("cover", cover_ok, True, tk_problem or ("" if caps.cover else notes), cover_fix))
        lock_ok = caps.lock or bool(config.lock_command)
        rows.append(
            Row("lock", lock_ok, True, "" if lock_ok else notes, None if lock_ok else "doctor.fix.lock")
        )
        rows.append(
            Row(
                "idle",
                caps.idle,
                True,
                "" if caps.idle else notes,
                None if caps.idle else _display_fix(probes),
            )
        )
    backend, has_menu, detail = probes.tray()
    rows.append(Row("tray", backend is not None, False, detail, None if backend else "doctor.fix.tray"))
    if backend is not None:
        rows.append(Row("tray_menu", has_menu, False, backend, None if has_menu else "doctor.fix.tray_menu"))
    reason = probes.notifications()
    rows.append(Row("notifications", reason is None, False, reason or "", _notify_fix(reason, probes)))
    perms = probes.permissions()
    missing = [key for key, granted in perms if not granted]
    rows.append(
        Row("permissions", not missing, probes.platform == "darwin", "", missing[0] if missing else None)
    )
    rows.append(_state_dir_row(config.state_dir))
    return rows


def _tk_missing(problem: str) -> bool:
    """Tk is not installed (import failed), as opposed to Tk that cannot open this display.

    "_tkinter.TclError: couldn't connect to display" also names tkinter; installing Tk would not fix it.
    """
    return "ModuleNotFoundError" in problem or "ImportError" in problem


def _notify_fix(reason: str | None, probes: Probes) -> str | None:
    if reason is None:
        return None
    if probes.platform == "win32":
        return "doctor.fix.windows_notifications"
    if "notify-send" in reason:
        return "doctor.fix.notify_send"
    if "D-Bus" in reason or ("bus" in reason.lower() and "daemon" not in reason):
        return "doctor.fix.dbus"
    return "doctor.fix.notify_daemon"


def _state_dir_row(state_dir: Path) -> Row:
    try:
        # 0700 like every other creator of the state directory: it holds the outbox and the control socket.
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with tempfile.NamedTemporaryFile(dir=state_dir, prefix=".doctor-"):
            pass
    except OSError as err:
        return Row("state_dir", False, True, f"{state_dir}: {err.strerror}", "doctor.fix.state_dir")
    return Row("state_dir", True, True, str(state_dir))


def essential_ok(rows: list[Row]) -> bool:
    return all(r.ok for r in rows if r.essential)


def render(rows: list[Row], t: Translate) -> str:
    """The report for the terminal: a status word, the capability, and a fix line under each problem."""
    lines = [t("doctor.title"), ""]
    for r in rows:
        mark = t("doctor.ok") if r.ok else t("doctor.missing")
        name = _cap_name(t, r.key)
        optional = "" if r.essential else " " + t("doctor.optional")
        lines.append(f"[{mark:>2}] {name}{optional}")
        if not r.ok:
            if r.detail:
                lines.append(f"      {r.detail}")
            if r.fix_key:
                lines.append(f"      {t('doctor.fix_label')}: {t(r.fix_key)}")
    lines.append("")
    failing = [_cap_name(t, r.key) for r in rows if r.essential and not r.ok]
    lines.append(
        t("doctor.summary.ok") if not failing else t("doctor.summary.fail", names=", ".join(failing))
    )
    return "\n".join(lines)


def _cap_name(t: Translate, key: str) -> str:
    return t(f"doctor.cap.{key}")


# ---------------------------------------------------------------------------------------------- real probes


def _probe_capabilities(config: AgentConfig) -> Callable[[], Capabilities | str]:
    def probe() -> Capabilities | str:
        from agent.platform import create_desktop

        try:
            desktop = create_desktop(config.lock_command)
        except Exception as err:  # PlatformError, or an X connection error from the backend
            return f"{type(err).__name__}: {err}"
        try:
            return desktop.capabilities()
        except Exception as err:
            return f"{type(err).__name__}: {err}"
        finally:
            if isinstance(desktop, Closable):
                with contextlib.suppress(Exception):
                    desktop.close()  # its display / D-Bus connections

    return probe


def _probe_tk() -> str | None:
    """Open and close a Tk root in a child process: a broken display must not hang or crash the doctor."""
    code = "import tkinter as tk; r = tk.Tk(); r.withdraw(); r.update(); r.destroy()"
    try:
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.SubprocessError) as err:
        return str(err)
    if result.returncode == 0:
        return None
    lines = (result.stderr or "").strip().splitlines()
    return lines[-1] if lines else f"exit status {result.returncode}"


def _probe_tray(environ: Mapping[str, str], platform: str) -> Callable[[], tuple[str | None, bool, str]]:
    def probe() -> tuple[str | None, bool, str]:
        from agent.ui.tray import MENU_BACKENDS, backend_candidates

        candidates = backend_candidates(environ, platform)
        if platform.startswith("linux"):
            if not environ.get("DISPLAY"):
                return None, False, "no X display (DISPLAY is not set)"
            has_tray = _x11_tray_owner(environ.get("DISPLAY", ""))
            if has_tray is False:
                return None, False, "no system tray on this desktop (_NET_SYSTEM_TRAY_S0 has no owner)"
            for name in candidates:
                if name == "appindicator" and not _appindicator_importable():
                    continue
                return name, name in MENU_BACKENDS, name
            return None, False, "no pystray backend"
        name = candidates[0]
        return name, name in MENU_BACKENDS, name

    return probe


def _appindicator_importable() -> bool:
    if importlib.util.find_spec("gi") is None:
        return False
    try:
        import gi

        for namespace in ("AyatanaAppIndicator3", "AppIndicator3"):
            try:
                gi.require_version(namespace, "0.1")
                return True
            except ValueError:
                continue
    except Exception:
        return False
    return False


def _x11_tray_owner(display_name: str) -> bool | None:
    """True/False when the X server answers whether a system tray exists; None when it cannot be asked."""
    try:
        from Xlib import X, display

        d = display.Display(display_name)
    except Exception:
        return None
    try:
        owner = d.get_selection_owner(d.intern_atom(f"_NET_SYSTEM_TRAY_S{d.get_default_screen()}"))
        return bool(owner) and owner != X.NONE
    finally:
        d.close()


def _probe_notifications(environ: Mapping[str, str], platform: str) -> Callable[[], str | None]:
    def probe() -> str | None:
        from agent.platform import create_notifications
        from agent.platform.notifications import LinuxNotifySend

        backend = create_notifications(environ=environ, platform=platform)
        reason = backend.unavailable_reason()
        if reason is not None or not isinstance(backend, LinuxNotifySend):
            return reason
        return _linux_notification_daemon(environ)

    return probe


def _linux_notification_daemon(environ: Mapping[str, str]) -> str | None:
    """None when a daemon owns (or can be started for) org.freedesktop.Notifications on the session bus."""
    if shutil.which("dbus-send") is None:
        return None  # cannot tell; notify-send will say so when it is used
    name = "org.freedesktop.Notifications"
    for method in ("NameHasOwner", "ListActivatableNames"):
        argv = [
            "dbus-send",
            "--session",
            "--print-reply",
            "--dest=org.freedesktop.DBus",
            "/org/freedesktop/DBus",
        ]
        argv += [f"org.freedesktop.DBus.{method}"] + ([f"string:{name}"] if method == "NameHasOwner" else [])
        try:
            out = subprocess.run(
                argv, capture_output=True, text=True, timeout=5, check=False, env=dict(environ)
            )
        except (OSError, subprocess.SubprocessError) as err:
            return f"dbus-send failed: {err}"
        if out.returncode != 0:
            return f"no D-Bus session bus ({(out.stderr or '').strip()[:120]})"
        if (method == "NameHasOwner" and "boolean true" in out.stdout) or (
            method == "ListActivatableNames" and f'"{name}"' in out.stdout
        ):
            return None
    return "no notification daemon on the session bus"


def _probe_permissions(platform: str) -> Callable[[], list[tuple[str, bool]]]:
    def probe() -> list[tuple[str, bool]]:
        if platform != "darwin":
            return []
        out: list[tuple[str, bool]] = []
        try:
            import Quartz

            out.append(("doctor.fix.macos_screen", bool(Quartz.CGPreflightScreenCaptureAccess())))
        except Exception:
            out.append(("doctor.fix.macos_screen", False))
        try:
            from ApplicationServices import AXIsProcessTrusted  # type: ignore[import-not-found]

            out.append(("doctor.fix.macos_accessibility", bool(AXIsProcessTrusted())))
        except Exception:
            out.append(("doctor.fix.macos_accessibility", False))
        return out

    return probe


def real_probes(config: AgentConfig) -> Probes:
    env = dict(os.environ)
    return Probes(
        capabilities=_probe_capabilities(config),
        tk=_probe_tk,
        tray=_probe_tray(env, OS_NAME),
        notifications=_probe_notifications(env, OS_NAME),
        permissions=_probe_permissions(OS_NAME),
        platform=OS_NAME,
        environ=env,
    )


# ---------------------------------------------------------------------------------------------------- CLI


def register(subparsers: Any) -> None:
    doctor = subparsers.add_parser(
        "doctor", help="diagnose install, permissions and capabilities, with fixes"
    )
    doctor.add_argument(
        "--config", type=Path, help="agent.toml (default: $MAMORI_CONFIG or the system location)"
    )
    doctor.set_defaults(func=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    from agent.config import load_config

    config = load_config(args.config)
    t = Translator(detect_language(config.language))
    rows = diagnose(config, real_probes(config))
    print(render(rows, t))
    return 0 if essential_ok(rows) else 1
