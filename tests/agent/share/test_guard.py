"""install_share_guard with the real Runtime over the fake desktop: the share reason covers customer windows
with the share label, status shows the apps, and a failed self-check notifies the worker."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from agent.app import build_runtime
from agent.config import AgentConfig
from agent.i18n import Translator
from agent.platform.base import Rect
from agent.platform.fake import FakeDesktop
from agent.report.stream import EventStream, Kind
from agent.share.guard import install_share_guard
from agent.share.monitor import ShareNotice
from agent.share.selfcheck import OPAQUE_COVER
from core.clock import FakeClock
from tests.harness.fakes import RecordingSink, policy, window
from tests.harness.share_fixtures import ScriptedProcesses

CRM = window(1, "Acme | Salesforce", "chrome", Rect(100, 100, 800, 600))
NOTES = window(2, "notes.txt", "gedit", Rect(950, 100, 400, 300))
BAR = window(3, "meet.google.com が画面を共有しています。", "chrome", Rect(600, 1000, 420, 40))


class PaintedScreen:
    """A grabber returning a screen where the covers the sink was asked for are painted (or not)."""

    def __init__(self, sink: RecordingSink) -> None:
        self.sink = sink
        self.paint = True

    def grab(self) -> tuple[Image.Image, Rect]:
        image = Image.new("RGB", (1920, 1080), "white")
        if self.paint:
            for cover in self.sink.current:
                r = cover.rect
                image.paste(Image.new("RGB", (r.width, r.height), OPAQUE_COVER.background), (r.x, r.y))
        return image, Rect(0, 0, 1920, 1080)


def test_share_guard_drives_the_runtime(tmp_path: Path) -> None:
    clock = FakeClock()
    desk = FakeDesktop([CRM, NOTES])
    sink = RecordingSink()
    stream = EventStream()
    runtime = build_runtime(
        AgentConfig(state_dir=tmp_path),
        policy(),
        desk,
        stream,
        clock,
        overlay=sink,
        translator=Translator("en"),
    )
    notices: list[ShareNotice] = []
    screen = PaintedScreen(sink)
    monitor = install_share_guard(
        runtime,
        desk,
        stream,
        clock,
        notify=notices.append,
        grabber=screen,
        process_lister=ScriptedProcesses(["systemd", "chrome", "gedit"]),
    ).monitor

    desk.add_window(BAR)
    state = monitor.poll_once()
    assert state.apps == ("Browser",)
    runtime.protection.step()
    assert [(c.key, c.style) for c in sink.current] == [("w:1", "opaque")]
    assert sink.current[0].label.startswith("Customer data hidden while you share your screen")
    assert runtime.status()["share"] == {"active": True, "apps": ["Browser"], "unknown": []}
    assert [n.key for n in notices] == ["share.notice"]

    clock.advance(1.0)
    monitor.poll_once()  # self-check due: the cover is in the "captured" screen
    assert [e for e in stream.recent() if e.kind is Kind.SHARE_SELFCHECK_FAILED] == []

    screen.paint = False  # the cover is not in what the share captures
    clock.advance(30.0)
    monitor.poll_once()
    failed = [dict(e.data) for e in stream.recent() if e.kind is Kind.SHARE_SELFCHECK_FAILED]
    assert failed == [{"rules": ["crm"], "count": 1}]
    assert notices[-1].key == "share.selfcheck_failed" and notices[-1].apps == ("crm",)
    assert "共有を停止" in notices[-1].text["ja"] and "locked" in notices[-1].text["en"]
    # a cover the capture cannot see is no protection: the session is locked, and the lock verified
    runtime.protection.session_lock.join()
    assert desk.locked
    assert [e.kind for e in stream.recent() if e.kind is Kind.SESSION_LOCKED] == [Kind.SESSION_LOCKED]

    desk.remove_window(BAR.id)
    clock.advance(0.2)
    monitor.poll_once()
    clock.advance(0.2)
    assert not monitor.poll_once().active
    runtime.protection.step()
    assert sink.current == []
