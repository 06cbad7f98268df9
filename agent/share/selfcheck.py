"""Self-check: is the cover really in what a sharing app captures? (issue 6, item 4)

A share captures the screen as composed by the OS; if the cover helper's window were missing, below the
customer window, transparent, or not composited into captures, the customer data would be in the stream.
So after covering, the screen is grabbed the way a sharing app grabs it (``mss``: XGetImage on the X root,
BitBlt/DXGI on Windows, CGWindowListCreateImage on macOS) and the region of every covered customer window
is compared with the cover's known look: most of its pixels must be the cover's opaque background colour
(the short label takes the rest). The window's own content is never examined, kept or reported.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from agent.decide.match import match_windows
from agent.platform.base import Rect, Window
from agent.report.stream import AgentEvent, EventStream, Kind
from core.clock import Clock, SystemClock
from policy.model import CustomerApp

if TYPE_CHECKING:
    # Pillow costs 3.2 MB of RSS: loaded only when a share is checked (docs/performance.md).
    from PIL import Image

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CoverTarget:
    """A customer-data window that should be covered now: its rule name and its rectangle on screen."""

    rule: str
    rect: Rect


@dataclass(frozen=True)
class CoverLook:
    """What an opaque cover looks like in a capture."""

    background: tuple[int, int, int]
    tolerance: int = 24  # per RGB channel: lossy capture paths and dithering move colours a little
    min_fraction: float = 0.6  # share of the region that must be the background; the label takes the rest
    inset: int = 4  # pixels ignored along each edge, where window borders and rounding differ


# The opaque cover's panel colour, as drawn by the cover helper (agent/overlay/helper.py, PANEL "#26303a");
# tests/agent/share/test_selfcheck.py fails if the two drift apart. Not imported from there: that module is the
# Tk helper process and the agent process should not load Tk for one constant.
OPAQUE_COVER = CoverLook(background=(0x26, 0x30, 0x3A))


def runtime_targets(
    covered_windows: Callable[[], Sequence[Window]], customer_apps: Callable[[], Sequence[CustomerApp]]
) -> Callable[[], list[CoverTarget]]:
    """Targets from the runtime: the windows it covers now (``Runtime.covered_windows``), named by rule."""

    def targets() -> list[CoverTarget]:
        return [CoverTarget(m.rule, m.window.rect) for m in match_windows(customer_apps(), covered_windows())]

    return targets


@dataclass(frozen=True)
class TargetCheck:
    target: CoverTarget
    fraction: float | None  # None: the window is entirely off screen, nothing of it can be shared
    ok: bool


@dataclass(frozen=True)
class SelfCheckResult:
    checks: tuple[TargetCheck, ...] = ()
    error: str | None = None  # the screen could not be captured at all

    @property
    def ok(self) -> bool:
        return self.error is None and all(c.ok for c in self.checks)

    @property
    def failed(self) -> tuple[CoverTarget, ...]:
        return tuple(c.target for c in self.checks if not c.ok)


class CaptureError(Exception):
    """The screen could not be grabbed."""


class ScreenGrabber(Protocol):
    def grab(self) -> tuple[Image.Image, Rect]:
        """The whole virtual screen as RGB and its rectangle in desktop coordinates. Raises CaptureError."""
        ...


class MssGrabber:
    """Grabs the screen with mss, like the capture path of the sharing apps.

    mss objects hold per-thread OS handles, so one is opened per grab, in the calling thread. ``display``
    (X11 only) picks the X display; by default ``$DISPLAY``.
    """

    def __init__(self, display: str | None = None) -> None:
        self._display = display

    def grab(self) -> tuple[Image.Image, Rect]:
        import mss
        import mss.exception

        kwargs = {"display": self._display} if self._display is not None else {}
        factory = getattr(mss, "MSS", None) or mss.mss  # mss >= 10 renamed the factory
        try:
            with factory(**kwargs) as sct:
                area = sct.monitors[0]
                shot = sct.grab(area)
                from PIL import Image

                image = Image.frombytes("RGB", shot.size, shot.bgra, "raw", "BGRX")
        except (mss.exception.ScreenShotError, OSError) as err:
            raise CaptureError(f"screen capture failed: {err}") from err
        return image, Rect(int(area["left"]), int(area["top"]), int(area["width"]), int(area["height"]))


def cover_fraction(image: Image.Image, colour: tuple[int, int, int], tolerance: int) -> float:
    """Share of the pixels of ``image`` within ``tolerance`` (per channel) of ``colour``."""
    from PIL import Image, ImageChops

    rgb = image.convert("RGB")
    if rgb.width == 0 or rgb.height == 0:
        return 0.0
    diff = ImageChops.difference(rgb, Image.new("RGB", rgb.size, colour))
    red, green, blue = diff.split()
    worst = ImageChops.lighter(ImageChops.lighter(red, green), blue)
    histogram = worst.histogram()
    close = sum(histogram[: max(0, min(255, tolerance)) + 1])
    return close / (rgb.width * rgb.height)


def check_covers(
    image: Image.Image, origin: Rect, targets: Sequence[CoverTarget], look: CoverLook
) -> SelfCheckResult:
    """Pure: compare each target's region of a captured screen with the cover look."""
    checks: list[TargetCheck] = []
    for target in targets:
        r = target.rect
        left = max(r.x + look.inset, origin.x) - origin.x
        top = max(r.y + look.inset, origin.y) - origin.y
        right = min(r.x + r.width - look.inset, origin.x + origin.width) - origin.x
        bottom = min(r.y + r.height - look.inset, origin.y + origin.height) - origin.y
        if right <= left or bottom <= top:
            checks.append(TargetCheck(target, None, ok=True))
            continue
        fraction = cover_fraction(image.crop((left, top, right, bottom)), look.background, look.tolerance)
        checks.append(TargetCheck(target, round(fraction, 3), ok=fraction >= look.min_fraction))
    return SelfCheckResult(checks=tuple(checks))


@dataclass
class ShareSelfCheck:
    """Runs the check over the windows the runtime covers for the share reason and reports failures.

    ``targets`` returns the customer-data windows that should be covered now (the runtime knows them);
    a failure publishes ``SHARE_SELFCHECK_FAILED`` with the rule names and the count, and calls
    ``on_failure`` (e.g. to tell the worker to stop sharing).
    """

    targets: Callable[[], Sequence[CoverTarget]]
    look: CoverLook
    grabber: ScreenGrabber = field(default_factory=MssGrabber)
    stream: EventStream | None = None
    clock: Clock = field(default_factory=SystemClock)
    on_failure: Callable[[SelfCheckResult], None] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def run(self) -> SelfCheckResult:
        with self._lock:
            targets = list(self.targets())
            if not targets:
                return SelfCheckResult()
            try:
                image, origin = self.grabber.grab()
            except CaptureError as err:
                logger.warning("share self-check could not capture the screen: %s", err)
                result = SelfCheckResult(error=str(err))
            else:
                result = check_covers(image, origin, targets, self.look)
            if not result.ok:
                self._report(result, targets)
            else:
                logger.debug("share self-check passed for %d window(s)", len(targets))
            return result

    def _report(self, result: SelfCheckResult, targets: Sequence[CoverTarget]) -> None:
        failed = result.failed if result.error is None else tuple(targets)
        rules = sorted({t.rule for t in failed})
        logger.warning(
            "share self-check: %d customer window(s) not covered in the capture: %s", len(failed), rules
        )
        if self.stream is not None:
            # A capture failure fails every target: nothing shows that any cover is in the shared image.
            data = {"rules": rules, "count": len(failed)}
            self.stream.publish(AgentEvent(Kind.SHARE_SELFCHECK_FAILED, self.clock.now(), data))
        if self.on_failure is not None:
            self.on_failure(result)
