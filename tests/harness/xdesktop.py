"""A real X desktop for tests: Xvfb on a free display, openbox (EWMH), trayer (system tray).

Everything is real: windows are Tk processes, input goes through XTEST (xdotool), screenshots come from
ImageMagick ``import`` and text is read back with tesseract. Used through the ``xdesktop`` fixture
(tests/harness/desktop.py) or directly::

    with XDesktop.start(monitors=2) as desk:
        win = desk.open_window("顧客台帳 - Excel", text="03-1234-5678", process="excel")
        assert "03-1234-5678" in desk.ocr_digits(win.rect())

Display numbers are chosen by Xvfb itself (``-displayfd``), so parallel runs never collide.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

REQUIRED_TOOLS = ("Xvfb", "openbox", "xdotool", "xprop", "import", "tesseract")
TKAPP = Path(__file__).with_name("tkapp.py")


class HarnessError(RuntimeError):
    """The test desktop could not be started or driven."""


def missing_tools(tray: bool = True) -> list[str]:
    tools = (*REQUIRED_TOOLS, "trayer") if tray else REQUIRED_TOOLS
    return [t for t in tools if shutil.which(t) is None]


@dataclass(frozen=True)
class Box:
    """A rectangle in root-window coordinates."""

    x: int
    y: int
    width: int
    height: int

    def inset(self, margin: int) -> Box:
        return Box(self.x + margin, self.y + margin, self.width - 2 * margin, self.height - 2 * margin)

    @property
    def center(self) -> tuple[int, int]:
        return self.x + self.width // 2, self.y + self.height // 2


def wait_for(predicate: Callable[[], T], timeout: float = 5.0, interval: float = 0.05, what: str = "") -> T:
    """Poll ``predicate`` until it returns something truthy; raise AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


def digits_only(text: str) -> str:
    """OCR text reduced to digits and dashes, so '03-1234-5678' survives stray spaces."""
    return re.sub(r"[^0-9-]", "", text)


def image_digits(png: Path, box: Box) -> str:
    """Digits tesseract reads in ``box`` of an image file (a recorded or shared frame, not the live screen)."""
    cropped = subprocess.run(
        ["convert", str(png), "-crop", f"{box.width}x{box.height}+{box.x}+{box.y}", "+repage", "png:-"],
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    text = subprocess.run(
        ["tesseract", "stdin", "stdout", "--psm", "6"],
        input=cropped,
        capture_output=True,
        timeout=60,
        check=False,
    ).stdout.decode(errors="replace")
    return digits_only(text)


def _readline(proc: subprocess.Popen[str], timeout: float) -> str:
    """One line of the child's stdout, or "" when it says nothing for ``timeout`` seconds."""
    import select

    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    return proc.stdout.readline() if ready else ""


class TkWindow:
    """A Tk test window in its own process."""

    def __init__(
        self, desk: XDesktop, proc: subprocess.Popen[str], title: str, text: str, process: str
    ) -> None:
        self.desk = desk
        self.proc = proc
        self.title = title
        self.text = text
        self.process = process
        line = _readline(proc, timeout=30)  # generous: a loaded 2-core CI machine starts Tk slowly
        if not line:
            proc.kill()
            err = proc.stderr.read() if proc.stderr else ""
            raise HarnessError(f"Tk window {title!r} did not start: {err.strip()}")
        hello = json.loads(line)
        self.xid: int = hello["xid"]
        self.pid: int = hello["pid"]

    def _send(self, cmd: str, value: Any = None) -> None:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps({"cmd": cmd, "value": value}) + "\n")
        self.proc.stdin.flush()
        if cmd != "quit" and not _readline(self.proc, timeout=5):
            raise HarnessError(f"Tk window did not answer {cmd!r}")

    def rect(self) -> Box:
        """The client area (without openbox decorations) in root coordinates."""
        return self.desk.window_box(self.xid)

    def frame_rect(self) -> Box:
        """The window with openbox's decorations (title bar, borders): what a viewer sees of it."""
        return self.desk.frame_box(self.xid)

    def move(self, x: int, y: int) -> None:
        """Move the window the way a user would (through the window manager), and wait until it moved."""
        before = self.rect()
        self.desk.xdotool("windowmove", str(self.xid), str(x), str(y))
        wait_for(lambda: self.rect() != before, timeout=3, what="window to move")
        time.sleep(0.05)

    def resize(self, width: int, height: int) -> None:
        self.desk.xdotool("windowsize", str(self.xid), str(width), str(height))
        wait_for(lambda: (self.rect().width, self.rect().height) == (width, height), what="window to resize")

    def activate(self) -> None:
        self.desk.xdotool("windowactivate", "--sync", str(self.xid))

    def set_title(self, title: str) -> None:
        self._send("title", title)
        self.title = title

    def set_text(self, text: str) -> None:
        self._send("text", text)
        self.text = text

    def set_fullscreen(self, on: bool) -> None:
        self._send("fullscreen", on)

    def close(self) -> None:
        """Close the window (the app exits) and wait until the X server no longer lists it."""
        if self.proc.poll() is None:
            with contextlib.suppress(BrokenPipeError, OSError):
                self._send("quit")
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        wait_for(lambda: self.xid not in self.desk.client_list(), timeout=3, what="window to disappear")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class XDesktop:
    """A running Xvfb + openbox (+ trayer). Use :meth:`start` and :meth:`stop` (or ``with``)."""

    def __init__(self, display: str, width: int, height: int, monitors: list[Box], workdir: Path) -> None:
        self.display = display
        self.width = width
        self.height = height
        #: The monitor layout the test uses. With ``monitors=2`` the wide screen is split in two halves
        #: (Xvfb cannot place Xinerama heads side by side and ignores ``xrandr --setmonitor``).
        self.monitors = monitors
        self.workdir = workdir
        self.env = {**os.environ, "DISPLAY": display}
        self.env.pop("WAYLAND_DISPLAY", None)
        self._procs: list[subprocess.Popen[Any]] = []
        self.windows: list[TkWindow] = []
        self._x: Any = None

    # ---- lifecycle -------------------------------------------------------------------------------------
    @classmethod
    def start(
        cls, *, monitors: int = 1, size: tuple[int, int] = (1280, 800), tray: bool = True, wm: bool = True
    ) -> XDesktop:
        missing = missing_tools(tray)
        if missing:
            raise HarnessError(f"missing tools: {', '.join(missing)} (install them with .ci/run)")
        width, height = size[0] * monitors, size[1]
        workdir = Path(tempfile.mkdtemp(prefix="mamori-xdesk-"))
        read_fd, write_fd = os.pipe()
        xvfb = subprocess.Popen(
            [
                "Xvfb",
                "-displayfd",
                str(write_fd),
                "-screen",
                "0",
                f"{width}x{height}x24",
                "-nolisten",
                "tcp",
                "-noreset",
                "+extension",
                "MIT-SCREEN-SAVER",
            ],
            pass_fds=(write_fd,),
            stdout=subprocess.DEVNULL,
            stderr=open(workdir / "xvfb.log", "w"),  # noqa: SIM115
            start_new_session=True,
        )
        os.close(write_fd)
        number = b""
        with os.fdopen(read_fd, "rb") as pipe:
            while not number.endswith(b"\n"):
                chunk = pipe.read(1)
                if not chunk:
                    break
                number += chunk
        if not number.strip():
            xvfb.kill()
            raise HarnessError(f"Xvfb did not start: {(workdir / 'xvfb.log').read_text()[-500:]}")
        boxes = [Box(i * size[0], 0, size[0], size[1]) for i in range(monitors)]
        desk = cls(f":{number.decode().strip()}", width, height, boxes, workdir)
        desk._procs.append(xvfb)
        try:
            from Xlib import display as xdisplay

            desk._x = xdisplay.Display(desk.display)
            if wm:
                desk._spawn(["openbox", "--sm-disable"], "openbox")
                wait_for(desk._wm_running, timeout=10, what="openbox to manage the screen")
            if tray:
                desk._spawn(
                    [
                        "trayer",
                        "--edge",
                        "top",
                        "--align",
                        "right",
                        "--widthtype",
                        "pixel",
                        "--width",
                        "120",
                        "--height",
                        "24",
                        "--SetDockType",
                        "true",
                        "--SetPartialStrut",
                        "false",
                        "--transparent",
                        "false",
                    ],
                    "trayer",
                )
                wait_for(desk.tray_running, timeout=10, what="trayer to own the system tray selection")
        except BaseException:
            desk.stop()
            raise
        return desk

    def _spawn(self, argv: list[str], name: str) -> subprocess.Popen[Any]:
        proc = subprocess.Popen(
            argv,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=open(self.workdir / f"{name}.log", "w"),  # noqa: SIM115
            start_new_session=True,
        )
        self._procs.append(proc)
        return proc

    def stop(self) -> None:
        for win in self.windows:
            win.kill()
        if self._x is not None:
            with contextlib.suppress(Exception):
                self._x.close()
            self._x = None
        for proc in reversed(self._procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        self._procs.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> XDesktop:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- X queries -------------------------------------------------------------------------------------
    def _root_prop(self, name: str) -> Any:
        root = self._x.screen().root
        prop = root.get_full_property(self._x.intern_atom(name), 0)
        return prop.value if prop is not None else None

    def _wm_running(self) -> bool:
        return self._root_prop("_NET_SUPPORTING_WM_CHECK") is not None

    def tray_running(self) -> bool:
        owner = self._x.get_selection_owner(self._x.intern_atom("_NET_SYSTEM_TRAY_S0"))
        return bool(owner)

    def client_list(self) -> list[int]:
        """EWMH _NET_CLIENT_LIST: the windows openbox manages, in mapping order."""
        value = self._root_prop("_NET_CLIENT_LIST")
        return [int(v) for v in value] if value is not None else []

    def window_box(self, xid: int) -> Box:
        win = self._x.create_resource_object("window", xid)
        geom = win.get_geometry()
        coords = win.translate_coords(self._x.screen().root, 0, 0)
        return Box(-coords.x, -coords.y, geom.width, geom.height)

    def frame_box(self, xid: int) -> Box:
        """``window_box`` grown by the EWMH ``_NET_FRAME_EXTENTS`` (left, right, top, bottom) the WM set."""
        box = self.window_box(xid)
        win = self._x.create_resource_object("window", xid)
        prop = win.get_full_property(self._x.intern_atom("_NET_FRAME_EXTENTS"), 0)
        if prop is None or len(prop.value) != 4:
            return box
        left, right, top, bottom = (int(v) for v in prop.value)
        return Box(box.x - left, box.y - top, box.width + left + right, box.height + top + bottom)

    def window_at(self, x: int, y: int) -> int | None:
        """The top-level window (not the openbox frame) visible at (x, y), via xdotool."""
        self.xdotool("mousemove", str(x), str(y))
        out = self.xdotool("getmouselocation", "--shell")
        match = re.search(r"WINDOW=(\d+)", out)
        return int(match.group(1)) if match else None

    def override_redirect_windows(self) -> list[Box]:
        """Mapped override-redirect children of the root (how the cover helper's windows appear)."""
        out: list[Box] = []
        root = self._x.screen().root
        for child in root.query_tree().children:
            try:
                attrs = child.get_attributes()
                if attrs.override_redirect and attrs.map_state == 2:  # IsViewable
                    geom = child.get_geometry()
                    out.append(Box(geom.x, geom.y, geom.width, geom.height))
            except Exception:
                continue
        return out

    # ---- windows ---------------------------------------------------------------------------------------
    def open_window(
        self,
        title: str,
        text: str = "03-1234-5678",
        *,
        process: str = "custapp",
        wm_class: str = "Custapp",
        x: int = 80,
        y: int = 80,
        width: int = 640,
        height: int = 200,
        font_size: int = 40,
    ) -> TkWindow:
        """Open a Tk window in a process named ``process`` showing ``text`` in a big font."""
        bindir = self.workdir / "bin"
        bindir.mkdir(exist_ok=True)
        exe = bindir / process
        if not exe.exists():
            # comm (what psutil.name() and the agent see) is the basename of the executed path.
            exe.symlink_to(os.path.realpath(sys.executable))
        proc = subprocess.Popen(
            [
                str(exe),
                "-I",
                str(TKAPP),
                "--title",
                title,
                "--text",
                text,
                "--wm-class",
                wm_class,
                "--geometry",
                f"{width}x{height}+{x}+{y}",
                "--font-size",
                str(font_size),
            ],
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        win = TkWindow(self, proc, title, text, process)
        self.windows.append(win)
        wait_for(lambda: win.xid in self.client_list(), timeout=5, what=f"{title!r} to be managed")
        return win

    # ---- input -----------------------------------------------------------------------------------------
    def xdotool(self, *args: str) -> str:
        result = subprocess.run(
            ["xdotool", *args], env=self.env, capture_output=True, text=True, timeout=10, check=False
        )
        if result.returncode != 0:
            raise HarnessError(f"xdotool {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def mouse_move(self, x: int, y: int) -> None:
        self.xdotool("mousemove", "--sync", str(x), str(y))

    def click(self, x: int, y: int, button: int = 1) -> None:
        self.xdotool("mousemove", "--sync", str(x), str(y), "click", str(button))

    def key(self, *keys: str) -> None:
        self.xdotool("key", *keys)

    def type_text(self, text: str) -> None:
        self.xdotool("type", "--delay", "10", text)

    def nudge(self) -> None:
        """User activity without side effects: move the pointer by one pixel and back."""
        self.xdotool("mousemove_relative", "--", "1", "1")
        self.xdotool("mousemove_relative", "--", "-1", "-1")

    # ---- screen ----------------------------------------------------------------------------------------
    def screenshot(self, box: Box | None = None) -> bytes:
        """PNG bytes of the root window (or of ``box``) as a viewer would see it, via ImageMagick import."""
        argv = ["import", "-display", self.display, "-window", "root"]
        if box is not None:
            argv += ["-crop", f"{box.width}x{box.height}+{box.x}+{box.y}", "+repage"]
        result = subprocess.run([*argv, "png:-"], env=self.env, capture_output=True, timeout=20, check=False)
        if result.returncode != 0:
            raise HarnessError(f"import failed: {result.stderr.decode(errors='replace').strip()}")
        return result.stdout

    def ocr(self, box: Box | None = None, lang: str = "eng", psm: int = 6) -> str:
        """Text tesseract reads in ``box`` (``lang`` "eng", "jpn" or "eng+jpn")."""
        png = self.screenshot(box)
        result = subprocess.run(
            ["tesseract", "stdin", "stdout", "-l", lang, "--psm", str(psm)],
            input=png,
            capture_output=True,
            timeout=60,
            check=False,
            env={**os.environ, "OMP_THREAD_LIMIT": "1"},
        )
        if result.returncode != 0:
            raise HarnessError(f"tesseract failed: {result.stderr.decode(errors='replace').strip()}")
        return result.stdout.decode("utf-8", errors="replace")

    def ocr_digits(self, box: Box | None = None) -> str:
        return digits_only(self.ocr(box))

    def can_read(self, text: str, box: Box | None = None) -> bool:
        """True when OCR of ``box`` contains ``text`` (compared on digits and dashes when it has digits)."""
        if re.search(r"\d", text):
            return digits_only(text) in self.ocr_digits(box)
        return text in self.ocr(box, lang="eng+jpn")

    def pixel(self, x: int, y: int) -> tuple[int, int, int]:
        """The RGB colour of one screen pixel."""
        from io import BytesIO

        from PIL import Image

        img = Image.open(BytesIO(self.screenshot(Box(x, y, 1, 1)))).convert("RGB")
        r, g, b = img.getpixel((0, 0))  # type: ignore[misc]
        return int(r), int(g), int(b)


@contextlib.contextmanager
def running_desktop(**kwargs: Any) -> Iterator[XDesktop]:
    desk = XDesktop.start(**kwargs)
    try:
        yield desk
    finally:
        desk.stop()
