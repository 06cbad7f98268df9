"""Helpers for the UI desktop tests: run the real tray (tests/harness/trayapp.py), find it, read and click text."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.harness.xdesktop import Box, XDesktop, wait_for

ROOT = Path(__file__).resolve().parents[2]
TRAYAPP = Path(__file__).with_name("trayapp.py")
DOCS_IMG = ROOT / "docs" / "img"
SCRATCH_IMG = Path(tempfile.gettempdir()) / "mamori-test-img"


class TrayApp:
    def __init__(
        self,
        desk: XDesktop,
        workdir: Path,
        lang: str,
        status: dict[str, Any],
        policy: str | None = None,
        show_ack: bool = False,
        extra: list[str] | None = None,
    ) -> None:
        self.desk = desk
        self.status_file = workdir / "status.json"
        self.out = workdir / "out.jsonl"
        self.out.write_text("")
        self.set_status(status)
        argv = [
            sys.executable,
            str(TRAYAPP),
            "--status",
            str(self.status_file),
            "--out",
            str(self.out),
            "--lang",
            lang,
            "--state-dir",
            str(workdir / "state"),
        ]
        if policy is not None:
            (workdir / "policy.toml").write_text(policy, encoding="utf-8")
            argv += ["--policy", str(workdir / "policy.toml")]
        if show_ack:
            argv.append("--show-ack")
        argv += extra or []
        env = {**desk.env, "PYSTRAY_BACKEND": "xorg", "PYTHONPATH": str(ROOT), "MAMORI_PANEL": "light"}
        self.log = workdir / "trayapp.log"
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=self.log.open("w"))
        try:
            self.xid = int(wait_for(self._find_icon, timeout=15, what="the tray icon to be docked"))
        except AssertionError as err:
            self.proc.send_signal(signal.SIGUSR1)
            time.sleep(1)
            self.stop()
            raise AssertionError(f"{err}; trayapp log:\n{self.log.read_text()[-6000:]}") from err

    def _find_icon(self) -> str | None:
        if self.proc.poll() is not None:
            raise AssertionError(f"trayapp exited: {self.log.read_text()[-2000:]}")
        r = subprocess.run(
            ["xdotool", "search", "--classname", "MamoriSystemTrayIcon"],
            env=self.desk.env,
            capture_output=True,
            text=True,
            check=False,
        )
        ids = r.stdout.split()
        if not ids:
            return None
        box = self.desk.window_box(int(ids[0]))
        return ids[0] if box.width > 4 and box.y >= 0 else None  # docked into trayer, not at (-1,-1)

    def icon_box(self) -> Box:
        return self.desk.window_box(self.xid)

    def set_status(self, status: dict[str, Any]) -> None:
        tmp = self.status_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(status), encoding="utf-8")
        os.replace(tmp, self.status_file)

    def records(self) -> list[dict[str, Any]]:
        return [
            json.loads(line) for line in self.out.read_text(encoding="utf-8").splitlines() if line.strip()
        ]

    def commands(self) -> list[str]:
        return [r["command"] for r in self.records() if "command" in r]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def window_names(desk: XDesktop) -> dict[int, str]:
    """Visible named windows by their UTF-8 _NET_WM_NAME.

    Names are compared in Python: xdotool's --name regex runs in the C locale and misses Japanese titles.
    """
    from Xlib import display as xdisplay

    r = subprocess.run(
        ["xdotool", "search", "--onlyvisible", "--name", "."],
        env=desk.env,
        capture_output=True,
        text=True,
        check=False,
    )
    out: dict[int, str] = {}
    conn = xdisplay.Display(desk.display)
    try:
        net_wm_name, utf8 = conn.intern_atom("_NET_WM_NAME"), conn.intern_atom("UTF8_STRING")
        for xid in (int(x) for x in r.stdout.split()):
            try:
                prop = conn.create_resource_object("window", xid).get_full_property(net_wm_name, utf8)
            except Exception:
                continue
            if prop is not None:
                value = prop.value
                out[xid] = value.decode("utf-8") if isinstance(value, bytes) else str(value)
    finally:
        conn.close()
    return out


def find_window(desk: XDesktop, name: str, timeout: float = 10.0) -> int:
    def search() -> int | None:
        ids = [xid for xid, n in window_names(desk).items() if n == name]
        return ids[-1] if ids else None

    return int(wait_for(search, timeout=timeout, what=f"window {name!r}"))


def window_gone(desk: XDesktop, name: str) -> bool:
    return name not in window_names(desk).values()


def ocr_words(desk: XDesktop, box: Box, lang: str = "eng") -> list[tuple[str, Box]]:
    """Words tesseract reads in ``box`` with their boxes in root coordinates."""
    png = desk.screenshot(box)
    r = subprocess.run(
        ["tesseract", "stdin", "stdout", "-l", lang, "--psm", "11", "tsv"],
        input=png,
        capture_output=True,
        timeout=60,
        check=True,
        env={**os.environ, "OMP_THREAD_LIMIT": "1"},
    )
    words = []
    for line in r.stdout.decode("utf-8", errors="replace").splitlines()[1:]:
        cols = line.split("\t")
        if len(cols) == 12 and cols[11].strip():
            x, y, w, h = (int(c) for c in cols[6:10])
            words.append((cols[11].strip(), Box(box.x + x, box.y + y, w, h)))
    return words


def click_text(desk: XDesktop, box: Box, word: str) -> None:
    """Click the first place where OCR reads ``word`` inside ``box`` (how a person finds a button)."""
    found = wait_for(
        lambda: next((b for w, b in ocr_words(desk, box) if w == word), None),
        timeout=10,
        what=f"text {word!r} on screen",
    )
    desk.click(*found.center)


def squash(text: str) -> str:
    """OCR text without whitespace: tesseract's jpn model puts spaces between characters."""
    return re.sub(r"\s+", "", text)


def save_png(name: str, png: bytes) -> Path:
    """Keep a screenshot: under docs/img/ for the user guides when MAMORI_UPDATE_DOCS_IMAGES=1, else in a
    temporary folder (a test run must not rewrite tracked files)."""
    folder = DOCS_IMG if os.environ.get("MAMORI_UPDATE_DOCS_IMAGES") == "1" else SCRATCH_IMG
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(png)
    return path


def settle(seconds: float = 0.3) -> None:
    """Let the X server and the window manager finish drawing before a screenshot (not a timing assertion)."""
    time.sleep(seconds)
