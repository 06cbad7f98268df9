"""`mamori agent doctor [--config FILE] [--json]`: what protection depends on here, and how to fix what fails.

One row per thing protection depends on — agent.toml, the trusted keys, a verifiable policy (the trusted store
or the configured drop, through :class:`agent.policy_source.PolicySource`), the enrollment and the server over
TLS, the window list, the cover helper, a lock method that really works on this desktop, the idle source — then
the optional ones (tray, notifications, OS permissions) and which customer-app rule matches an open window now.
Each failing row has a one-line fix in the worker's language (ja/en). Exit 0 only when protection would not be
degraded, else 1; ``--json`` prints the same rows for IT scripts. The probes are injected (:class:`Probes`), so
tests replace the OS, not the logic; the real probes import OS libraries lazily.
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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from agent.config import AgentConfig
from agent.i18n import Translator, detect_language
from agent.platform import OS_NAME
from agent.platform.base import Capabilities, Closable, Window
from core.clock import Clock, SystemClock

Translate = Callable[..., str]


@dataclass(frozen=True)
class Row:
    key: str  # doctor.cap.<key>
    ok: bool
    essential: bool
    detail: str = ""  # why not (English, technical; from the backend's notes)
    fix_key: str | None = None  # i18n key of the fix line
    fix_args: Mapping[str, str] = field(default_factory=dict)  # placeholders of the fix line
    note: str = ""  # shown under an OK row too (which policy, which server, how many windows match)
    label: str = ""  # a name after the capability's ("crm" for a customer-app rule)
    info: bool = False  # neither works nor fails: shown as "--" (a rule whose app is not open now)


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
    # None when the lock method the backend would use really locks on this desktop, else why not
    lock: Callable[[Capabilities], str | None] = field(default=lambda _caps: None)
    windows: Callable[[], list[Window] | str] = field(default=lambda: [])  # open windows, or why unknown
    server: Callable[[str], str | None] = field(default=lambda _url: None)  # None when /healthz answers
    clock: Clock = field(default_factory=SystemClock)


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


def diagnose(config: AgentConfig, probes: Probes, config_problem: str | None = None) -> list[Row]:
    rows: list[Row] = [_config_row(config, config_problem)]
    rows += _policy_rows(config, probes)
    rows += _server_rows(config, probes)
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
        # The backend's reason first: on Wayland Tk's missing display is not why nothing can be covered.
        rows.append(Row("cover", cover_ok, True, (tk_problem or "") if caps.cover else notes, cover_fix))
        rows.append(_lock_row(caps, notes, probes, config))
        idle_fix = _display_fix(probes)
        if idle_fix == "doctor.fix.wayland":
            idle_fix = "doctor.fix.wayland_idle"  # only GNOME tells a Wayland client the idle time
        rows.append(Row("idle", caps.idle, True, "" if caps.idle else notes, None if caps.idle else idle_fix))
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
    rows += _rule_rows(config, probes)
    return rows


def _config_row(config: AgentConfig, problem: str | None) -> Row:
    if problem is not None:
        return Row("config", False, True, problem, "doctor.fix.config")
    if config.source is None:
        # Built-in defaults: no trusted keys, so the agent can never verify a policy (the next rows say so).
        from agent.config import default_config_path

        return Row("config", False, True, f"{default_config_path()}: not found", "doctor.fix.config_missing")
    return Row("config", True, True, note=str(config.source))


def _policy_rows(config: AgentConfig, probes: Probes) -> list[Row]:
    """trusted_keys, then the policy the agent enforces (store, or the drop when the store is empty/older)."""
    from agent.policy_source import PolicySource
    from policy.errors import PolicyError
    from policy.keys import load_trusted_keys

    if not config.trusted_keys:
        return [
            Row("trusted_keys", False, True, "agent.toml has no trusted_keys", "doctor.fix.trusted_keys"),
            Row(
                "policy", False, True, "no trusted key: no policy can be verified", "doctor.fix.trusted_keys"
            ),
        ]
    try:
        keys = load_trusted_keys(config.trusted_keys)
    except PolicyError as err:
        return [
            Row("trusted_keys", False, True, str(err), "doctor.fix.trusted_keys"),
            Row("policy", False, True, "the trusted keys cannot be read", "doctor.fix.trusted_keys"),
        ]
    rows = [Row("trusted_keys", True, True, note=", ".join(f"{k.keyid[:16]}" for k in keys))]
    source = PolicySource(config, probes.clock)
    try:
        reading = source.read_with_drop()
    except PolicyError as err:
        return [*rows, Row("policy", False, True, str(err), "doctor.fix.trusted_keys")]
    problems = "; ".join(reading.problems)
    verified = reading.verified
    if verified is None:
        if config.policy_bundle is not None:
            fix, args = "doctor.fix.policy_drop", {"path": str(config.policy_bundle)}
        elif config.server or _enrolled(config):
            fix, args = "doctor.fix.policy_server", {}
        else:
            fix, args = "doctor.fix.policy_none", {"state_dir": str(config.state_dir)}
        detail = problems or f"no signed policy in {source.store.path}"
        return [*rows, Row("policy", False, True, detail, fix, args)]
    origin = f"{config.policy_bundle}" if reading.origin == "drop" else str(source.store.path)
    note = f"{verified.policy.id} v{verified.policy.version} ({origin})"
    if verified.is_expired(probes.clock.now()):
        # Still enforced (the last good policy stays in force), but nothing newer arrives: say so.
        expired = verified.expires.isoformat() if verified.expires else ""
        return [*rows, Row("policy", False, False, f"{note} expired {expired}", "doctor.fix.policy_expired")]
    return [*rows, Row("policy", True, True, problems, note=note)]


def _enrolled(config: AgentConfig) -> bool:
    from agent.report.enrollment import EnrollmentError, load_enrollment

    try:
        return load_enrollment(config.state_dir) is not None
    except EnrollmentError:
        return True


def _server_rows(config: AgentConfig, probes: Probes) -> list[Row]:
    """The enrollment and, when enrolled, whether the server answers over TLS with this agent's trust."""
    from agent.report.enrollment import EnrollmentError, load_enrollment

    try:
        enrollment = load_enrollment(config.state_dir)
    except EnrollmentError as err:
        return [Row("enrollment", False, True, str(err), "doctor.fix.enroll", {"server": _server(config)})]
    if enrollment is None:
        if config.server is None:
            # An MDM-drop-only deployment is valid: protection works, nothing is reported.
            return [Row("enrollment", True, False, note="not enrolled: no server, nothing is reported")]
        return [
            Row("enrollment", False, True, "not enrolled", "doctor.fix.enroll", {"server": config.server})
        ]
    rows = [Row("enrollment", True, True, note=f"device {enrollment.device_id} ({enrollment.server})")]
    problem = probes.server(enrollment.server)
    if problem is None:
        return [*rows, Row("server", True, True, note=enrollment.server)]
    return [*rows, Row("server", False, True, f"{enrollment.server}: {problem}", "doctor.fix.server")]


def _server(config: AgentConfig) -> str:
    return config.server or "https://mamori.example.com"


def _lock_row(caps: Capabilities, notes: str, probes: Probes, config: AgentConfig) -> Row:
    """A lock method exists *and* locks on this desktop (asked without locking; see lock_method_problem)."""
    if config.lock_command:
        caps = replace(caps, lock=True, lock_method="command")  # agent.toml's lock_command comes first
    if not caps.lock:
        return Row("lock", False, True, notes, "doctor.fix.lock")
    problem = probes.lock(caps)
    if problem is not None:
        return Row("lock", False, True, problem, "doctor.fix.lock_method", {"method": caps.lock_method})
    return Row("lock", True, True, note=caps.lock_method)


def _rule_rows(config: AgentConfig, probes: Probes) -> list[Row]:
    """Which customer-app rule matches an open window now (information: the app may simply not be open).

    Rule names, process names and counts only: a window title can be customer data.
    """
    from agent.decide.match import coverable, identity, rule_matches
    from agent.policy_source import PolicySource
    from policy.errors import PolicyError

    try:
        verified = PolicySource(config, probes.clock).read_with_drop().verified
    except PolicyError:
        return []
    if verified is None or not verified.policy.customer_apps:
        return []
    windows = probes.windows()
    rows = []
    for rule in verified.policy.customer_apps:
        if isinstance(windows, str):
            rows.append(Row("rule", False, False, windows, "doctor.fix.rule_unknown", label=rule.name))
            continue
        hits = [w for w in windows if coverable(w) and rule_matches(rule, w)]
        apps = sorted({identity(w)[1] for w in hits})
        note = f"{len(hits)} window(s): {', '.join(apps)}" if hits else "no open window matches now"
        rows.append(Row("rule", True, False, note=note, label=rule.name, info=not hits))
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
        mark = "--" if r.info else t("doctor.ok") if r.ok else t("doctor.missing")
        optional = "" if r.essential else " " + t("doctor.optional")
        lines.append(f"[{mark:>2}] {_name(t, r)}{optional}")
        if r.note:
            lines.append(f"      {r.note}")
        if not r.ok:
            if r.detail:
                lines.append(f"      {r.detail}")
            if r.fix_key:
                lines.append(f"      {t('doctor.fix_label')}: {t(r.fix_key, **r.fix_args)}")
    lines.append("")
    failing = [_name(t, r) for r in rows if r.essential and not r.ok]
    lines.append(
        t("doctor.summary.ok") if not failing else t("doctor.summary.fail", names=", ".join(failing))
    )
    return "\n".join(lines)


def render_json(rows: list[Row], t: Translate) -> str:
    """One JSON document for IT scripts: ``ok`` (protection not degraded), the failing essentials, every row."""
    import json

    doc = {
        "ok": essential_ok(rows),
        "failing": [r.key if not r.label else f"{r.key}:{r.label}" for r in rows if r.essential and not r.ok],
        "checks": [
            {
                "id": r.key if not r.label else f"{r.key}:{r.label}",
                "name": _name(t, r),
                "status": "info" if r.info else "ok" if r.ok else "fail",
                "essential": r.essential,
                "detail": r.note if r.ok else r.detail,
                "fix": t(r.fix_key, **r.fix_args) if r.fix_key and not r.ok else None,
            }
            for r in rows
        ],
    }
    return json.dumps(doc, ensure_ascii=False, indent=2)


def _name(t: Translate, r: Row) -> str:
    name = _cap_name(t, r.key)
    return f"{name}: {r.label}" if r.label else name


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


# Programs that lock the screen when logind asks (``loginctl lock-session`` sends the session's Lock signal
# and exits 0 whether anyone listens or not): the desktop shells and the usual stand-alone lockers.
LOGIND_LOCK_LISTENERS = frozenset(
    {
        "gnome-shell",
        "ksmserver",
        "kscreenlocker_greet",
        "light-locker",
        "xss-lock",
        "xscreensaver-systemd",
        "cinnamon-screensaver",
        "mate-screensaver",
        "xfce4-screensaver",
        "gnome-screensaver",
        "budgie-screensaver",
        "xfce4-power-manager",
    }
)
# What ``xdg-screensaver lock`` can call (xdg-utils' script): each D-Bus name is one it tries.
XDG_SCREENSAVER_DBUS_NAMES = (
    "org.gnome.ScreenSaver",
    "org.mate.ScreenSaver",
    "org.cinnamon.ScreenSaver",
    "org.freedesktop.ScreenSaver",
)


def lock_method_problem(
    method: str,
    lock_command: tuple[str, ...],
    environ: Mapping[str, str],
    processes: Callable[[], set[str]],
) -> str | None:
    """Why the lock method the backend would use does not lock this desktop, or None when it does.

    Asked without locking: doctor must not lock the worker out. ``xdg-screensaver lock`` on a desktop it has
    no locker for fails with "Unknown command 'lock'"; ``loginctl lock-session`` succeeds and locks nothing
    when no screen locker listens to logind.
    """
    if method == "command":
        if not lock_command or shutil.which(lock_command[0], path=environ.get("PATH")) is None:
            name = lock_command[0] if lock_command else ""
            return f"lock_command {name!r} is not installed (not on PATH)"
        return None
    if method == "loginctl":
        if processes() & LOGIND_LOCK_LISTENERS:
            return None
        return (
            "loginctl lock-session only asks the session to lock, and no screen locker that listens to it is "
            "running (" + ", ".join(sorted(LOGIND_LOCK_LISTENERS)[:4]) + ", ...)"
        )
    if method == "xdg-screensaver":
        return xdg_screensaver_problem(environ)
    if method == "gnome-screensaver":
        return gnome_screensaver_problem(environ)
    return None


def gnome_screensaver_problem(environ: Mapping[str, str]) -> str | None:
    """None when GNOME Shell's screen shield is on the session bus (org.gnome.ScreenSaver's own service only
    forwards to it, agent/platform/linux_wayland.py)."""
    env = dict(environ)
    if shutil.which("dbus-send", path=env.get("PATH")) is not None and env.get("DBUS_SESSION_BUS_ADDRESS"):
        for name in ("org.gnome.Shell.ScreenShield", "org.gnome.ScreenSaver"):
            argv = ["dbus-send", "--session", "--print-reply", "--dest=org.freedesktop.DBus"]
            argv += ["/org/freedesktop/DBus", "org.freedesktop.DBus.GetNameOwner", f"string:{name}"]
            try:
                owner = subprocess.run(argv, capture_output=True, timeout=5, env=env, check=False)
            except (OSError, subprocess.SubprocessError):
                continue
            if owner.returncode == 0:
                return None
    return (
        "GNOME Shell's lock screen (org.gnome.Shell.ScreenShield) is not on the session bus: GNOME Shell is not "
        "running here, or it offers no lock screen (it needs GDM)"
    )


def xdg_screensaver_problem(environ: Mapping[str, str]) -> str | None:
    """None when ``xdg-screensaver lock`` has a screen locker to call here (the same detection as xdg-utils)."""
    env = dict(environ)
    try:
        version = subprocess.run(
            ["xscreensaver-command", "-version"],
            capture_output=True,
            text=True,
            timeout=5,
            env=env,
            check=False,
        )
        if "XScreenSaver" in version.stdout + version.stderr:
            return None
    except (OSError, subprocess.SubprocessError):
        pass
    if shutil.which("dbus-send", path=env.get("PATH")) is not None and env.get("DBUS_SESSION_BUS_ADDRESS"):
        for name in XDG_SCREENSAVER_DBUS_NAMES:
            argv = ["dbus-send", "--session", "--print-reply", "--dest=org.freedesktop.DBus"]
            argv += ["/org/freedesktop/DBus", "org.freedesktop.DBus.GetNameOwner", f"string:{name}"]
            try:
                owner = subprocess.run(argv, capture_output=True, timeout=5, env=env, check=False)
            except (OSError, subprocess.SubprocessError):
                continue
            if owner.returncode == 0:
                return None
    return (
        "xdg-screensaver finds no screen locker on this desktop: every lock would fail with "
        "\"xdg-screensaver: Unknown command 'lock'\""
    )


def _user_processes() -> set[str]:
    import psutil

    names: set[str] = set()
    for proc in psutil.process_iter(["name"]):
        name = proc.info.get("name")
        if isinstance(name, str):
            names.add(name)
    return names


def _probe_lock(config: AgentConfig, environ: Mapping[str, str]) -> Callable[[Capabilities], str | None]:
    def probe(caps: Capabilities) -> str | None:
        return lock_method_problem(caps.lock_method, config.lock_command, environ, _user_processes)

    return probe


def _probe_windows(config: AgentConfig) -> Callable[[], list[Window] | str]:
    def probe() -> list[Window] | str:
        from agent.platform import create_desktop

        try:
            desktop = create_desktop(config.lock_command)
        except Exception as err:
            return f"{type(err).__name__}: {err}"
        try:
            caps = desktop.capabilities()
            if not caps.window_list:  # an empty list here means "cannot see", not "nothing open"
                return "; ".join(caps.notes) or f"{caps.backend}: no window list"
            return desktop.windows()
        except Exception as err:
            return f"{type(err).__name__}: {err}"
        finally:
            if isinstance(desktop, Closable):
                with contextlib.suppress(Exception):
                    desktop.close()

    return probe


def _probe_server(config: AgentConfig) -> Callable[[str], str | None]:
    def probe(server: str) -> str | None:
        import requests

        from agent.report import transport

        url = server.rstrip("/") + "/healthz"
        try:
            with transport.http_session(config.server_ca) as session:
                response = session.get(url, timeout=10)
        except requests.exceptions.SSLError as err:
            return transport.tls_advice(transport.tls_problem(err), config.server_ca)
        except requests.RequestException as err:
            return f"cannot reach the server ({type(err).__name__})"
        if response.status_code != 200:
            return f"/healthz answered HTTP {response.status_code}"
        if server.startswith("http://"):
            return (
                "reachable, but over plain http://: the device token and events cross the network unencrypted"
            )
        return None

    return probe


def real_probes(config: AgentConfig) -> Probes:
    env = dict(os.environ)
    return Probes(
        lock=_probe_lock(config, env),
        windows=_probe_windows(config),
        server=_probe_server(config),
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
        "doctor",
        help="check what protection depends on here, with fixes; exit 1 when protection would be degraded",
    )
    doctor.add_argument(
        "--config", type=Path, help="agent.toml (default: $MAMORI_CONFIG or the system location)"
    )
    doctor.add_argument("--json", action="store_true", help="print one JSON document (for IT scripts)")
    doctor.set_defaults(func=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    from agent.config import ConfigError, load_config

    problem: str | None = None
    try:
        config = load_config(args.config)
    except ConfigError as err:
        # Diagnose the rest with the built-in defaults, and say first that agent.toml is broken.
        problem, config = str(err), AgentConfig()
    t = Translator(detect_language(config.language))
    rows = diagnose(config, real_probes(config), problem)
    print(render_json(rows, t) if args.json else render(rows, t))
    return 0 if essential_ok(rows) else 1
