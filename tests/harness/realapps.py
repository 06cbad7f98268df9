"""Real third-party software on the test X desktop (issue 11): Debian's chromium and firefox-esr on local pages,
LibreOffice Calc on a generated .ods, and the agent's protection loop over the real X11 backend and cover helper.

Used by the ``apps``-marked tests (tests/agent/test_real_apps.py, tests/agent/test_real_lockers.py,
tests/agent/share/test_real_recorders.py). Each app is started in its own session so that it and every child
it forks (chromium's zygotes, soffice.bin) are ended together by process-group id.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from agent.app import build_runtime
from agent.config import AgentConfig
from agent.i18n import Translator
from agent.overlay.supervisor import OverlaySupervisor
from agent.platform.linux_x11 import X11Desktop
from agent.report.stream import EventStream, Kind
from agent.runtime import Runtime
from core.clock import SystemClock
from policy.load import load_policy
from policy.model import Policy
from tests.harness.xdesktop import Box, XDesktop, wait_for

ROOT = Path(__file__).resolve().parents[2]
STANDARD_POLICY = ROOT / "policy" / "examples" / "standard.toml"
PHONE = "03-1234-5678"


def need(*tools: str) -> None:
    """Skip (a failure in CI: MAMORI_REQUIRE_ALL_TESTS) when a tool is not installed."""
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (run .ci/run)")


def page(path: Path, title: str, text: str = PHONE) -> Path:
    path.write_text(
        f'<!doctype html><html><head><meta charset="utf-8"><title>{title}</title></head>'
        f'<body style="margin:0;background:#fff"><div style="font:bold 60px DejaVu Sans, sans-serif;'
        f'padding:30px 20px">{text}</div></body></html>',
        encoding="utf-8",
    )
    return path


def write_ods(path: Path, rows: list[list[str]], font_pt: int = 28) -> Path:
    """A minimal OpenDocument spreadsheet with big bold cells (so OCR can read them when uncovered)."""
    cells = "".join(
        '<table:table-row table:style-name="ro1">'
        + "".join(
            f'<table:table-cell table:style-name="ce1" office:value-type="string"><text:p>{c}</text:p>'
            "</table:table-cell>"
            for c in row
        )
        + "</table:table-row>"
        for row in rows
    )
    content = f"""<?xml version="1.0" encoding="UTF-8"?>
<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"
 xmlns:style="urn:oasis:names:tc:opendocument:xmlns:style:1.0"
 xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"
 xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0"
 xmlns:fo="urn:oasis:names:tc:opendocument:xmlns:xsl-fo-compatible:1.0" office:version="1.2">
<office:automatic-styles>
<style:style style:name="co1" style:family="table-column"><style:table-column-properties style:column-width="4in"/>
</style:style>
<style:style style:name="ro1" style:family="table-row"><style:table-row-properties style:row-height="0.7in"/>
</style:style>
<style:style style:name="ce1" style:family="table-cell"><style:text-properties fo:font-size="{font_pt}pt"
 fo:font-weight="bold"/></style:style>
</office:automatic-styles>
<office:body><office:spreadsheet><table:table table:name="Sheet1">
<table:table-column table:style-name="co1" table:number-columns-repeated="2"/>{cells}
</table:table></office:spreadsheet></office:body></office:document-content>"""
    manifest = """<?xml version="1.0" encoding="UTF-8"?>
<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2">
<manifest:file-entry manifest:full-path="/" manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/>
<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>
</manifest:manifest>"""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(zipfile.ZipInfo("mimetype"), "application/vnd.oasis.opendocument.spreadsheet")
        z.writestr("content.xml", content, compress_type=zipfile.ZIP_DEFLATED)
        z.writestr("META-INF/manifest.xml", manifest, compress_type=zipfile.ZIP_DEFLATED)
    return path


@dataclass
class App:
    """A started third-party program (its whole process group)."""

    name: str
    proc: subprocess.Popen[bytes]
    xid: int = 0

    def stop(self) -> None:
        # The group outlives its leader (soffice's wrapper exits, soffice.bin stays): end it in any case.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)


def spawn(desk: XDesktop, name: str, argv: list[str], home: Path, **env: str) -> App:
    home.mkdir(parents=True, exist_ok=True)
    log = open(home / f"{name}.log", "wb")  # noqa: SIM115 - lives as long as the app
    proc = subprocess.Popen(
        argv,
        env={**desk.env, "HOME": str(home), **env},
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return App(name, proc)


def chromium(desk: XDesktop, url: str, home: Path, box: Box, *extra: str) -> App:
    return spawn(
        desk,
        "chromium",
        [
            "chromium",
            "--no-sandbox",  # the tests run as root in CI
            f"--user-data-dir={home / 'chromium-profile'}",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--password-store=basic",
            f"--window-position={box.x},{box.y}",
            f"--window-size={box.width},{box.height}",
            *extra,
            url,
        ],
        home,
    )


def firefox(desk: XDesktop, url: str, home: Path) -> App:
    profile = home / "firefox-profile"
    profile.mkdir(parents=True, exist_ok=True)
    # No first-run pages, no update or telemetry prompts covering the page.
    (profile / "user.js").write_text(
        'user_pref("browser.shell.checkDefaultBrowser", false);\n'
        'user_pref("browser.startup.homepage_override.mstone", "ignore");\n'
        'user_pref("datareporting.policy.dataSubmissionEnabled", false);\n'
        'user_pref("toolkit.telemetry.reportingpolicy.firstRun", false);\n'
        'user_pref("browser.aboutwelcome.enabled", false);\n'
    )
    return spawn(
        desk,
        "firefox",
        ["firefox-esr", "--no-remote", "--new-instance", "--profile", str(profile), url],
        home,
    )


def calc(desk: XDesktop, document: Path, home: Path) -> App:
    return spawn(
        desk,
        "soffice",
        [
            "soffice",
            "--calc",
            "--norestore",
            "--nologo",
            "--nodefault",
            f"-env:UserInstallation=file://{home / 'lo-profile'}",
            str(document),
        ],
        home,
    )


def find_window(desk: XDesktop, title_part: str, timeout: float = 60.0) -> int:
    """The managed window whose title contains ``title_part``."""

    def search() -> int | None:
        out = subprocess.run(
            ["xdotool", "search", "--onlyvisible", "--name", title_part],
            env=desk.env,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        clients = set(desk.client_list())
        ids = [int(x) for x in out if int(x) in clients]
        return ids[0] if ids else None

    return wait_for(search, timeout=timeout, interval=0.3, what=f"a window titled like {title_part!r}")


def unmaximize(desk: XDesktop, xid: int) -> None:
    """Ask the window manager to drop a window's maximized state (EWMH _NET_WM_STATE remove), which Firefox and
    LibreOffice may start in; this xdotool is too old for ``windowstate``."""
    from Xlib import X, display
    from Xlib.protocol import event

    d = display.Display(desk.display)
    try:
        root = d.screen().root
        atoms = [d.intern_atom(n) for n in ("_NET_WM_STATE_MAXIMIZED_VERT", "_NET_WM_STATE_MAXIMIZED_HORZ")]
        message = event.ClientMessage(
            window=d.create_resource_object("window", xid),
            client_type=d.intern_atom("_NET_WM_STATE"),
            data=(32, [0, atoms[0], atoms[1], 1, 0]),
        )
        root.send_event(message, event_mask=X.SubstructureRedirectMask | X.SubstructureNotifyMask)
        d.sync()
    finally:
        d.close()


def place(desk: XDesktop, xid: int, box: Box) -> None:
    """Move and resize a managed window (the client area) with xdotool, and wait until it is there."""
    unmaximize(desk, xid)
    desk.xdotool("windowsize", str(xid), str(box.width), str(box.height))
    desk.xdotool("windowmove", str(xid), str(box.x), str(box.y))

    def placed() -> bool:
        got = desk.window_box(xid)
        return abs(got.width - box.width) <= 4 and abs(got.height - box.height) <= 4

    wait_for(placed, timeout=5, what=f"the window to be placed at {box} (it is at {desk.window_box(xid)})")


def standard_policy(**presence: Any) -> Policy:
    """The unchanged example policy (its customer_apps rules as shipped), with test timers when given."""
    policy = load_policy(STANDARD_POLICY.read_bytes(), "standard.toml")
    return replace(policy, presence=replace(policy.presence, **presence)) if presence else policy


class ProtectedDesktop:
    """The protection loop over the real X11 backend and cover helper, as the agent runs it."""

    def __init__(
        self,
        desk: XDesktop,
        state_dir: Path,
        policy: Policy,
        lock_command: list[str] | None = None,
        **kw: Any,
    ) -> None:
        self.desk = desk
        self.stream = EventStream()
        self.desktop = X11Desktop(desk.display, lock_command=lock_command or ["true"])
        self.overlay = OverlaySupervisor(env=desk.env)
        self.runtime: Runtime = build_runtime(
            AgentConfig(state_dir=state_dir),
            policy,
            self.desktop,
            self.stream,
            SystemClock(),
            overlay=self.overlay,
            translator=Translator("en"),
            **kw,
        )

    def start(self) -> ProtectedDesktop:
        self.runtime.start()
        return self

    def covered(self) -> int:
        return int(self.runtime.status()["covered"]["count"])

    def wait_covered(self, count: int, timeout: float = 8.0) -> None:
        wait_for(lambda: self.covered() == count, timeout=timeout, what=f"{count} covered window(s)")
        assert self.overlay.wait_applied(5)

    def events(self, kind: Kind) -> list[dict[str, object]]:
        return [dict(e.data) for e in self.stream.recent() if e.kind is kind]

    def stop(self) -> None:
        self.runtime.stop()
        self.desktop.close()
