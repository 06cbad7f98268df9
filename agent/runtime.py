"""The agent's supervisor: presence loop, covers, lock, supervised workers, status (SPEC.md, "Agent behaviour").

Everything with side effects is injected: the desktop backend, the cover sink (the helper process), the event
stream, the clock. Other parts of the agent plug in through a small API:

- ``set_cover_reason(source, active, message_key)``: while any reason is active, every customer-data window is
  covered. "away" is the presence reason (cover style from the policy: blur or opaque); "share", "posture", "ack"
  (or any other source) cover opaquely with the label of ``message_key`` (default ``cover.<source>``).
- ``set_inhibitor(name, active)``: e.g. "call" while a call is running; may delay the lock, never the cover.
- ``add_worker(name, target)``: a function ``target(stop: threading.Event)`` run in its own thread and restarted
  when it raises (or returns early).
- ``add_status_provider(name, fn)``: ``fn() -> object`` merged into :meth:`status` under ``name``.
- ``step_away()``, ``status()``, ``handle_control(request)`` (the control socket's handler), ``run()``/``stop()``.

Events carry rule names, counts and reason codes only — never titles, labels from windows or command lines.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from core.clock import Clock
from agent.config import AgentConfig
from agent.decide.match import Match, match_windows
from agent.decide.presence import PresenceDecision, PresenceInput, PresenceMachine, Stage
from agent.i18n import Translator, detect_language
from agent.overlay.protocol import CoverSpec
from agent.overlay.supervisor import CoverSink
from agent.platform.base import ESSENTIAL, Desktop, PlatformError, Rect, SleepWatcher, Window
from agent.report.stream import AgentEvent, EventStream, Kind
from policy.model import Policy, Presence

logger = logging.getLogger(__name__)

PolicyProvider = Callable[[], Policy | None]

# The label of the first active reason in this order is shown on opaque covers.
REASON_ORDER = ("lock_failed", "posture", "share", "ack", "away")
AWAY = "away"
MAX_RESTART_DELAY = 5.0
HEALTHY_RUN = 60.0
LOCK_FAILED = "lock_failed"


@dataclass(frozen=True)
class _Reason:
    message_key: str
    event_reason: str


class Runtime:
    def __init__(
        self,
        config: AgentConfig,
        policy: Policy | PolicyProvider | None,
        desktop: Desktop,
        stream: EventStream,
        clock: Clock,
        *,
        overlay: CoverSink | None = None,
        translator: Translator | None = None,
        tick: float = 0.1,
        idle_tick: float = 1.0,
        lock_verify_timeout: float = 5.0,
        policy_refresh: float = 2.0,
        policy_recheck: float = 60.0,
        hotkey: bool = False,
    ) -> None:
        self.config = config
        self.desktop = desktop
        self.stream = stream
        self.clock = clock
        self.overlay = overlay
        self.tick = tick
        self.idle_tick = idle_tick
        self.lock_verify_timeout = lock_verify_timeout
        self._policy_source = policy
        self._policy_refresh = policy_refresh
        self._policy: Policy | None = policy if isinstance(policy, Policy) or policy is None else None
        self._policy_recheck = policy_recheck
        self._policy_checked = float("-inf")
        # Reading the trusted store verifies and parses the policy (milliseconds): with a policy in hand it is
        # re-read when the agent itself applied a new one (POLICY_APPLIED from the drop watcher or the server
        # pull) and otherwise only every policy_recheck seconds, for an out-of-band `mamori policy apply`.
        self._policy_events = stream.subscribe() if callable(policy) else None
        self._translator_fixed = translator
        self._translator = translator or Translator(detect_language(config.language))
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._reasons: dict[str, _Reason] = {}
        self._announced: dict[str, str] = {}  # source -> event reason of the PROTECTION_APPLIED sent
        self._inhibitors: set[str] = set()
        self._machine = PresenceMachine(self._presence())
        self._decision: PresenceDecision | None = None
        self._idle = 0.0
        self._windows: list[Window] = []
        self._matches: list[Match] = []
        self._last_covers: list[CoverSpec] | None = None
        self._countdown_shown: int | None = None
        self._was_locked = False
        self._locking = False
        self._lock_thread: threading.Thread | None = None
        self._lock_failed = False
        self._degraded: dict[str, str] = {}
        self._workers: dict[str, Callable[[threading.Event], None]] = {}
        self._threads: list[threading.Thread] = []
        self._status_providers: dict[str, Callable[[], object]] = {}
        self._restarts: dict[str, int] = {}
        # First restart delay of a crashed worker; it doubles up to MAX_RESTART_DELAY.
        self._supervise_delay = 0.5
        self._hotkey_wanted = hotkey
        self._hotkey: Any = None
        self._started = False
        self._paused_until: float | None = None  # monotonic deadline of a worker's pause of away protection
        self._paused_until_wall: datetime | None = None

    # ---- policy ----------------------------------------------------------------------------------------
    def policy(self) -> Policy | None:
        source = self._policy_source
        if callable(source) and not isinstance(source, Policy):
            now = self.clock.monotonic()
            interval = self._policy_refresh if self._policy is None else self._policy_recheck
            if self._policy_applied() or now - self._policy_checked >= interval:
                self._policy_checked = now
                try:
                    fresh = source()
                except Exception as err:  # keep the last-known-good policy (SPEC.md, "Policy")
                    logger.warning("policy not readable, keeping the last good one: %s", err)
                    fresh = self._policy
                if fresh is None:
                    fresh = self._policy  # a provider that lost its policy: keep the last-known-good one
                if fresh is not self._policy:
                    self._policy = fresh
                    self._machine.reconfigure(self._presence())
                    if self._translator_fixed is None and fresh is not None:
                        self._translator = Translator(
                            detect_language(self.config.language),
                            {"ja": fresh.messages.ja, "en": fresh.messages.en},
                        )
        return self._policy

    def _policy_applied(self) -> bool:
        """True when POLICY_APPLIED was published since the last call (drains the runtime's subscription)."""
        events = self._policy_events
        applied = False
        while events is not None:
            try:
                event = events.get_nowait()
            except queue.Empty:
                break
            applied = applied or event.kind is Kind.POLICY_APPLIED
        return applied

    def _presence(self) -> Presence:
        return self._policy.presence if self._policy is not None else Presence()

    # ---- public API ------------------------------------------------------------------------------------
    def set_cover_reason(self, source: str, active: bool, message_key: str | None = None) -> None:
        with self._lock:
            if active:
                self._reasons[source] = _Reason(message_key or f"cover.{source}", source)
            else:
                self._reasons.pop(source, None)
        self._wake.set()

    def set_inhibitor(self, name: str, active: bool) -> None:
        with self._lock:
            if active:
                self._inhibitors.add(name)
            else:
                self._inhibitors.discard(name)
        self._wake.set()

    def step_away(self) -> None:
        with self._lock:
            self._paused_until = self._paused_until_wall = None  # stepping away ends a pause
            self._machine.step_away(self.clock.monotonic())
        self._wake.set()

    def pause(self, minutes: float) -> float:
        """Pause away protection (idle stages) for at most the policy's ``worker.pause_max``.

        Only the away stages pause: covers for a screen share, a blocking posture check or a pending
        acknowledgement stay. Returns the minutes granted (0 when the policy does not allow pausing); the
        caller reports ``agent.paused``, the runtime reports ``agent.resumed`` when the pause ends by itself.
        """
        policy = self.policy()
        if policy is None or not policy.worker.allow_pause:
            return 0.0
        seconds = max(0.0, min(minutes * 60.0, policy.worker.pause_max))
        with self._lock:
            self._paused_until = self.clock.monotonic() + seconds
            self._paused_until_wall = self.clock.now() + timedelta(seconds=seconds)
        self._wake.set()
        return seconds / 60.0

    def resume(self) -> None:
        with self._lock:
            self._paused_until = self._paused_until_wall = None
        self._wake.set()

    def _paused(self) -> bool:
        """True while a pause runs; publishes ``agent.resumed`` once when it runs out."""
        with self._lock:
            until = self._paused_until
            if until is None:
                return False
            if self.clock.monotonic() < until:
                return True
            self._paused_until = self._paused_until_wall = None
        self.stream.publish(AgentEvent(Kind.PROTECTION_RESUMED, self.clock.now(), {"reason_code": "expired"}))
        return False

    def reveal(self, key: str = "") -> None:
        """A cover was clicked (reveal = "click")."""
        with self._lock:
            self._machine.reveal()
        self._wake.set()

    def add_worker(self, name: str, target: Callable[[threading.Event], None]) -> None:
        self._workers[name] = target
        if self._started:
            self._start_thread(name, target)

    def add_status_provider(self, name: str, provider: Callable[[], object]) -> None:
        self._status_providers[name] = provider

    def covered_windows(self) -> list[Window]:
        """The customer-data windows covered right now (e.g. for the screen-share self-check)."""
        with self._lock:
            return [m.window for m in self._matches] if self._active_reasons() else []

    # ---- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> None:
        if self._started:
            return
        self._started = True
        self.policy()
        caps = self.desktop.capabilities()
        for name in caps.missing():
            self._report_degraded(name, "unsupported")
        if self.overlay is not None:
            self.overlay.start()
        else:
            self._report_degraded("cover", "no_helper")
        self._start_sleep_watch()
        if self._hotkey_wanted:
            self._start_hotkey()
        self.stream.publish(AgentEvent(Kind.AGENT_STARTED, self.clock.now(), {}))
        self._start_thread("presence", self._presence_loop)
        for name, target in self._workers.items():
            self._start_thread(name, target)

    def run(self) -> None:
        """Start and block until :meth:`stop`."""
        self.start()
        self._stop.wait()

    def stop(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=3)
        if self._hotkey is not None:
            self._hotkey.stop()
        if self.overlay is not None:
            self.overlay.stop()
        self.stream.publish(AgentEvent(Kind.AGENT_STOPPED, self.clock.now(), {}))

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def wait_stopped(self, timeout: float | None = None) -> bool:
        """Block until :meth:`stop` (True) or ``timeout`` (False), without polling."""
        return self._stop.wait(timeout)

    def _start_thread(self, name: str, target: Callable[[threading.Event], None]) -> None:
        thread = threading.Thread(
            target=self._supervise, args=(name, target), name=f"mamori-{name}", daemon=True
        )
        self._threads.append(thread)
        thread.start()

    def _supervise(self, name: str, target: Callable[[threading.Event], None]) -> None:
        """Run ``target`` until stop; restart it when it raises or returns, with a backoff capped at
        MAX_RESTART_DELAY (protection must come back soon) that resets after a long healthy run."""
        delay = self._supervise_delay
        while not self._stop.is_set():
            started = self.clock.monotonic()
            try:
                target(self._stop)
            except Exception:
                logger.exception("worker %s crashed; restarting in %.1fs", name, delay)
                self._report_degraded(f"worker.{name}", "crashed")
            if self._stop.is_set():
                return
            if self.clock.monotonic() - started > HEALTHY_RUN:
                delay = self._supervise_delay
            self._restarts[name] = self._restarts.get(name, 0) + 1
            self._stop.wait(delay)
            delay = min(max(delay, 0.1) * 2, MAX_RESTART_DELAY)

    # ---- the presence loop -----------------------------------------------------------------------------
    def _presence_loop(self, stop: threading.Event) -> None:
        while not stop.is_set():
            interval = self.step()
            self._wake.wait(interval)
            self._wake.clear()

    def step(self) -> float:
        """One sample: presence stage, lock, covers. Returns how long to wait before the next one."""
        policy = self.policy()
        presence = self._presence()
        caps = self.desktop.capabilities()
        try:
            idle = self.desktop.idle_seconds()
        except PlatformError as err:
            self._report_degraded("idle", "query_failed", str(err))
            idle = 0.0
        try:
            locked = self.desktop.is_locked()
        except PlatformError:
            locked = False
        self._track_os_lock(locked)
        overlay_ok = self.overlay is not None and self.overlay.available()
        paused = self._paused()
        with self._lock:
            inhibitors = frozenset(self._inhibitors | self._window_inhibitors())
            sample = PresenceInput(
                idle=0.0 if paused else idle,  # a pause holds the away stages at "active"
                locked=locked,
                inhibitors=inhibitors,
                can_cover=caps.window_list and caps.cover and overlay_ok,
            )
            decision = self._machine.update(sample, self.clock.monotonic())
            self._decision = decision
            self._idle = idle
            if decision.changed:
                self.stream.publish(
                    AgentEvent(
                        Kind.PRESENCE_STAGE,
                        self.clock.now(),
                        {"stage": decision.stage.value, "previous": decision.previous.value},
                    )
                )
            if decision.cover:
                self._reasons[AWAY] = _Reason("cover.away", decision.reason)
            else:
                self._reasons.pop(AWAY, None)
            if self._lock_failed and decision.stage is Stage.ACTIVE and not locked:
                self._lock_failed = False
                self._reasons.pop(LOCK_FAILED, None)
            active = bool(self._reasons)
        if decision.lock_now:
            self._lock_async(decision.reason)
        self._update_countdown(decision)
        if active:
            self._refresh_windows()
        self._refresh_covers(policy, presence)
        if active or decision.stage is not Stage.ACTIVE:
            return self.tick
        # Sleep until the next threshold could be reached, but wake at least every idle_tick.
        return max(self.tick, min(self.idle_tick, presence.warn_after - idle, presence.protect_after - idle))

    def _window_inhibitors(self) -> set[str]:
        found: set[str] = set()
        if any(w.fullscreen and not w.minimized for w in self._windows):
            found.add("fullscreen")
        return found

    def _refresh_windows(self) -> None:
        try:
            windows = self.desktop.windows()
        except PlatformError as err:
            # Keep the last list: dropping covers because one query failed would reveal customer data.
            logger.warning("window list failed: %s", err)
            return
        with self._lock:
            self._windows = windows

    def _active_reasons(self) -> dict[str, _Reason]:
        return dict(self._reasons)

    def _label(self, key: str) -> str:
        texts = self._translator.both(key) if _known(key) else {"ja": key, "en": key}
        first = self._translator.language
        second = "en" if first == "ja" else "ja"
        return f"{texts[first]}\n{texts[second]}"

    def _refresh_covers(self, policy: Policy | None, presence: Presence) -> None:
        with self._lock:
            reasons = self._active_reasons()
            covers: list[CoverSpec] = []
            matches: list[Match] = []
            if LOCK_FAILED in reasons:
                label = self._label(reasons[LOCK_FAILED].message_key)
                covers = [
                    CoverSpec(f"screen:{i}", m.rect, "opaque", label) for i, m in enumerate(self._monitors())
                ]
            elif reasons:
                rules = policy.customer_apps if policy is not None else ()
                matches = match_windows(rules, self._windows)
                only_away = set(reasons) == {AWAY}
                top = next((r for r in REASON_ORDER if r in reasons), sorted(reasons)[0])
                label = self._label(reasons[top].message_key)
                style = presence.cover if only_away else "opaque"
                clickable = only_away and presence.reveal == "click"
                covers = []
                for m in matches:
                    covers.append(CoverSpec(f"w:{m.window.id}", m.window.rect, style, label, clickable))
                    strip = title_strip(m.window)
                    if strip is not None:
                        covers.append(CoverSpec(f"w:{m.window.id}:title", strip, "opaque", "", clickable))
            self._matches = matches
            rule_names = sorted({m.rule for m in matches})
            self._announce(reasons, rule_names, len(matches) if matches else len(covers))
            changed = covers != self._last_covers
            self._last_covers = covers
        if changed and self.overlay is not None:
            self.overlay.show(covers)

    def _monitors(self) -> list[Any]:
        try:
            return list(self.desktop.monitors())
        except PlatformError:
            return []

    def _announce(self, reasons: Mapping[str, _Reason], rules: Sequence[str], count: int) -> None:
        now = self.clock.now()
        for source, reason in reasons.items():
            if source not in self._announced:
                self._announced[source] = reason.event_reason
                self.stream.publish(
                    AgentEvent(
                        Kind.PROTECTION_APPLIED,
                        now,
                        {"reason": reason.event_reason, "rules": list(rules), "count": count},
                    )
                )
        for source in [s for s in self._announced if s not in reasons]:
            event_reason = self._announced.pop(source)
            self.stream.publish(
                AgentEvent(
                    Kind.PROTECTION_REMOVED,
                    now,
                    {"reason": event_reason, "rules": list(rules), "count": count},
                )
            )

    def _update_countdown(self, decision: PresenceDecision) -> None:
        if self.overlay is None:
            return
        if decision.stage is Stage.WARN and decision.seconds_left is not None:
            seconds = int(decision.seconds_left + 0.999)
            if seconds != self._countdown_shown:
                self._countdown_shown = seconds
                text = self._translator("presence.countdown", seconds=seconds)
                self.overlay.countdown(float(seconds), text)
        elif self._countdown_shown is not None:
            self._countdown_shown = None
            self.overlay.countdown(None)

    # ---- locking ---------------------------------------------------------------------------------------
    def _track_os_lock(self, locked: bool) -> None:
        if locked == self._was_locked:
            return
        self._was_locked = locked
        if not locked:
            self.stream.publish(AgentEvent(Kind.SESSION_UNLOCKED, self.clock.now(), {}))
        elif not self._locking:
            self.stream.publish(AgentEvent(Kind.SESSION_LOCKED, self.clock.now(), {"method": "os"}))

    def _lock_async(self, reason: str) -> None:
        with self._lock:
            if self._locking:
                return
            self._locking = True
        self._lock_thread = threading.Thread(
            target=self._lock_and_verify, args=(reason,), name="mamori-lock", daemon=True
        )
        self._lock_thread.start()

    def join_lock(self, timeout: float = 10.0) -> None:
        """Wait for a running lock-and-verify to finish (tests, shutdown)."""
        thread = self._lock_thread
        if thread is not None:
            thread.join(timeout)

    def _lock_and_verify(self, reason: str) -> None:
        """Lock, then check that the session really locked; if not, cover the whole screen (SPEC.md)."""
        caps = self.desktop.capabilities()
        method = caps.lock_method or caps.backend
        try:
            try:
                self.desktop.lock()
            except PlatformError as err:
                logger.error("lock failed: %s", err)
                self._lock_failed_now(method, "lock_error")
                return
            deadline = self.clock.monotonic() + self.lock_verify_timeout
            while True:
                try:
                    if self.desktop.is_locked():
                        self._was_locked = True
                        self.stream.publish(
                            AgentEvent(Kind.SESSION_LOCKED, self.clock.now(), {"method": method})
                        )
                        return
                except PlatformError as err:
                    logger.warning("lock state unknown: %s", err)
                    break
                if self.clock.monotonic() >= deadline or self._stop.is_set():
                    break
                self.clock.sleep(0.1)
            self._lock_failed_now(method, "not_locked")
        finally:
            with self._lock:
                self._locking = False

    def _lock_failed_now(self, method: str, reason: str) -> None:
        self.stream.publish(
            AgentEvent(Kind.LOCK_FAILED, self.clock.now(), {"method": method, "reason": reason})
        )
        with self._lock:
            self._lock_failed = True
            self._reasons[LOCK_FAILED] = _Reason("cover.lock_failed", LOCK_FAILED)
        self._wake.set()

    def _before_sleep(self) -> None:
        presence = self._presence()
        if not presence.lock_before_sleep:
            return
        caps = self.desktop.capabilities()
        try:
            self.desktop.lock()
            self.stream.publish(
                AgentEvent(
                    Kind.SESSION_LOCKED, self.clock.now(), {"method": caps.lock_method or caps.backend}
                )
            )
        except PlatformError as err:
            logger.error("lock before sleep failed: %s", err)
            self.stream.publish(
                AgentEvent(
                    Kind.LOCK_FAILED,
                    self.clock.now(),
                    {"method": caps.lock_method or caps.backend, "reason": "sleep"},
                )
            )

    def _start_sleep_watch(self) -> None:
        caps = self.desktop.capabilities()
        if not caps.lock_before_sleep or not isinstance(self.desktop, SleepWatcher):
            return
        try:
            self.desktop.watch_sleep(self._before_sleep)
        except PlatformError as err:
            self._report_degraded("lock_before_sleep", "unavailable", str(err))

    def _start_hotkey(self) -> None:
        combo = self._presence().hotkey
        if not combo:
            return
        from agent.hotkey import start_hotkey

        try:
            self._hotkey = start_hotkey(combo, self.step_away)
        except PlatformError as err:
            self._report_degraded("hotkey", "unavailable", str(err))

    def _report_degraded(self, capability: str, reason: str, detail: str = "") -> None:
        with self._lock:
            if self._degraded.get(capability) == reason:
                return
            self._degraded[capability] = reason
        if detail:
            logger.warning("degraded: %s (%s): %s", capability, reason, detail)
        self.stream.publish(
            AgentEvent(
                Kind.CAPABILITY_DEGRADED, self.clock.now(), {"capability": capability, "reason": reason}
            )
        )

    def overlay_failed(self, reason: str) -> None:
        """The cover helper cannot run: report it; the presence machine now locks instead of covering."""
        self._report_degraded("cover", "helper_failed", reason)
        self._wake.set()

    # ---- status / control ------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        caps = self.desktop.capabilities()
        policy = self._policy
        with self._lock:
            d = self._decision
            reasons = self._active_reasons()
            cover_reasons = sorted(reasons)
            if AWAY in reasons and reasons[AWAY].event_reason == "step_away":
                cover_reasons.append("step_away")
            rules = sorted({m.rule for m in self._matches}) if reasons else []
            count = len(self._matches) if self._matches else len(self._last_covers or [])
            out: dict[str, Any] = {
                "presence": {
                    "stage": (d.stage if d else Stage.ACTIVE).value,
                    "seconds_left": d.seconds_left if d else None,
                    "idle": round(self._idle, 1),
                    "lock_inhibited_by": list(d.lock_inhibited_by) if d else [],
                    "awaiting_reveal": bool(d and d.awaiting_reveal),
                },
                "cover_reasons": cover_reasons,
                "covered": {"rules": rules, "count": count},
                "lock_failed": self._lock_failed,
                "paused_until": self._paused_until_wall.isoformat() if self._paused_until_wall else None,
                "inhibitors": sorted(self._inhibitors | self._window_inhibitors()),
                "capabilities": {
                    "backend": caps.backend,
                    **{name: bool(getattr(caps, name)) for name in ESSENTIAL},
                    "cover": caps.cover and (self.overlay is not None and self.overlay.available()),
                    "lock_before_sleep": caps.lock_before_sleep,
                },
                "degraded": sorted(self._degraded),
                "overlay": self.overlay.status() if self.overlay is not None else None,
                "policy": {"id": policy.id, "version": policy.version} if policy is not None else None,
                "worker": (
                    {
                        "allow_pause": policy.worker.allow_pause,
                        "pause_max": policy.worker.pause_max,
                        "allow_quit": policy.worker.allow_quit,
                    }
                    if policy is not None
                    else None
                ),
                "restarts": dict(self._restarts),
            }
        for name, provider in self._status_providers.items():
            try:
                out[name] = provider()
            except Exception as err:
                out[name] = {"error": type(err).__name__}
        return out

    def handle_control(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """The control socket's commands: {"cmd": "status"} and {"cmd": "step_away"}."""
        cmd = request.get("cmd")
        if cmd == "status":
            return {"ok": True, "status": self.status()}
        if cmd == "step_away":
            self.step_away()
            return {"ok": True}
        return {"ok": False, "error": f"unknown command {cmd!r}"}


def title_strip(window: Window) -> Rect | None:
    """The decorations above the client area (the title bar), when the backend reports them separately."""
    frame, rect = window.frame, window.rect
    if frame is None or frame.y >= rect.y:
        return None
    return Rect(frame.x, frame.y, frame.width, rect.y - frame.y)


def _known(key: str) -> bool:
    from agent.i18n import catalog

    return key in catalog()
