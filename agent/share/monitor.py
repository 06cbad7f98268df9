"""The share/recording monitor: polls the desktop, decides with :func:`agent.share.detect.detect`, reports.

Every ``interval`` (0.5 s by default: a share is seen within 0.5 s, and covered well within the 1 s budget of
SPEC.md's performance table; a shorter interval costs idle CPU, see docs/performance-agent.md) it reads the
process names, the window list when it may matter (only when its stamp changed, see ``_read_windows``) and, on
Wayland, PipeWire screencasts; then it

- calls ``on_change(state)`` when the state changes (and once for the first state);
- sets or clears the runtime's "share" cover reason through ``set_cover_reason`` when given, honouring the
  policy's ``screen_share.protect``;
- publishes ``SHARE_STARTED`` (app) and ``SHARE_ENDED`` (app, duration_s) per app — app names only, never
  meeting titles or URLs (SPEC.md, Events);
- calls ``notify`` once per share (inactive -> active) with the ja/en notice that customer windows are hidden;
- publishes ``CAPABILITY_DEGRADED`` when a signal becomes unreadable (apps in ``ShareState.unknown``);
- runs the self-check ``selfcheck_delay`` seconds after a share starts and every ``selfcheck_interval``
  while it lasts.

An app must be absent for ``end_grace`` seconds before its share ends, so an indicator window that is
briefly unmapped (toolbar auto-hide, a redraw) does not uncover customer windows for a moment.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from agent.i18n import Translator
from agent.platform import OsFamily
from agent.platform.base import Desktop, PlatformError, Window
from agent.report.stream import AgentEvent, EventStream, Kind
from agent.share.detect import (
    NOT_SHARING,
    CaptureStream,
    ProcessInfo,
    ProcessSnapshot,
    ShareState,
    detect,
    process_keys_matter,
    windows_needed,
)
from agent.share.pipewire import default_capture_probe
from agent.share.processes import (
    ProcessLister,
    ProcfsGatedLister,
    PsutilProcessLister,
    procfs_gate_usable,
)
from agent.share.signatures import signatures_for
from core.clock import Clock
from policy.model import Policy

logger = logging.getLogger(__name__)

COVER_REASON = "share"
COVER_MESSAGE_KEY = "share.cover"
NOTICE_MESSAGE_KEY = "share.notice"

CaptureProbe = Callable[[], Sequence[CaptureStream] | None]
SetCoverReason = Callable[[str, bool, str | None], None]


_NO_POLICY = Policy(schema=1, id="builtin", version=1)
_NO_WINDOWS: tuple[Window, ...] = ()  # "not needed": one object, so an unchanged poll is recognised


@dataclass(frozen=True)
class ShareNotice:
    """A notice for the worker: the message key, the apps concerned, and the text in ja and en.

    ``share.notice`` is sent once per share; ``share.selfcheck_failed`` when a cover is missing from the
    captured screen (see agent/share/guard.py)."""

    key: str
    apps: tuple[str, ...]
    text: dict[str, str]


def _default_process_lister() -> ProcessLister:
    lister = PsutilProcessLister()
    return ProcfsGatedLister(lister) if procfs_gate_usable() else lister


class ShareMonitor:
    def __init__(  # noqa: PLR0917 - the documented call shape: (policy, desktop, clock, on_change, stream)
        self,
        policy: Policy | Callable[[], Policy | None],
        desktop: Desktop,
        clock: Clock,
        on_change: Callable[[ShareState], None],
        stream: EventStream | None = None,
        process_lister: ProcessLister | None = None,
        *,
        capture_probe: CaptureProbe | Literal["auto"] | None = "auto",
        set_cover_reason: SetCoverReason | None = None,
        notify: Callable[[ShareNotice], None] | None = None,
        selfcheck: Callable[[], object] | None = None,
        interval: float = 0.5,
        end_grace: float = 0.3,
        capture_interval: float = 2.0,
        full_window_refresh: float = 10.0,
        titled_stamp_refresh: float = 300.0,
        selfcheck_delay: float = 1.0,
        selfcheck_interval: float = 30.0,
        os_family: OsFamily | None = None,
        titles_readable: bool = True,
    ) -> None:
        self._desktop = desktop
        self._clock = clock
        self._on_change = on_change
        self._stream = stream
        self._processes: ProcessLister = (
            process_lister if process_lister is not None else _default_process_lister()
        )
        self._probe: CaptureProbe | None = (
            default_capture_probe() if capture_probe == "auto" else capture_probe
        )
        self._set_cover_reason = set_cover_reason
        self._notify = notify
        self._selfcheck = selfcheck
        self.interval = interval
        self.end_grace = end_grace
        self.capture_interval = capture_interval
        self.full_window_refresh = full_window_refresh
        self.titled_stamp_refresh = titled_stamp_refresh
        self.selfcheck_delay = selfcheck_delay
        self.selfcheck_interval = selfcheck_interval
        self._os_family = os_family
        self._titles_readable = titles_readable

        self._lock = threading.Lock()
        # Like the runtime, a provider is accepted: it is asked on every poll and may keep answering the same
        # object; None (no trusted policy yet) means the built-in signatures with the default settings.
        self._policy_provider = policy if callable(policy) else None
        self._policy = policy if isinstance(policy, Policy) else _NO_POLICY
        # A lister that can skip listing /proc (ProcfsGatedLister) is told whose exits matter.
        self._watch_processes: Callable[[Callable[[str], bool]], None] | None = getattr(
            self._processes, "watch", None
        )
        self._signatures = signatures_for(self._policy, os_family)
        self._tell_watched()
        self._state: ShareState | None = None
        self._since: dict[str, float] = {}  # app -> monotonic start of its share
        self._last_seen: dict[str, float] = {}
        self._share_started: float | None = None
        self._next_selfcheck: float | None = None
        self._captures: Sequence[CaptureStream] | None = ()
        self._next_capture = float("-inf")
        self._cover_on: bool | None = None
        # Optional backend hook: a cheap value that changes whenever the set of top-level windows changes
        # (X11: _NET_CLIENT_LIST_STACKING). Without it the window list is read on every poll.
        self._stamp_fn: Callable[[], object] | None = getattr(desktop, "window_list_stamp", None)
        # ... and when that stamp also changes on a retitle (``window_list_stamp_titles``, the X11 backend's
        # event watch), the periodic full re-read is only a safety net, far apart: it is the costliest input.
        self._stamp_titles = bool(getattr(desktop, "window_list_stamp_titles", False))
        self._stamp: object = None
        self._window_cache: list[Window] | None = None
        self._last_detect: tuple[tuple[object, ...], ShareState] | None = None
        self._next_full_windows = float("-inf")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- configuration ---------------------------------------------------------------------------------
    def set_policy(self, policy: Policy) -> None:
        """A new trusted policy: its signatures and ``protect`` apply from the next poll."""
        with self._lock:
            self._use_policy(policy)

    def _use_policy(self, policy: Policy) -> None:
        if policy is not self._policy:
            self._policy = policy
            signatures = signatures_for(policy, self._os_family)
            if signatures != self._signatures:
                self._signatures = signatures
                self._tell_watched()

    def _tell_watched(self) -> None:
        if self._watch_processes is not None:
            self._watch_processes(process_keys_matter(self._signatures))

    def _refresh_policy(self) -> None:
        if self._policy_provider is None:
            return
        try:
            fresh = self._policy_provider()
        except Exception as err:  # keep the last-known-good policy (SPEC.md, "Policy")
            logger.warning("policy provider failed: %s", type(err).__name__)
            return
        self._use_policy(fresh if fresh is not None else self._policy)

    def status(self) -> dict[str, object]:
        """For the runtime's status (tray, ``mamori agent status``): app names only."""
        state = self.state
        return {"active": state.active, "apps": list(state.apps), "unknown": list(state.unknown)}

    @property
    def state(self) -> ShareState:
        with self._lock:
            return self._state or NOT_SHARING

    # ---- polling ---------------------------------------------------------------------------------------
    def _read_windows(self, processes: Sequence[ProcessInfo] | None, now: float) -> Sequence[Window] | None:
        if not windows_needed(self._signatures, processes):
            self._window_cache = None
            return _NO_WINDOWS
        try:
            if not self._desktop.capabilities().window_list:
                return None
            if self._stamp_fn is not None:
                # Indicators appear as new top-level windows, which changes the stamp; a full re-read every
                # full_window_refresh seconds also catches a window whose title changes in place (unless the
                # stamp already does: titled_stamp_refresh).
                stamp = self._stamp_fn()
                if self._window_cache is not None and stamp == self._stamp and now < self._next_full_windows:
                    return self._window_cache
                self._stamp = stamp
            windows = self._desktop.windows()
        except PlatformError as err:
            logger.warning("window list unavailable for share detection: %s", err)
            self._window_cache = None
            return None
        self._window_cache = windows
        refresh = self.titled_stamp_refresh if self._stamp_titles else self.full_window_refresh
        self._next_full_windows = now + refresh
        return windows

    def _read_processes(self) -> Sequence[ProcessInfo] | None:
        try:
            return self._processes()
        except (OSError, PlatformError) as err:
            logger.warning("process list unavailable for share detection: %s", err)
            return None

    def _read_captures(self, now: float) -> Sequence[CaptureStream] | None:
        # pw-dump is a subprocess: far too costly for every 0.2 s poll, so it runs every capture_interval.
        if self._probe is None:
            return ()
        if now >= self._next_capture:
            self._next_capture = now + self.capture_interval
            try:
                self._captures = self._probe()
            except OSError as err:
                logger.warning("screencast probe failed: %s", err)
                self._captures = None
        return self._captures

    def poll_once(self) -> ShareState:
        """One detection round; returns the (debounced) state. Safe to call from tests with a FakeClock."""
        with self._lock:
            self._refresh_policy()
            now = self._clock.monotonic()
            processes = self._read_processes()
            inputs = (
                # detect() reads the processes only through their set of names, which the lister hands out as
                # the same object while no name appears or goes away (agent/share/processes.py): a poll that
                # only sees another "bash" start or exit is then not evaluated again.
                processes.names if isinstance(processes, ProcessSnapshot) else processes,
                self._read_windows(processes, now),
                self._read_captures(now),
                self._signatures,
            )
            last = self._last_detect
            if last is not None and all(a is b for a, b in zip(inputs, last[0], strict=True)):
                raw = last[1]  # the very same snapshots as last poll (nothing started, nothing retitled)
            else:
                raw = detect(
                    inputs[1],
                    processes,
                    self._signatures,
                    captures=inputs[2],
                    titles_readable=self._titles_readable,
                )
                self._last_detect = (inputs, raw)
            previous = self._state or NOT_SHARING
            first = self._state is None
            started, ended = self._track(raw, now)
            apps = tuple(a for a in self._since)
            state = ShareState(
                active=bool(apps), apps=apps, unknown=tuple(a for a in raw.unknown if a not in self._since)
            )
            self._state = state
            protect = self._policy.screen_share.protect
            messages = self._policy.messages
        self._report(previous=previous, state=state, started=started, ended=ended, first=first)
        self._apply_cover(state.active and protect)
        if state.active and not previous.active:
            self._share_started = now
            self._next_selfcheck = now + self.selfcheck_delay if protect else None
            self._send_notice(state, protect, {"ja": messages.ja, "en": messages.en})
        elif not state.active:
            self._share_started = None
            self._next_selfcheck = None
        if first or state != previous:
            self._safely(lambda: self._on_change(state))
        self._maybe_selfcheck(now)
        return state

    def _track(self, raw: ShareState, now: float) -> tuple[list[str], list[tuple[str, float]]]:
        started: list[str] = []
        for app in raw.apps:
            self._last_seen[app] = now
            if app not in self._since:
                self._since[app] = now
                started.append(app)
        ended: list[tuple[str, float]] = []
        for app in list(self._since):
            if app not in raw.apps and now - self._last_seen[app] >= self.end_grace:
                ended.append((app, now - self._since.pop(app)))
                del self._last_seen[app]
        return started, ended

    def _report(
        self,
        *,
        previous: ShareState,
        state: ShareState,
        started: list[str],
        ended: list[tuple[str, float]],
        first: bool,
    ) -> None:
        for app in started:
            logger.info("screen share/recording started: %s", app)
            self._publish(Kind.SHARE_STARTED, {"app": app})
        for app, duration in ended:
            logger.info("screen share/recording ended: %s after %.1f s", app, duration)
            self._publish(Kind.SHARE_ENDED, {"app": app, "duration_s": round(duration, 1)})
        newly_unknown = set(state.unknown) - set(() if first else previous.unknown)
        if newly_unknown:
            logger.warning("cannot tell whether these apps share the screen: %s", sorted(state.unknown))
            self._publish(
                Kind.CAPABILITY_DEGRADED,
                # The report filter allows codes only here; the apps are in the state (tray, status).
                {"capability": "share_detection", "reason": "signal_unreadable"},
            )

    def _apply_cover(self, on: bool) -> None:
        if self._set_cover_reason is None or on == self._cover_on:
            return
        try:
            self._set_cover_reason(COVER_REASON, on, COVER_MESSAGE_KEY if on else None)
        except Exception:
            # Supervision: a failing runtime call must not stop detection; it is retried next poll.
            logger.exception("setting the share cover reason failed")
            return
        self._cover_on = on

    def _send_notice(self, state: ShareState, protect: bool, overrides: dict[str, dict[str, str]]) -> None:
        if self._notify is None or not protect:
            return
        translate = Translator("en", overrides)
        text = translate.both(NOTICE_MESSAGE_KEY, apps=", ".join(state.apps))
        notice = ShareNotice(key=NOTICE_MESSAGE_KEY, apps=state.apps, text=text)
        notify = self._notify
        self._safely(lambda: notify(notice))

    def _maybe_selfcheck(self, now: float) -> None:
        if self._selfcheck is None or self._next_selfcheck is None or now < self._next_selfcheck:
            return
        self._next_selfcheck = now + self.selfcheck_interval
        self._safely(self._selfcheck)

    def _publish(self, kind: Kind, data: dict[str, object]) -> None:
        if self._stream is not None:
            self._stream.publish(AgentEvent(kind, self._clock.now(), data))

    @staticmethod
    def _safely(call: Callable[[], object]) -> None:
        # Supervision: a failing consumer (tray, runtime, self-check) must not stop detection.
        try:
            call()
        except Exception:
            logger.exception("share monitor callback failed")

    # ---- thread ----------------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Poll until ``stop`` is set: the worker shape of ``Runtime.add_worker`` (restarted if it raises)."""
        while not stop.is_set():
            try:
                self.poll_once()
            except Exception:
                logger.exception("share detection round failed")
            # A real wait, not clock.sleep: setting ``stop`` must interrupt it at once.
            stop.wait(self.interval)

    def start(self) -> None:
        """Poll in a thread of its own (when not run as a runtime worker)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self.run, args=(self._stop,), name="share-monitor", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
