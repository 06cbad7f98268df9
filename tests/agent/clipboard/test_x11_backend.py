"""The X11 clipboard backend against a real X server (Xvfb + openbox): who owns CLIPBOARD and PRIMARY, and what
the agent's window answers once it owns them (ICCCM targets), read by Debian's xclip like any app pasting."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator

import pytest

from agent.clipboard.base import CLIPBOARD, PRIMARY, Owner
from agent.clipboard.x11 import X11Clipboard
from tests.harness.xdesktop import XDesktop, wait_for

pytestmark = pytest.mark.skipif(shutil.which("xclip") is None, reason="xclip not installed (run .ci/run)")


def xclip_out(desk: XDesktop, selection: str, target: str | None = None) -> tuple[int, str]:
    args = ["xclip", "-o", "-selection", selection, *(["-t", target] if target else [])]
    result = subprocess.run(args, check=False, env=desk.env, capture_output=True, text=True, timeout=10)
    return result.returncode, result.stdout


def owner_when(clipboard: X11Clipboard, index: int, predicate: Callable[[Owner], bool], what: str) -> Owner:
    def check() -> Owner | None:
        owner = clipboard.owners()[index]
        return owner if predicate(owner) else None

    found = wait_for(check, what=what)
    assert found is not None
    return found


@pytest.fixture
def clipboard(xdesktop: XDesktop) -> Iterator[X11Clipboard]:
    backend = X11Clipboard(xdesktop.display)
    yield backend
    backend.close()


def test_owners_are_followed_with_their_process_and_windows(
    xdesktop: XDesktop, clipboard: X11Clipboard
) -> None:
    assert all(o.empty for o in clipboard.owners())
    ledger = xdesktop.open_window("顧客台帳 - Excel", process="excel")
    ledger._send("copy", "03-1234-5678")
    # Tk owns CLIPBOARD with a hidden window of its own; the same X connection's client window is the ledger.
    owner = owner_when(clipboard, 0, lambda o: not o.empty, "clipboard owner")
    assert (owner.selection, owner.pid, owner.process_name) == (CLIPBOARD, ledger.pid, "excel")
    assert ledger.xid in owner.window_ids
    ledger._send("select", "0120")
    primary = owner_when(clipboard, 1, lambda o: not o.empty, "primary owner")
    assert (primary.selection, primary.pid) == (PRIMARY, ledger.pid)
    notes = xdesktop.open_window("メモ", process="notes", x=700)
    notes._send("copy", "memo")
    moved = owner_when(clipboard, 0, lambda o: o.pid == notes.pid, "new owner")
    assert moved.serial > owner.serial and moved.previous is not None and moved.previous.pid == ledger.pid
    notes.close()  # the owner's client goes away: XFIXES says so
    wait_for(lambda: clipboard.owners()[0].empty, what="ownerless clipboard")


def test_the_notice_is_served_as_text_targets_and_other_targets_are_refused(
    xdesktop: XDesktop, clipboard: X11Clipboard
) -> None:
    notice = "【Mamori】消去しました\n[Mamori] Removed"
    clipboard.take(CLIPBOARD, notice)
    assert clipboard.owners()[0].ours
    assert xclip_out(xdesktop, "clipboard") == (0, notice)  # UTF8_STRING
    assert xclip_out(xdesktop, "clipboard", "text/plain;charset=utf-8") == (0, notice)
    assert xclip_out(xdesktop, "clipboard", "STRING") == (0, "[Mamori] Removed")  # Latin-1: the English line
    code, targets = xclip_out(xdesktop, "clipboard", "TARGETS")
    assert code == 0 and targets.split() == [
        "TARGETS", "TIMESTAMP", "UTF8_STRING", "text/plain;charset=utf-8", "TEXT", "STRING",
    ]  # fmt: skip
    assert xclip_out(xdesktop, "clipboard", "image/png")[0] != 0


def test_clear_mode_owns_an_empty_selection(xdesktop: XDesktop, clipboard: X11Clipboard) -> None:
    ledger = xdesktop.open_window("顧客台帳 - Excel", process="excel")
    ledger._send("select", "03-1234-5678")
    assert xclip_out(xdesktop, "primary") == (0, "03-1234-5678")
    clipboard.take(PRIMARY, None)
    assert xclip_out(xdesktop, "primary")[0] != 0  # nothing to paste
    code, targets = xclip_out(xdesktop, "primary", "TARGETS")
    assert code == 0 and targets.split() == ["TARGETS", "TIMESTAMP"]
    # Another app's copy replaces the agent as owner, as usual.
    proc = subprocess.Popen(
        ["xclip", "-selection", "primary"], env=xdesktop.env, stdin=subprocess.PIPE, text=True
    )
    proc.communicate("later", timeout=10)
    wait_for(lambda: not clipboard.owners()[1].ours, what="the agent lost PRIMARY")
    assert xclip_out(xdesktop, "primary") == (0, "later")
