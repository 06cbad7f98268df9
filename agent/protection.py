"""The protection loop: presence stages, cover reasons, covers and the lock (SPEC.md, "Agent behaviour").

Each sample (:meth:`Protection.step`) reads the idle time and lock state from the desktop backend, moves the
presence machine (agent.decide.presence), starts a lock-and-verify when the machine says so (agent.lock),
plans the covers for the active reasons (agent.decide.cover) and hands them to the cover helper.

Other parts switch their own reason only: ``set_cover_reason("share" | "posture" | "ack", active, key)``;
``set_inhibitor(name, active)`` may delay the lock, never the cover. Events carry rule names, counts and reason
codes only — never window titles or labels.

Honest and fail-closed (issue 11):

- ``protection.applied`` is published only once the helper has drawn at least one cover for the reason; a
  reason whose rules match no open window is shown as "nothing to cover" (status ``covered.state``), not as
  covered.
- an idle counter that errors counts as away: the idle time keeps growing from the last good sample, so
  protect and lock come on the policy's clock; reported as ``agent.degraded`` (idle, query_failed).
- a window list that errors keeps the covers it had; after :data:`WINDOW_LIST_GRACE` seconds of errors the
  whole screen is covered (reason ``windows_unknown``); reported as ``agent.degraded`` (window_list,
  query_failed).
- in the lock stage the covers stop re-raising themselves (the screen locker maps above them), and while the OS
  says the session is locked no cover is drawn at all.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from agent.config import AgentConfig
from agent.decide.cover import (
    AWAY,
    LOCK_FAILED,
    WINDOWS_UNKNOWN,
    CoverPlan,
    Reason,
    cover_state,
    plan_covers,
    unmatched_rules,
)
from agent.decide.presence import PresenceDecision, PresenceInput, PresenceMachine, Stage
from agent.degraded import Degraded
from agent.i18n import Translator, catalog, detect_language
from agent.lock import SessionLock
from agent.overlay.protocol import CoverSpec
from agent.overlay.supervisor import CoverSink
from agent.platform.base import ESSENTIAL, Capabilities, Desktop, Monitor, PlatformError, Window
from agent.report.stream import AgentEvent, EventStream, Kind
from core.clock import Clock
from policy.model import Policy, Presence

logger = logging.getLogger(__name__)

PolicyView = Callable[[], Policy | None]

WINDOW_LIST_GRACE = (
    3.0  # seconds a failing window list keeps its last covers before the whole screen is covered
)


class Pause:
    """A worker's pause of away protection: a monotonic deadline and its wall-clock time for the status."""

    def __init__(self, clock: Clock, stream: EventStream) -> None:
        self.clock = clock
        self.stream = stream
        self._lock = threading.Lock()
        self._until: float | None = None
        self._until_wall: datetime | None = None

    def start(self, seconds: float) -> None:
        with self._lock:
            self._until = self.clock.monotonic() + seconds
            self._until_wall = self.clock.now() + timedelta(seconds=seconds)

    def end(self) -> None:
        with self._lock:
            self._until = self._until_wall = None

    def active(self) -> bool:
        """True while the pause runs; publishes ``agent.resumed`` once when it runs out."""
        with self._lock:
            if self._until is None:
                return False
            if self.clock.monotonic() < self._until:
                return True
            self._until = self._until_wall = None
        self.stream.publish(AgentEvent(Kind.PROTECTION_RESUMED, self.clock.now(), {"reason_code": "expired"}))
        return False

    def until(self) -> str | None:
        with self._lock:
            return self._until_wall.isoformat() if self._until_wall else None

    def remaining(self) -> float | None:
        """Seconds until the pause runs out (0 when it has), None when there is none."""
        with self._lock:
            return None if self._until is None else max(0.0, self._until - self.clock.monotonic())


class Announcer:
    """``protection.applied`` once when a reason starts covering, ``protection.removed`` when it ends."""

    def __init__(self, clock: Clock, stream: EventStream) -> None:
        self.clock = clock
        self.stream = stream
        self._announced: dict[str, str] = {}  # source -> event reason of the PROTECTION_APPLIED sent

    def update(self, reasons: Mapping[str, Reason], plan: CoverPlan, drawn: bool = True) -> None:
        """``drawn``: the helper has put every cover of ``plan`` on screen. A reason is announced only then, and
        only when the plan covers something: no event claims a cover that is not there."""
        now = self.clock.now()
        data = {"rules": plan.rules, "count": plan.count}
        for source, reason in reasons.items():
            if source not in self._announced and plan.covers and drawn:
                self._announced[source] = reason.event_reason
                self.stream.publish(
                    AgentEvent(Kind.PROTECTION_APPLIED, now, {"reason": reason.event_reason, **data})
                )
        for source in [s for s in self._announced if s not in reasons]:
            event_reason = self._announced.pop(source)
            self.stream.publish(AgentEvent(Kind.PROTECTION_REMOVED, now, {"reason": event_reason, **data}))


class IdleSampler:
    """The idle time; when the counter errors, the time since the last good sample (fail closed: away)."""

    def __init__(self, desktop: Desktop, clock: Clock, degraded: Degraded) -> None:
        self.desktop = desktop
        self.clock = clock
        self.degraded = degraded
        self.last = 0.0
        self._good: tuple[float, float] | None = None  # (monotonic, idle) of the last good sample
        self._failing = False

    def sample(self) -> float:
        now = self.clock.monotonic()
        try:
            idle = self.desktop.idle_seconds()
        except PlatformError as err:
            self.degraded.report("idle", "query_failed", str(err))
            if not self._failing:
                logger.warning("idle counter failed; counting the time since the last good sample as idle")
                self._failing = True
            if self._good is None:
                self._good = (now, 0.0)
            since, last = self._good
            self.last = last + (now - since)
            return self.last
        self._failing = False
        self._good = (now, idle)
        self.last = idle
        return idle


class Countdown:
    """The warn stage's countdown on the cover helper, sent once per second shown."""

    def __init__(self, overlay: CoverSink | None) -> None:
        self.overlay = overlay
        self._shown: int | None = None

    def update(self, decision: PresenceDecision, translator: Translator) -> None:
        if self.overlay is None:
            return
        if decision.stage is Stage.WARN and decision.seconds_left is not None:
            seconds = int(decision.seconds_left + 0.999)
            if seconds != self._shown:
                self._shown = seconds
                self.overlay.countdown(float(seconds), translator("presence.countdown", seconds=seconds))
        elif self._shown is not None:
            self._shown = None
            self.overlay.countdown(None)


class Protection:
    def __init__(
        self,
        config: AgentConfig,
        policy: PolicyView,
        desktop: Desktop,
        stream: EventStream,
        clock: Clock,
        *,
        degraded: Degraded | None = None,
        overlay: CoverSink | None = None,
        translator: Translator | None = None,
        tick: float = 0.1,
        idle_tick: float = 1.0,
        lock_verify_timeout: float = 5.0,
    ) -> None:
        self.config = config
        self.desktop = desktop
        self.stream = stream
        self.clock = clock
        self.overlay = overlay
        self.degraded = degraded if degraded is not None else Degraded(stream, clock)
        self.tick = tick
        self.idle_tick = idle_tick
        self._policy_view = policy
        self._policy: Policy | None = None
        self._translator_fixed = translator
        self._translator = translator or Translator(detect_language(config.language))
        self._lock = threading.RLock()
        self.wake = threading.Event()
        self.stopped = threading.Event()
        self.session_lock = SessionLock(
            desktop, stream, clock, self.stopped, self._lock_failed_now, verify_timeout=lock_verify_timeout
        )
        self._reasons: dict[str, Reason] = {}
        self._announcer = Announcer(clock, stream)
        self._inhibitors: set[str] = set()
        self._machine = PresenceMachine(self._presence())
        self._decision: PresenceDecision | None = None
        self._idle = IdleSampler(desktop, clock, self.degraded)
        self._windows: list[Window] = []
        self._plan = CoverPlan([], [])
        self._last_covers: tuple[list[CoverSpec], bool] | None = None
        self._countdown = Countdown(overlay)
        self._lock_failed = False
        self._pause = Pause(clock, stream)
        self._windows_failing_since: float | None = None
        self._locked = False
        self._lock_poll: float | None = idle_tick  # see _watch_lock_state()

    # ---- policy ----------------------------------------------------------------------------------------
    def policy(self) -> Policy | None:
        """The policy in force; a new one reconfigures the presence stages and the texts."""
        try:
            fresh = self._policy_view()
        except Exception as err:  # keep the last-known-good policy (SPEC.md, "Policy")
            logger.warning("policy not readable, keeping the last good one: %s", err)
            fresh = None
        with self._lock:
            if fresh is None or fresh is self._policy:
                return self._policy  # a source that lost its policy: keep the last-known-good one
            before = self._presence()
            self._policy = fresh
            self._machine.reconfigure(self._presence())
            if self._presence() != before:
                self.wake.set()  # new thresholds: the loop's next deadline changes
            if self._translator_fixed is None:
                self._translator = Translator(
                    detect_language(self.config.language),
                    {"ja": fresh.messages.ja, "en": fresh.messages.en},
                )
            return fresh

    def _presence(self) -> Presence:
        return self._policy.presence if self._policy is not None else Presence()

    # ---- what the other parts switch --------------------------------------------------------------------
    def set_cover_reason(self, source: str, active: bool, message_key: str | None = None) -> None:
        with self._lock:
            if active:
                self._reasons[source] = Reason(message_key or f"cover.{source}", source)
            else:
                self._reasons.pop(source, None)
        self.wake.set()

    def set_inhibitor(self, name: str, active: bool) -> None:
        with self._lock:
            if active:
                self._inhibitors.add(name)
            else:
                self._inhibitors.discard(name)
        self.wake.set()

    def lock_now(self, reason: str) -> None:
        """Lock the session at once, verified like every lock (``session.locked`` or ``session.lock_failed``):
        a cover that the share's capture does not show (agent/share/guard.py) is no protection."""
        self.session_lock.lock_async(reason)

    def step_away(self) -> None:
        self._pause.end()  # stepping away ends a pause
        with self._lock:
            self._machine.step_away(self.clock.monotonic())
        self.wake.set()

    def pause(self, minutes: float) -> float:
        """Pause away protection (idle stages) for at most the policy's ``worker.pause_max``.

        Only the away stages pause: covers for a screen share, a blocking posture check or a pending
        acknowledgement stay. Returns the minutes granted (0 when the policy does not allow pausing); the
        caller reports ``agent.paused``, this loop reports ``agent.resumed`` when the pause ends by itself.
        """
        policy = self.policy()
        if policy is None or not policy.worker.allow_pause:
            return 0.0
        seconds = max(0.0, min(minutes * 60.0, policy.worker.pause_max))
        self._pause.start(seconds)
        self.wake.set()
        return seconds / 60.0

    def resume(self) -> None:
        self._pause.end()
        self.wake.set()

    def reveal(self, key: str = "") -> None:
        """A cover was clicked (reveal = "click")."""
        with self._lock:
            self._machine.reveal()
        self.wake.set()

    def overlay_failed(self, reason: str) -> None:
        """The cover helper cannot run: report it; the presence machine now locks instead of covering."""
        self.degraded.report("cover", "helper_failed", reason)
        self.wake.set()

    def cover_reason_codes(self) -> list[str]:
        """The event reason of every active cover reason ("away" or "step_away", "share", ...), e.g. for the
        clipboard guard (agent/clipboard/guard.py)."""
        with self._lock:
            return [r.event_reason for r in self._reasons.values()]

    def covered_windows(self) -> list[Window]:
        """The customer-data windows covered right now (e.g. for the screen-share self-check)."""
        with self._lock:
            return [m.window for m in self._plan.matches] if self._reasons else []

    # ---- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> None:
        self.policy()
        for name in self.desktop.capabilities().missing():
            self.degraded.report(name, "unsupported")
        if self.overlay is not None:
            self.overlay.start()
        else:
            self.degraded.report("cover", "no_helper")
        self.session_lock.watch_sleep(self._presence, self.degraded)
        self._lock_poll = self._watch_lock_state()

    def _watch_lock_state(self) -> float | None:
        """How often the loop must ask the lock state while nothing else is due: idle_tick, unless the desktop
        pushes its changes (optional hook ``watch_lock_state``, agent/platform/linux_x11.py)."""
        watch = getattr(self.desktop, "watch_lock_state", None)
        if not callable(watch):
            return self.idle_tick
        try:
            interval = watch(self.wake.set)
        except PlatformError as err:
            logger.info("lock state is polled every %.1f s: %s", self.idle_tick, err)
            return self.idle_tick
        return None if interval is None else max(self.idle_tick, float(interval))

    def stop(self) -> None:
        self.stopped.set()
        self.wake.set()

    def close(self) -> None:
        """Stop the cover helper (after the loop has stopped)."""
        if self.overlay is not None:
            self.overlay.stop()

    def run(self, stop: threading.Event) -> None:
        """The presence loop (a supervised worker): one :meth:`step`, then wait until it is due or woken."""
        while not stop.is_set() and not self.stopped.is_set():
            # Cleared before the step, not after the wait: a wake-up that comes during the step (a share
            # starting) must cut the next wait short, which may be minutes long (see step()).
            self.wake.clear()
            interval = self.step()
            self.wake.wait(interval)

    # ---- one sample ------------------------------------------------------------------------------------
    def step(self) -> float:
        """One sample: presence stage, lock, covers. Returns how long to wait before the next one."""
        policy = self.policy()
        presence = self._presence()
        caps = self.desktop.capabilities()
        idle = self._idle.sample()
        try:
            locked = self.desktop.is_locked()
        except PlatformError:
            locked = False
        self._locked = locked
        self.session_lock.track(locked)
        overlay_ok = self.overlay is not None and self.overlay.available()
        paused = self._pause.active()
        with self._lock:
            sample = PresenceInput(
                idle=0.0 if paused else idle,  # a pause holds the away stages at "active"
                locked=locked,
                inhibitors=frozenset(self._inhibitors | self._window_inhibitors()),
                can_cover=caps.window_list and caps.cover and overlay_ok,
            )
            decision = self._machine.update(sample, self.clock.monotonic())
            self._decision = decision
            if decision.changed:
                self.stream.publish(
                    AgentEvent(
                        Kind.PRESENCE_STAGE,
                        self.clock.now(),
                        {"stage": decision.stage.value, "previous": decision.previous.value},
                    )
                )
            if decision.cover:
                # The label says how to get back: any input, or a click (presence.reveal).
                key = "cover.away_click" if presence.reveal == "click" else "cover.away"
                self._reasons[AWAY] = Reason(key, decision.reason)
            else:
                self._reasons.pop(AWAY, None)
            if self._lock_failed and decision.stage is Stage.ACTIVE and not locked:
                self._lock_failed = False
                self._reasons.pop(LOCK_FAILED, None)
            active = bool(self._reasons)
        if decision.lock_now:
            self.session_lock.lock_async(decision.reason)
        self._countdown.update(decision, self._translator)
        if active:
            self._refresh_windows()
        self._refresh_covers(policy, presence)
        if active or decision.stage is not Stage.ACTIVE:
            return self.tick
        # Sleep until the next threshold could be reached: the idle counter grows by at most one second a
        # second, and input only lowers it. Everything else that matters wakes the loop (cover reasons,
        # inhibitors, step away, pause, a new policy, and the lock state where the desktop pushes it:
        # watch_lock_state); the lock state that is not pushed is asked every lock_poll seconds, and the
        # end of a pause is a deadline too.
        waits = [presence.warn_after - idle, presence.protect_after - idle]
        if self._lock_poll is not None:
            waits.append(self._lock_poll)
        elif not getattr(self.desktop, "lock_state_pushed", True):
            waits.append(self.idle_tick)  # the watch died (X connection lost): ask again, as without one
        pause_left = self._pause.remaining()
        if pause_left is not None:
            waits.append(pause_left)
        return max(self.tick, min(waits))

    def _window_inhibitors(self) -> set[str]:
        return {"fullscreen"} if any(w.fullscreen and not w.minimized for w in self._windows) else set()

    def _refresh_windows(self) -> None:
        now = self.clock.monotonic()
        try:
            windows = self.desktop.windows()
        except PlatformError as err:
            # Keep the last list: dropping covers because one query failed would reveal customer data. If it
            # lasts, which windows hold customer data is unknown: cover the whole screen.
            self.degraded.report("window_list", "query_failed", str(err))
            with self._lock:
                if self._windows_failing_since is None:
                    logger.warning("window list failed: %s", err)
                    self._windows_failing_since = now
                elif now - self._windows_failing_since >= WINDOW_LIST_GRACE:
                    self._reasons[WINDOWS_UNKNOWN] = Reason("cover.windows_unknown", WINDOWS_UNKNOWN)
            return
        with self._lock:
            self._windows = windows
            self._windows_failing_since = None
            self._reasons.pop(WINDOWS_UNKNOWN, None)

    def _refresh_covers(self, policy: Policy | None, presence: Presence) -> None:
        with self._lock:
            reasons = dict(self._reasons)
            if WINDOWS_UNKNOWN in reasons and len(reasons) == 1:
                reasons = {}  # the window list fails, but nothing needs covering right now
            rules = policy.customer_apps if policy is not None else ()
            whole = LOCK_FAILED in reasons or WINDOWS_UNKNOWN in reasons
            monitors = monitors_of(self.desktop) if whole else []
            plan = plan_covers(
                reasons,
                rules,
                self._windows,
                monitors,
                presence=presence,
                label=lambda key: bilingual(self._translator, key),
            )
            stage = self._decision.stage if self._decision is not None else Stage.ACTIVE
            # The lock stage: the screen locker must end up above every cover; once the OS says locked, the
            # locker hides the screen and no cover is drawn (a cover above a lock screen is a bug, issue 11).
            lock_stage = stage is Stage.LOCK and LOCK_FAILED not in reasons
            if self._locked and LOCK_FAILED not in reasons:
                plan = CoverPlan([], plan.matches)
            self._plan = plan
            drawn = drawn_on_screen(self.overlay, plan)
            self._announcer.update(reasons, plan, drawn)
            wanted = (plan.covers, not lock_stage)
            changed = wanted != self._last_covers
            self._last_covers = wanted
        if changed and self.overlay is not None:
            self.overlay.show(plan.covers, on_top=not lock_stage)

    def _lock_failed_now(self) -> None:
        with self._lock:
            self._lock_failed = True
            self._reasons[LOCK_FAILED] = Reason("cover.lock_failed", LOCK_FAILED)
        self.wake.set()

    # ---- status ----------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        caps = self.desktop.capabilities()
        with self._lock:
            d = self._decision
            reasons = dict(self._reasons)
            cover_reasons = sorted(reasons)
            overlay_ok = self.overlay is not None and self.overlay.available()
            if AWAY in reasons and reasons[AWAY].event_reason == "step_away":
                cover_reasons.append("step_away")
            return {
                "presence": {
                    "stage": (d.stage if d else Stage.ACTIVE).value,
                    "seconds_left": d.seconds_left if d else None,
                    "idle": round(self._idle.last, 1),
                    "lock_inhibited_by": list(d.lock_inhibited_by) if d else [],
                    "awaiting_reveal": bool(d and d.awaiting_reveal),
                },
                "cover_reasons": cover_reasons,
                "covered": {"rules": self._plan.rules if reasons else [], "count": self._plan.count},
                "cover_state": honest_cover_state(
                    self._plan,
                    self._policy,
                    bool(reasons),
                    locked=self._locked,
                    lock_failed=LOCK_FAILED in reasons,
                    overlay=self.overlay,
                    can_cover=caps.window_list and caps.cover and overlay_ok,
                ),
                "lock_failed": self._lock_failed,
                "paused_until": self._pause.until(),
                "inhibitors": sorted(self._inhibitors | self._window_inhibitors()),
                "capabilities": capability_status(caps, self.overlay),
                "overlay": self.overlay.status() if self.overlay is not None else None,
            }


def bilingual(translator: Translator, key: str) -> str:
    """A cover label: the worker's language first, then the other (a key outside the catalog as is)."""
    texts = translator.both(key) if key in catalog() else {"ja": key, "en": key}
    first = translator.language
    second = "en" if first == "ja" else "ja"
    return f"{texts[first]}\n{texts[second]}"


def drawn_on_screen(overlay: CoverSink | None, plan: CoverPlan) -> bool:
    """Whether the helper says every cover of ``plan`` is on screen (a sink that does not say is trusted)."""
    if overlay is None:
        return False
    if not plan.covers:
        # Nothing to draw: trivially on screen, and the helper's status (a wait4 for its liveness) is not
        # asked on every tick of the idle loop.
        return True
    shown = overlay.status().get("shown")
    if shown is None:
        return True
    return {c.key for c in plan.covers} <= set(shown)


def monitors_of(desktop: Desktop) -> list[Monitor]:
    try:
        return list(desktop.monitors())
    except PlatformError:
        return []


def capability_status(caps: Capabilities, overlay: CoverSink | None) -> dict[str, Any]:
    return {
        "backend": caps.backend,
        **{name: bool(getattr(caps, name)) for name in ESSENTIAL},
        "cover": caps.cover and (overlay is not None and overlay.available()),
        "lock_before_sleep": caps.lock_before_sleep,
    }


def honest_cover_state(
    plan: CoverPlan,
    policy: Policy | None,
    active: bool,
    *,
    locked: bool,
    lock_failed: bool,
    overlay: CoverSink | None,
    can_cover: bool = True,
) -> dict[str, Any]:
    """What is covered, honestly (``covered`` gives the rules and count): ``state`` "covered" (windows),
    "screen" (whole screen), "nothing_to_cover" (no open window matches a rule), "no_rules", "locked" (the
    OS lock screen hides everything), "lock_instead" (this desktop cannot cover: the lock is on its way),
    "unprotected" (it cannot cover and the lock failed), "not_drawn" (covers are planned but the helper has not
    confirmed them on screen) or "none" (no cover reason); ``unmatched_rules``:
    rules that match no open window; ``drawn``: the helper confirmed every cover is on screen."""
    if not active:
        return {"state": "none", "unmatched_rules": [], "drawn": True}
    drawn = drawn_on_screen(overlay, plan)
    if not can_cover and not (plan.covers and drawn):
        # No window list or no cover (Wayland, a dead helper): nothing is drawn and which windows hold customer
        # data is unknown; the lock is the protection (agent/decide/presence.py locks at protect).
        state = "locked" if locked else "unprotected" if lock_failed else "lock_instead"
        return {"state": state, "unmatched_rules": [], "drawn": state == "locked" and drawn}
    rules = policy.customer_apps if policy is not None else ()
    state = "locked" if locked and not plan.covers and not lock_failed else cover_state(plan, rules)
    if state in ("covered", "screen") and not drawn:
        state = "not_drawn"  # planned, but the helper has not confirmed it on screen (starting, or crashing)
    return {
        "state": state,
        "unmatched_rules": unmatched_rules(plan, rules),
        "drawn": drawn,
    }
