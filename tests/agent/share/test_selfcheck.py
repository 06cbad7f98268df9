"""Self-check: the captured screen must show the cover over each customer window."""

from __future__ import annotations

import re

from PIL import Image, ImageDraw

from agent.platform.base import Rect, Window
from agent.report.stream import EventStream, Kind
from agent.share.selfcheck import (
    OPAQUE_COVER,
    CaptureError,
    CoverLook,
    CoverTarget,
    MssGrabber,
    SelfCheckResult,
    ShareSelfCheck,
    check_covers,
    cover_fraction,
    runtime_targets,
)
from core.clock import FakeClock
from policy.model import CustomerApp
from tests.harness.xdesktop import Box, XDesktop
from tests.harness.xwindows import CoverWindow

COVER = (38, 50, 56)
LOOK = CoverLook(background=COVER)


def screen_with_cover(cover: Rect | None, size: tuple[int, int] = (800, 600)) -> Image.Image:
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.text((20, 20), "03-1234-5678", fill="black")
    if cover is not None:
        draw.rectangle((cover.x, cover.y, cover.x + cover.width - 1, cover.y + cover.height - 1), fill=COVER)
        # the label, in white, over part of the cover
        draw.rectangle((cover.x + 10, cover.y + 10, cover.x + cover.width // 3, cover.y + 30), fill="white")
    return image


def test_cover_fraction() -> None:
    assert cover_fraction(Image.new("RGB", (10, 10), COVER), COVER, 0) == 1.0
    half = Image.new("RGB", (10, 10), "white")
    half.paste(Image.new("RGB", (5, 10), (40, 52, 50)), (0, 0))
    assert cover_fraction(half, COVER, 8) == 0.5
    assert cover_fraction(half, COVER, 1) == 0.0
    assert cover_fraction(Image.new("RGB", (0, 0)), COVER, 8) == 0.0


def test_check_covers_passes_over_cover_and_fails_over_content() -> None:
    covered = CoverTarget("customer-db", Rect(100, 100, 300, 200))
    bare = CoverTarget("crm", Rect(450, 300, 300, 200))
    offscreen = CoverTarget("excel", Rect(-900, 0, 300, 200))
    result = check_covers(
        screen_with_cover(covered.rect), Rect(0, 0, 800, 600), [covered, bare, offscreen], LOOK
    )
    assert not result.ok
    assert result.failed == (bare,)
    by_rule = {c.target.rule: c for c in result.checks}
    assert by_rule["customer-db"].ok and by_rule["customer-db"].fraction is not None
    assert by_rule["customer-db"].fraction > 0.8
    assert by_rule["crm"].fraction == 0.0
    assert by_rule["excel"].fraction is None and by_rule["excel"].ok


def test_check_covers_honours_the_screen_origin() -> None:
    # Virtual screen starting left of the primary monitor (a monitor at x=-800).
    image = screen_with_cover(Rect(100, 100, 300, 200), size=(1600, 600))
    left = CoverTarget("customer-db", Rect(-700, 100, 300, 200))
    right = CoverTarget("crm", Rect(100, 100, 300, 200))  # image x 900: not covered
    result = check_covers(image, Rect(-800, 0, 1600, 600), [left, right], LOOK)
    assert result.failed == (right,)


class StaticGrabber:
    def __init__(self, image: Image.Image | None) -> None:
        self.image = image
        self.grabs = 0

    def grab(self) -> tuple[Image.Image, Rect]:
        self.grabs += 1
        if self.image is None:
            raise CaptureError("screen capture failed: XGetImage() failed")
        return self.image, Rect(0, 0, self.image.width, self.image.height)


def run_check(
    image: Image.Image | None, targets: list[CoverTarget]
) -> tuple[SelfCheckResult, list[dict[str, object]], int]:
    stream = EventStream()
    events = stream.subscribe()
    failures: list[SelfCheckResult] = []
    grabber = StaticGrabber(image)
    check = ShareSelfCheck(
        lambda: targets, LOOK, grabber=grabber, stream=stream, clock=FakeClock(), on_failure=failures.append
    )
    result = check.run()
    published = []
    while not events.empty():
        event = events.get_nowait()
        assert event.kind is Kind.SHARE_SELFCHECK_FAILED
        published.append(dict(event.data))
    assert len(failures) == len(published)
    return result, published, grabber.grabs


def test_selfcheck_reports_missing_cover_with_rule_names_and_count() -> None:
    ok_target = CoverTarget("customer-db", Rect(100, 100, 300, 200))
    missing = CoverTarget("crm", Rect(450, 300, 300, 200))
    result, events, _ = run_check(screen_with_cover(ok_target.rect), [ok_target, missing])
    assert not result.ok
    assert events == [{"rules": ["crm"], "count": 1}]

    result, events, _ = run_check(screen_with_cover(ok_target.rect), [ok_target])
    assert result.ok and events == []


def test_selfcheck_capture_failure_is_a_failure_not_a_pass() -> None:
    target = CoverTarget("customer-db", Rect(100, 100, 300, 200))
    result, events, _ = run_check(None, [target])
    assert not result.ok and result.error
    assert events == [{"rules": ["customer-db"], "count": 1}]


def test_nothing_to_check_grabs_nothing() -> None:
    result, events, grabs = run_check(screen_with_cover(None), [])
    assert result.ok and events == [] and grabs == 0


def test_selfcheck_on_a_real_screen_detects_a_missing_cover(xdesktop: XDesktop) -> None:
    customer = xdesktop.open_window(
        "顧客台帳 - 山田 太郎", text="03-1234-5678", process="custapp", x=80, y=120
    )
    other = xdesktop.open_window("メモ", text="090-0000-1111", process="notes", x=80, y=420)
    box = customer.rect()
    target = CoverTarget("customer-db", Rect(box.x, box.y, box.width, box.height))
    targets = [target]
    stream = EventStream()
    events = stream.subscribe()
    check = ShareSelfCheck(lambda: targets, LOOK, grabber=MssGrabber(xdesktop.display), stream=stream)

    cover = CoverWindow(xdesktop, Box(box.x, box.y, box.width, box.height), "#263238", "Hidden while sharing")
    try:
        result = check.run()
        assert result.ok, result
        assert events.empty()
    finally:
        cover.close()

    result = check.run()  # the cover is gone: the capture shows the customer window
    assert not result.ok
    assert result.checks[0].fraction is not None and result.checks[0].fraction < 0.1
    event = events.get_nowait()
    assert event.kind is Kind.SHARE_SELFCHECK_FAILED and event.data == {"rules": ["customer-db"], "count": 1}

    # A cover over the wrong window (the non-customer one) does not satisfy the check either.
    wrong = other.rect()
    cover = CoverWindow(xdesktop, wrong, "#263238", "Hidden while sharing")
    try:
        assert not check.run().ok
    finally:
        cover.close()


def test_opaque_cover_look_is_the_cover_helpers_panel_colour() -> None:
    from agent.overlay import helper

    panel = helper.PANEL.lstrip("#")
    assert OPAQUE_COVER.background == tuple(int(panel[i : i + 2], 16) for i in (0, 2, 4))


def test_runtime_targets_names_covered_windows_by_rule() -> None:
    ledger = CustomerApp(name="ledger", processes=("excel",), title=re.compile("顧客台帳"))
    windows = [
        Window(
            id=1, title="顧客台帳.xlsx - Excel", pid=1, process_name="EXCEL.EXE", rect=Rect(0, 0, 500, 400)
        ),
        Window(
            id=2, title="memo.txt - Notepad", pid=2, process_name="notepad.exe", rect=Rect(0, 0, 500, 400)
        ),
    ]
    targets = runtime_targets(lambda: windows, lambda: (ledger,))()
    assert targets == [CoverTarget("ledger", Rect(0, 0, 500, 400))]
