"""The clipboard guard: customer data leaves the clipboard while the screen is protected (issue 17).

While a cover reason that puts customer data at risk is active (away or stepped away, a screen share, a
blocking posture check, a lock that failed: :data:`agent.clipboard.decide.CLEARING_REASONS`), the content of
the clipboard and of the X11 primary selection is taken over by the agent when a customer-data app owns it:
it becomes the policy's ``presence.clipboard`` choice, a ja/en notice ("notice") or nothing ("clear"). The agent
keeps owning it after the worker returns, so the customer's content does not come back to the apps that paste;
the next copy anywhere replaces the notice as usual. Content owned by any other app is left untouched.

The guard never reads the content: backends report who owns a selection, and ``clipboard.cleared`` carries the
selection, the reason, the rule and the action only.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any

from agent.clipboard import create_clipboard
from agent.clipboard.base import ClipboardBackend, ClipboardError, Owner, Selection
from agent.clipboard.decide import clearing_reason, selection_rule
from agent.host import Host
from agent.i18n import Translator
from agent.platform.base import Desktop, PlatformError, Window
from agent.report.stream import AgentEvent, EventStream, Kind
from core.clock import Clock
from policy.model import Policy

logger = logging.getLogger(__name__)

ACTIVE_TICK = 0.25  # seconds between looks while protection is on; otherwise the backend's idle_poll. Any
# published event wakes the guard at once: every clearing reason comes on with one (presence.stage,
# share.started, posture.finding, session.lock_failed).


def notice_text(translator: Translator) -> str:
    """The notice that replaces customer data: the worker's language first, then the other."""
    texts = translator.both("clipboard.notice")
    first = translator.language
    return f"{texts[first]}\n{texts['en' if first == 'ja' else 'ja']}"


class ClipboardGuard:
    def __init__(
        self,
        backend: ClipboardBackend,
        desktop: Desktop,
        policy: Callable[[], Policy | None],
        reasons: Callable[[], Sequence[str]],
        *,
        stream: EventStream,
        clock: Clock,
        translator: Translator,
        report_degraded: Callable[[str, str, str], None] | None = None,
    ) -> None:
        self.backend = backend
        self.desktop = desktop
        self._policy = policy
        self._reasons = reasons
        self.stream = stream
        self.clock = clock
        self.translator = translator
        self._report_degraded = report_degraded
        self._lock = threading.Lock()
        self._seen: dict[Selection, Owner] = {}
        self._rules: dict[Selection, str | None] = {}  # the rule of the owner last seen, per selection
        self._last: dict[Selection, tuple[Owner, str | None]] = {}  # the last app owner seen, and its rule
        self._handled: dict[Selection, int] = {}  # serial already taken over (or decided to leave)
        self._cleared = 0
        self._failing = False
        self._events: queue.Queue[AgentEvent] | None = None

    def run(self, stop: threading.Event) -> None:
        """The guard's worker: one :meth:`step`, then wait until it is due or any event is published (a stage
        change, a share starting: a cover reason may have just come on)."""
        if self._events is None:
            self._events = self.stream.subscribe()  # once: a restarted worker keeps the same queue
        events = self._events
        while not stop.is_set():
            wait = self.step()
            try:
                events.get(timeout=wait)
            except queue.Empty:
                continue
            while not events.empty():
                events.get_nowait()

    def step(self) -> float:
        """Follow the owners; take over customer data while a clearing reason is active. Returns the wait."""
        policy = self._policy()
        mode = policy.presence.clipboard if policy is not None else "notice"
        reason = clearing_reason(list(self._reasons())) if mode != "off" else None
        try:
            owners = self.backend.owners()
        except ClipboardError as err:
            self._degraded("query_failed", str(err))
            return ACTIVE_TICK if reason else self.backend.idle_poll
        rules = policy.customer_apps if policy is not None else ()
        windows: list[Window] | None = None
        for owner in owners:
            previous = self._seen.get(owner.selection)
            if previous is not None and previous.serial == owner.serial and not reason:
                continue
            if previous is None or previous.serial != owner.serial:
                if windows is None:
                    windows = self._windows()
                last, last_rule = self._last.get(owner.selection, (None, None))
                rule = selection_rule(owner, windows, rules, last, last_rule)
                with self._lock:
                    self._seen[owner.selection] = owner
                    if not owner.ours:
                        self._rules[owner.selection] = rule
                    if not owner.ours and not owner.empty:
                        self._last[owner.selection] = (owner, rule)
            rule = self._rules.get(owner.selection) if not owner.ours else None
            if reason and rule and self._handled.get(owner.selection) != owner.serial:
                self._take(owner, rule, reason, "clear" if mode == "clear" else "notice")
        return ACTIVE_TICK if reason else self.backend.idle_poll

    def _windows(self) -> list[Window]:
        try:
            return self.desktop.windows()
        except PlatformError as err:
            # Without the window list the owner's process alone decides (agent/clipboard/decide.py).
            logger.warning("window list failed; clipboard owners are judged by process: %s", err)
            return []

    def _take(self, owner: Owner, rule: str, reason: str, action: str) -> None:
        notice = notice_text(self.translator) if action == "notice" else None
        try:
            self.backend.take(owner.selection, notice)
        except ClipboardError as err:
            self._degraded("take_failed", str(err))
            return
        self._failing = False
        with self._lock:
            self._handled[owner.selection] = owner.serial
            self._cleared += 1
        logger.info("clipboard: %s content of rule %s taken over (%s)", owner.selection, rule, action)
        self.stream.publish(
            AgentEvent(
                Kind.CLIPBOARD_CLEARED,
                self.clock.now(),
                {"selection": owner.selection, "reason": reason, "rules": [rule], "action": action},
            )
        )

    def _degraded(self, reason: str, detail: str) -> None:
        if not self._failing:
            logger.warning("clipboard guard: %s", detail)
            self._failing = True
        if self._report_degraded is not None:
            self._report_degraded("clipboard", reason, detail)

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {
                "backend": self.backend.name,
                "selections": list(self.backend.selections),
                "cleared": self._cleared,
                "customer_owned": sorted(s for s, rule in self._rules.items() if rule),
            }


def install_clipboard_guard(
    host: Host,
    desktop_backend: str,
    reasons: Callable[[], Sequence[str]],
    translator: Translator,
    *,
    display: str | None = None,
) -> ClipboardGuard | None:
    """Build this session's clipboard backend and plug the guard into ``host``; without one, report why."""
    if desktop_backend == "fake":
        return None  # the scripted desktop has no clipboard
    try:
        backend = create_clipboard(desktop_backend, display)
    except ClipboardError as err:
        host.report_degraded("clipboard", "unsupported", str(err))
        return None
    guard = ClipboardGuard(
        backend,
        host.desktop,
        host.policy,
        reasons,
        stream=host.stream,
        clock=host.clock,
        translator=translator,
        report_degraded=host.report_degraded,
    )

    def run(stop: threading.Event) -> None:
        try:
            guard.run(stop)
        finally:
            if stop.is_set():
                backend.close()

    host.add_worker("clipboard", run)
    host.add_status_provider("clipboard", guard.status)
    return guard
