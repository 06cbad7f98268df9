"""What the worker is told by OS notification: countdown, covering, blocking with its remedy, policy changes.

The OS backends (notify-send, a Windows toast, Notification Center) live in agent/platform/notifications.py and
are chosen once by :mod:`agent.platform` (``$MAMORI_NOTIFY_BACKEND`` wins). :class:`Notifier` rate-limits (one
per key per interval, and a global burst limit) because a flapping Wi-Fi must not bury the worker in popups.
:class:`NotificationBridge` turns agent events into notifications in the worker's language.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime

from agent.platform.notifications import Notification, NotifyBackend, NotifyError
from agent.report.stream import AgentEvent, EventStream, Kind
from core.clock import Clock

logger = logging.getLogger(__name__)

Translate = Callable[..., str]


class RateLimiter:
    """Pure: at most one notification per key per ``per_key`` seconds and ``burst`` per ``window`` seconds."""

    def __init__(self, clock: Clock, per_key: float = 60.0, burst: int = 5, window: float = 60.0) -> None:
        self._clock = clock
        self._per_key = per_key
        self._burst = burst
        self._window = window
        self._last: dict[str, float] = {}
        self._recent: deque[float] = deque()
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        with self._lock:
            now = self._clock.monotonic()
            while self._recent and now - self._recent[0] >= self._window:
                self._recent.popleft()
            last = self._last.get(key)
            if last is not None and now - last < self._per_key:
                return False
            if len(self._recent) >= self._burst:
                return False
            self._last[key] = now
            self._recent.append(now)
            return True

    def forget(self, key: str) -> None:
        """Let the next notification of this key through (e.g. the countdown of a new away period)."""
        with self._lock:
            self._last.pop(key, None)


class Notifier:
    """Rate-limited notifications; a failing backend is reported once through ``on_degraded`` and then muted."""

    def __init__(
        self,
        backend: NotifyBackend,
        clock: Clock,
        limiter: RateLimiter | None = None,
        on_degraded: Callable[[str], None] | None = None,
    ) -> None:
        self.backend = backend
        self._limiter = limiter or RateLimiter(clock)
        self._on_degraded = on_degraded
        self.degraded_reason: str | None = backend.unavailable_reason()
        self._reported = False
        if self.degraded_reason is not None:
            self._degrade(self.degraded_reason)

    def _degrade(self, reason: str) -> None:
        self.degraded_reason = reason
        if not self._reported:
            self._reported = True
            logger.warning("notifications unavailable (%s): %s", self.backend.name, reason)
            if self._on_degraded is not None:
                self._on_degraded(reason)

    def notify(self, n: Notification) -> bool:
        """True when the notification was handed to the OS."""
        if self.degraded_reason is not None:
            return False
        if not self._limiter.allow(n.key):
            logger.debug("notification %s rate-limited", n.key)
            return False
        try:
            self.backend.send(reflowed(n))
        except NotifyError as err:
            self._degrade(err.reason)
            return False
        return True

    def reset(self, key: str) -> None:
        self._limiter.forget(key)


def reflowed(n: Notification) -> Notification:
    """The body through the one renderer's paragraph rule (agent.ui.text): a policy's [messages] text keeps its
    paragraphs but not its hard line breaks; the notification daemon wraps the lines itself."""
    from dataclasses import replace

    from agent.ui.text import paragraphs

    body = "\n".join(paragraphs(n.body))
    return n if body == n.body else replace(n, body=body)


def notification_for(
    event: AgentEvent, t: Translate, seconds_left: float | None = None
) -> Notification | None:
    """Pure: the notification an agent event deserves, in the translator's language, or None.

    ``seconds_left`` is the countdown the runtime reports (its status), used when the event does not carry it.
    """
    from agent.ui.view import check_name, remedy

    d = event.data
    if event.kind is Kind.PRESENCE_STAGE and d.get("stage") == "warn":
        seconds = d.get("seconds_left", seconds_left if seconds_left is not None else 30)
        return Notification(
            "countdown",
            t("notify.countdown.title"),
            t("notify.countdown.body", seconds=int(seconds) if isinstance(seconds, int | float) else 30),
        )
    if event.kind is Kind.SHARE_STARTED:
        # Once per share (SPEC.md, "Screen share"): the share's own words, not "reappear when you return".
        return Notification(
            "share",
            t("notify.covered.title"),
            t("share.notice", apps=str(d.get("app", "?"))),
            urgency="normal",
        )
    if event.kind is Kind.SHARE_SELFCHECK_FAILED:
        return Notification(
            "share.selfcheck", t("notify.selfcheck.title"), t("share.selfcheck_failed"), urgency="critical"
        )
    if event.kind is Kind.ONLOOKER_STARTED:
        # The worker is told that the camera is on, and why (docs/onlooker.md).
        key = "onlooker.notice.body_cover" if d.get("mode") == "cover" else "onlooker.notice.body_report"
        return Notification("onlooker", t("onlooker.notice.title"), t(key), urgency="normal")
    if event.kind is Kind.PROTECTION_APPLIED:
        reason = str(d.get("reason", "away"))
        if reason in ("share", "posture"):
            return None  # told by the share notice and the posture "action needed" notification
        # "They reappear when you return" would be wrong here: they do when the other person leaves.
        if reason == "onlooker":
            return Notification("covered.onlooker", t("notify.covered.title"), t("onlooker.covered.body"))
        try:
            reason_text = t(f"reason.{reason}")
        except KeyError:
            reason_text = reason
        # "They reappear when you return" is wrong for the acknowledgement cover: returning does not lift it.
        body = (
            t("notify.covered_ack.body") if reason == "ack" else t("notify.covered.body", reason=reason_text)
        )
        return Notification(f"covered.{reason}", t("notify.covered.title"), body)
    if (
        event.kind is Kind.POSTURE_FINDING
        and d.get("enforcement") == "block"
        and d.get("status") in ("fail", "error")
    ):
        check_id = str(d.get("check_id", "?"))
        return Notification(
            f"blocked.{check_id}",
            t("notify.blocked.title", name=check_name(t, check_id)),
            t("notify.blocked.body", remedy=remedy(t, check_id)),
            urgency="critical",
        )
    if event.kind is Kind.POLICY_APPLIED:
        key = "notify.policy_ack.body" if d.get("ack_required") else "notify.policy.body"
        return Notification(
            "policy",
            t("notify.policy.title"),
            t(key, id=d.get("policy_id", "?"), version=d.get("version", "?")),
        )
    if event.kind is Kind.CAPABILITY_DEGRADED and d.get("capability") == "enrollment":
        # Said once by the reporting service when the server starts refusing the device token (revoked).
        return Notification(
            "revoked", t("notify.revoked.title"), t("notify.revoked.body"), urgency="critical"
        )
    if event.kind is Kind.PROTECTION_PAUSED:
        return Notification(
            "paused", t("notify.paused.title"), t("notify.paused.body", minutes=d.get("minutes", "?"))
        )
    return None


class NotificationBridge:
    """Subscribes to the event stream and notifies; runs on its own thread until :meth:`stop`."""

    def __init__(
        self,
        stream: EventStream,
        notifier: Notifier,
        translator: Translate,
        seconds_left: Callable[[], float | None] | None = None,
    ) -> None:
        self._seconds_left = seconds_left
        self._events = stream.subscribe()
        self._notifier = notifier
        self.translator = translator
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def handle(self, event: AgentEvent) -> bool:
        if event.kind is Kind.PRESENCE_STAGE and event.data.get("stage") == "active":
            self._notifier.reset("countdown")  # a new away period gets its own countdown
            return False
        left = (
            self._seconds_left()
            if self._seconds_left is not None and event.kind is Kind.PRESENCE_STAGE
            else None
        )
        n = notification_for(event, self.translator, left)
        return n is not None and self._notifier.notify(n)

    def start(self) -> NotificationBridge:
        self._thread = threading.Thread(target=self._run, name="mamori-notify", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        # Blocks until an event or stop()'s wake-up arrives: no polling while the agent idles (SPEC.md targets).
        while not self._stop.is_set():
            event = self._events.get()
            if event is _WAKE or self._stop.is_set():
                continue
            try:
                self.handle(event)
            except Exception:
                logger.exception("notification failed")

    def stop(self) -> None:
        self._stop.set()
        self._events.put(_WAKE)
        if self._thread is not None:
            self._thread.join(2)


# Put into the bridge's own subscription queue by stop() to end the blocking get; never published.
_WAKE = AgentEvent(Kind.AGENT_STOPPED, datetime.min.replace(tzinfo=UTC))
