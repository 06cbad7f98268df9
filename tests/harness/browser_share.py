"""Real getDisplayMedia screen shares in Debian's Chromium and firefox-esr on the test X desktop (issue 11).

``ChromiumShare.open(desk, home)`` starts the real browser (selenium through Debian's chromium-driver, never a
downloaded browser) on a page served from ``http://localhost`` (a secure context, so getDisplayMedia is
allowed). ``start()`` clicks the page's share button; Chromium's picker is answered by
``--auto-select-desktop-capture-source`` (the source whose name is given: "Entire screen" by default, or a
window's title) and Chromium then shows its own "<origin> is sharing your screen." bar, a separate top-level
window of the browser process, which is what the share guard detects. ``stop()`` ends the stream from the page
as a meeting page's "stop presenting" does, and the bar goes.

:class:`FirefoxShare` does the same in firefox-esr with real clicks (Debian has no geckodriver).

``--use-fake-ui-for-media-stream`` must not be given: with it Chromium 156 answers getDisplayMedia with
``NotReadableError: Could not start video source`` under Xvfb, whatever the capture source.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.harness.browser import CHROMEDRIVER, CHROMIUM, require_chromium
from tests.harness.realapps import App, find_window, need, place, spawn
from tests.harness.xdesktop import Box, HarnessError, XDesktop, wait_for

# The page a meeting app would be: a share button, then the captured stream played in a <video> whose frames
# are counted (the proof that the capture really delivers the screen), and the wall-clock time the stream
# started (Date.now(), comparable with time.time() on this machine).
SHARE_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Weekly sync</title></head>
<body style="margin:0;font:20px DejaVu Sans, sans-serif">
<button id="share" style="font-size:28px;width:100%;height:60vh" onclick="toggle()">Present</button>
<video id="view" muted style="width:240px"></video>
<script>
window.share_state = "idle"; window.share_started_ms = 0; window.share_frames = 0;
// The state is also posted to the server, for a browser driven without WebDriver (firefox-esr: no geckodriver
// in Debian); "button" is where to click, in screen coordinates (Firefox's mozInnerScreenX/Y).
function report() {
  const r = document.getElementById("share").getBoundingClientRect();
  const view = document.getElementById("view");
  const x = (window.mozInnerScreenX ?? 0) + r.left + r.width / 2;
  const y = (window.mozInnerScreenY ?? 0) + r.top + r.height * 0.75;
  fetch("/report", {method: "POST", body: JSON.stringify({state: window.share_state,
    started_ms: window.share_started_ms, frames: window.share_frames, button: [x, y],
    size: [view.videoWidth, view.videoHeight]})}).catch(() => {});
}
setInterval(report, 100);
function toggle() { if (window.share_stream) { stopShare(); } else { share(); } }
async function share() {
  window.share_state = "pending";
  try {
    const stream = await navigator.mediaDevices.getDisplayMedia({video: true, audio: false});
    window.share_started_ms = Date.now();
    window.share_stream = stream;
    const track = stream.getVideoTracks()[0];
    track.onended = () => { window.share_state = "ended"; };
    const view = document.getElementById("view");
    view.srcObject = stream;
    const count = () => { window.share_frames++; view.requestVideoFrameCallback(count); };
    view.requestVideoFrameCallback(count);
    await view.play();
    // Firefox ESR gives no displaySurface; its label names the source ("Primary Monitor").
    window.share_state = "sharing " + (track.getSettings().displaySurface || track.label);
  } catch (err) {
    window.share_state = "error " + err.name + ": " + err.message;
  }
  report();
}
function stopShare() {
  if (window.share_stream) { window.share_stream.getTracks().forEach(t => t.stop()); }
  window.share_stream = null; window.share_frames = 0; window.share_state = "idle";
  report();
}
</script></body></html>
"""

BROWSER_BOX = Box(0, 0, 560, 360)  # where the browser window opens
# Chromium's bar, for xdotool's (extended) regex: "<origin> is sharing your screen." / "<origin> が画面を共有しています。"
INDICATOR_PATTERN = " is sharing | ?が.*を共有しています"
FIREFOX_INDICATOR_PATTERN = "^Firefox.*(Sharing Indicator|共有インジケーター)$"


class _PageHandler(BaseHTTPRequestHandler):
    server: SharePage

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        with contextlib.suppress(ValueError):
            report = json.loads(self.rfile.read(length))
            if isinstance(report, dict):
                self.server.report = report
        self.send_response(204)
        self.end_headers()

    def do_GET(self) -> None:
        body = SHARE_PAGE.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class SharePage(ThreadingHTTPServer):
    """The meeting page, served on 127.0.0.1 and opened as http://localhost:<port>/."""

    daemon_threads = True

    def __init__(self) -> None:
        self.report: dict[str, Any] = {}  # the page's last report (replaced whole: a read sees one report)
        super().__init__(("127.0.0.1", 0), _PageHandler)
        self._thread = threading.Thread(target=self.serve_forever, name="share-page", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://localhost:{self.server_address[1]}/"

    def close(self) -> None:
        self.shutdown()
        self.server_close()


@dataclass(frozen=True)
class ShareStart:
    """One share, on this process's monotonic clock: the click, and the moment the stream was delivered."""

    clicked: float
    started: float


class ChromiumShare:
    """Debian's chromium (headed, on the test desktop) on the meeting page, ready to share ``source``."""

    def __init__(self, desk: XDesktop, driver: Any, page: SharePage, profile: Path) -> None:
        self.desk = desk
        self.driver = driver
        self.page = page
        self._profile = profile

    @classmethod
    def open(
        cls,
        desk: XDesktop,
        home: Path,
        *,
        source: str = "Entire screen",
        box: Box = BROWSER_BOX,
        language: str = "en-US",
    ) -> ChromiumShare:
        """``source``: "Entire screen" or the title of a window to share (ASCII: a window titled "メモ" was
        never selected here); ``language``: the browser's UI language, which words its bar ("ja" needs
        Debian's chromium-l10n). With "ja" Chromium 156 here auto-selects a window but not the screen
        (neither "Entire screen" nor "画面全体": the picker stays)."""
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        require_chromium()
        home.mkdir(parents=True, exist_ok=True)
        profile = Path(tempfile.mkdtemp(prefix="mamori-share-chromium-"))
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in (
            "--no-sandbox",  # as root in CI
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--password-store=basic",
            f"--user-data-dir={profile}",
            f"--window-position={box.x},{box.y}",
            f"--window-size={box.width},{box.height}",
            f"--auto-select-desktop-capture-source={source}",
            f"--lang={language}",
        ):
            options.add_argument(flag)
        options.add_experimental_option("excludeSwitches", ["enable-automation"])  # no "controlled by" bar
        env = {**desk.env, "HOME": str(home), "LANGUAGE": language.replace("-", "_")}
        service = Service(executable_path=CHROMEDRIVER, env=env, log_output=str(home / "chromedriver.log"))
        page = SharePage()
        try:
            driver = webdriver.Chrome(options=options, service=service)
        except BaseException:
            page.close()
            shutil.rmtree(profile, ignore_errors=True)
            raise
        share = cls(desk, driver, page, profile)
        try:
            driver.get(page.url)
            wait_for(lambda: share.state() == "idle", timeout=30, what="the meeting page to load")
        except BaseException:
            share.close()
            raise
        return share

    def state(self) -> str:
        return str(self.driver.execute_script("return window.share_state || ''"))

    def frames(self) -> int:
        """Frames of the captured stream the page has played since the share started."""
        return int(self.driver.execute_script("return window.share_frames") or 0)

    def start(self, timeout: float = 30.0) -> ShareStart:
        """Click "Present"; returns when getDisplayMedia delivered the stream (HarnessError if it failed)."""
        button = self.driver.find_element("id", "share")
        clicked = time.monotonic()
        button.click()
        state: str = wait_for(
            lambda: "" if (s := self.state()) == "pending" else s,
            timeout=timeout,
            interval=0.05,
            what="getDisplayMedia to answer",
        )
        if not state.startswith("sharing"):
            raise HarnessError(f"chromium did not share: {state}")
        started_ms = float(self.driver.execute_script("return window.share_started_ms"))
        return ShareStart(clicked=clicked, started=_monotonic(started_ms))

    def stop(self) -> None:
        self.driver.execute_script("stopShare()")

    def indicator(self) -> int | None:
        """The X id of Chromium's sharing bar while it is mapped, else None."""
        return visible_window(self.desk, INDICATOR_PATTERN)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.driver.quit()
        self.page.close()
        shutil.rmtree(self._profile, ignore_errors=True)


class FirefoxShare:
    """Debian's firefox-esr on the meeting page, driven by real clicks (xdotool) since Debian ships no
    geckodriver; the page posts its state to :class:`SharePage`. ``media.navigator.permission.disabled``
    answers the share prompt with the entire screen, and Firefox shows its "Firefox — Sharing Indicator"
    window (WM_CLASS "Browser", "firefox-esr")."""

    PREFS = (
        ("browser.shell.checkDefaultBrowser", "false"),
        ("browser.startup.homepage_override.mstone", '"ignore"'),
        ("datareporting.policy.dataSubmissionEnabled", "false"),
        ("toolkit.telemetry.reportingpolicy.firstRun", "false"),
        ("browser.aboutwelcome.enabled", "false"),
        ("media.navigator.permission.disabled", "true"),
    )

    def __init__(self, desk: XDesktop, app: App, page: SharePage) -> None:
        self.desk = desk
        self.app = app
        self.page = page

    @classmethod
    def open(cls, desk: XDesktop, home: Path, *, box: Box = BROWSER_BOX) -> FirefoxShare:
        need("firefox-esr")
        profile = home / "firefox-share-profile"
        profile.mkdir(parents=True, exist_ok=True)
        (profile / "user.js").write_text("".join(f'user_pref("{k}", {v});\n' for k, v in cls.PREFS))
        page = SharePage()
        argv = ["firefox-esr", "--no-remote", "--new-instance", "--profile", str(profile), page.url]
        share = cls(desk, spawn(desk, "firefox", argv, home), page)
        try:
            share.app.xid = find_window(desk, "Weekly sync")
            place(desk, share.app.xid, box)
            wait_for(
                lambda: share.page.report.get("state") == "idle" and share._button_on(box),
                timeout=30,
                what="the meeting page to load where it was placed",
            )
        except BaseException:
            share.close()
            raise
        return share

    def _button_on(self, box: Box) -> bool:
        x, y = self.page.report.get("button", (-1, -1))
        return bool(box.x <= x < box.x + box.width and box.y <= y < box.y + box.height)

    def state(self) -> str:
        return str(self.page.report.get("state", ""))

    def frames(self) -> int:
        return int(self.page.report.get("frames", 0))

    def size(self) -> tuple[int, int]:
        """Width and height of the shared stream's frames."""
        width, height = self.page.report.get("size", (0, 0))
        return int(width), int(height)

    def _click(self) -> float:
        x, y = self.page.report["button"]
        clicked = time.monotonic()
        # Not XDesktop.click: its "mousemove --sync" waits forever when the pointer is already there (the stop
        # click lands where the start click did). XTEST events are handled in order, so no sync is needed.
        self.desk.xdotool("mousemove", str(int(x)), str(int(y)), "click", "1")
        return clicked

    def start(self, timeout: float = 30.0) -> ShareStart:
        """Click "Present"; returns when getDisplayMedia delivered the stream (HarnessError if it failed)."""
        clicked = self._click()
        state: str = wait_for(
            lambda: s if (s := self.state()) not in ("idle", "pending") else "",
            timeout=timeout,
            interval=0.05,
            what="getDisplayMedia to answer",
        )
        if not state.startswith("sharing"):
            raise HarnessError(f"firefox did not share: {state}")
        return ShareStart(clicked=clicked, started=_monotonic(float(self.page.report["started_ms"])))

    def stop(self) -> None:
        """Click "Present" again: the page stops its stream."""
        self._click()
        wait_for(lambda: self.state() == "idle", timeout=15, what="the page to stop sharing")

    def indicator(self) -> int | None:
        """The X id of Firefox's sharing indicator while it is mapped, else None."""
        return visible_window(self.desk, FIREFOX_INDICATOR_PATTERN)

    def close(self) -> None:
        self.app.stop()
        self.page.close()


def _monotonic(wall_ms: float) -> float:
    """A Date.now() of the page (this machine's wall clock) on this process's monotonic clock."""
    return time.monotonic() - (time.time() - wall_ms / 1000.0)


def visible_window(desk: XDesktop, pattern: str) -> int | None:
    """The first mapped window whose title matches ``pattern`` (xdotool's extended regex), else None."""
    out = subprocess.run(
        ["xdotool", "search", "--onlyvisible", "--name", pattern],
        env=desk.env,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    ).stdout.split()
    return int(out[0]) if out else None


def indicator_title(desk: XDesktop, xid: int) -> str:
    """_NET_WM_NAME of a window (Chromium's bar sets no WM_NAME and no WM_CLASS)."""
    from Xlib import display as xdisplay

    d: Any = xdisplay.Display(desk.display)
    try:
        prop = d.create_resource_object("window", xid).get_full_property(
            d.intern_atom("_NET_WM_NAME"), d.intern_atom("UTF8_STRING")
        )
        return prop.value.decode("utf-8", errors="replace") if prop is not None else ""
    finally:
        d.close()
