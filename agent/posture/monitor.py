"""PostureMonitor: evaluates the posture checks periodically and on every network change, decides enforcement
and tells the runtime (``on_change``) and the event stream.

Events (agent.report.stream.Kind): ``POSTURE_FINDING`` whenever a check's status or its enforcement action
changes (data: check_id, status, previous, mode, enforcement none|warn|block), ``VPN_UP`` / ``VPN_DOWN`` per VPN
interface that appears or disappears. Data carry check ids, statuses and interface names only.

Latency: the network group (VPN, Wi-Fi, plaintext) is evaluated and published first; the DNS canary and TLS
handshakes follow in a second pass so that a resolver or endpoint timing out cannot delay covering windows after
the VPN drops.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Collection
from datetime import datetime

from agent.decide.enforcement import EnforcementState, decide
from agent.i18n import Translator
from agent.platform import create_posture_host
from agent.posture.base import CheckResult, HostProbe
from agent.posture.plaintext import RuleFor
from agent.posture.suite import GROUPS, evaluate
from agent.posture.watcher import NetworkWatcher, network_watcher
from agent.report.stream import AgentEvent, EventStream, Kind
from core.clock import Clock
from policy.model import Policy

logger = logging.getLogger(__name__)

OnChange = Callable[[EnforcementState, list[CheckResult]], None]
WatcherFactory = Callable[[Callable[[], None]], NetworkWatcher]


def _event_interface(name: str) -> str:
    """Interface names as event data accept word characters, space, '.', ':' and '-' (agent/report/events.py);
    Windows names such as "Local Area Connection* 12" are mapped onto that set."""
    return re.sub(r"[^\w .:-]", "_", name)[:64] or "_"


def _enforcement_label(action: str) -> str:
    return action if action in ("warn", "block") else "none"


def _check_enforcement(state: EnforcementState, check_id: str) -> str:
    """What the worker sees of one check right now: "block", "warn" or "none" (tray icon state)."""
    if check_id in state.blocking:
        return "block"
    return "warn" if check_id in state.warnings else "none"


class PostureMonitor:
    """Thread-safe; ``evaluate()`` may be called directly (CLI, tests) or by the monitor's own thread."""

    def __init__(
        self,
        policy: Policy,
        clock: Clock,
        on_change: OnChange,
        stream: EventStream | None = None,
        *,
        host: HostProbe | None = None,
        rule_for: RuleFor | None = None,
        translator: Translator | None = None,
        watcher_factory: WatcherFactory = network_watcher,
        tls_timeout: float = 5.0,
    ) -> None:
        self._policy = policy
        self._clock = clock
        self._on_change = on_change
        self._stream = stream
        self._host = host or create_posture_host()
        self._rule_for = rule_for
        self._translator = translator
        self._watcher_factory = watcher_factory
        self._tls_timeout = tls_timeout
        self._lock = threading.RLock()
        self._groups: dict[str, list[CheckResult]] = {}
        self._state: EnforcementState | None = None
        self._last_status: dict[str, str] = {}
        self._vpn: tuple[str, ...] | None = None
        self._wake = threading.Event()
        self._network_changed = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._watcher: NetworkWatcher | None = None
        self._periodic_due = False
        self.evaluations = 0

    # ------------------------------------------------------------------------------------------- queries

    @property
    def state(self) -> EnforcementState:
        with self._lock:
            return self._state or EnforcementState()

    @property
    def results(self) -> list[CheckResult]:
        with self._lock:
            return [r for g in GROUPS for r in self._groups.get(g, [])]

    def status(self) -> dict[str, object]:
        """For ``mamori agent status`` (Runtime.add_status_provider): ids and statuses only.

        ``pending`` is true until the first evaluation has finished: no check has passed yet, so nothing may say
        "protected" (the tray shows a warning and the status window "no checks have run yet").
        """
        with self._lock:
            pending = self._state is None
        state = self.state
        return {
            "pending": pending,
            "block": state.block,
            "blocking": list(state.blocking),
            "warnings": list(state.warnings),
            "block_at": state.block_at.isoformat() if state.block_at else None,
            "checks": [
                {
                    "id": r.id,
                    "status": r.status,
                    "mode": r.mode,
                    "enforcement": _check_enforcement(state, r.id),
                }
                for r in self.results
            ],
        }

    def set_policy(self, policy: Policy) -> None:
        """A new trusted policy: forget results of checks it may have removed and re-evaluate everything soon."""
        with self._lock:
            self._policy = policy
            self._groups.clear()
        self._periodic_due = True
        self._wake.set()

    # -------------------------------------------------------------------------------------------- evaluation

    def evaluate(self, groups: Collection[str] = GROUPS) -> tuple[EnforcementState, list[CheckResult]]:
        """Run the given check groups now, decide, publish changes; returns the new state and all results."""
        with self._lock:
            policy = self._policy
        run = evaluate(
            policy,
            self._host,
            groups=groups,
            rule_for=self._rule_for,
            translator=self._translator,
            tls_timeout=self._tls_timeout,
        )
        with self._lock:
            self.evaluations += 1
            before = dict(self._last_status)  # survives set_policy, so "previous" stays right across versions
            self._groups.update(run.results)
            results = self.results
            previous = self._state
            state = decide(results, policy.enforcement, self._clock.now(), previous)
            self._state = state
            now = self._clock.now()
            self._publish_findings(before, results, previous, state, now)
            self._last_status.update({r.id: r.status for r in results})
            if run.vpn_interfaces is not None:
                self._publish_vpn(run.vpn_interfaces, now)
            changed = (
                previous is None
                or not state.same_decision(previous)
                or any(before.get(r.id) != r.status for r in results)
            )
        if changed:
            try:
                self._on_change(state, results)
            except Exception:
                logger.exception("posture on_change handler failed")
        return state, results

    def _publish_findings(
        self,
        before: dict[str, str],
        results: list[CheckResult],
        previous: EnforcementState | None,
        state: EnforcementState,
        now: datetime,
    ) -> None:
        if self._stream is None:
            return
        for r in results:
            old = before.get(r.id)
            action = _enforcement_label(state.actions.get(r.id, "none"))
            old_action = _enforcement_label(previous.actions.get(r.id, "none")) if previous else None
            if old == r.status and old_action == action:
                continue
            self._stream.publish(
                AgentEvent(
                    Kind.POSTURE_FINDING,
                    now,
                    {
                        "check_id": r.id,
                        "status": r.status,
                        "previous": old,
                        "mode": r.mode,
                        "enforcement": action,
                    },
                )
            )

    def _publish_vpn(self, interfaces: tuple[str, ...], now: datetime) -> None:
        previous = self._vpn
        self._vpn = interfaces
        if self._stream is None:
            return
        old = set(previous or ())
        new = set(interfaces)
        for name in sorted(new - old):
            self._stream.publish(AgentEvent(Kind.VPN_UP, now, {"interface": _event_interface(name)}))
        if previous is not None:
            for name in sorted(old - new):
                self._stream.publish(AgentEvent(Kind.VPN_DOWN, now, {"interface": _event_interface(name)}))

    # ---------------------------------------------------------------------------------------------- thread

    def network_changed(self) -> None:
        """Called by the watcher (or anyone) when the network changed: re-evaluate now."""
        self._network_changed.set()
        self._wake.set()

    def start(self) -> None:
        """Evaluate everything once, start the network watcher and the periodic loop."""
        self._periodic_due = True
        self._thread = threading.Thread(target=self._run, name="mamori-posture", daemon=True)
        self._thread.start()
        try:
            self._watcher = self._watcher_factory(self.network_changed)
        except Exception as err:
            logger.warning("network watcher unavailable (%s); periodic posture checks only", err)

    def run_until(self, stop: threading.Event) -> None:
        """Runtime.add_worker target: run until ``stop`` is set (the runtime restarts it if it raises)."""
        self._stopped.clear()
        self.start()
        try:
            stop.wait()
        finally:
            self.stop()

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()
        if self._watcher is not None:
            self._watcher.stop()
        if self._thread is not None:
            self._thread.join(timeout=10.0)

    def _run(self) -> None:
        next_periodic = self._clock.monotonic()
        while not self._stopped.is_set():
            try:
                if self._network_changed.is_set():
                    self._network_changed.clear()
                    self.evaluate(("network",))
                    self.evaluate(("probes",))
                if self._periodic_due or self._clock.monotonic() >= next_periodic:
                    self._periodic_due = False
                    self.evaluate(GROUPS)
                    next_periodic = self._clock.monotonic() + max(1.0, self._policy.enforcement.recheck)
                elif self._due_block():
                    self.evaluate(())
            except Exception:
                logger.exception("posture evaluation failed")
            timeout = next_periodic - self._clock.monotonic()
            block_at = self.state.block_at
            if block_at is not None:
                timeout = min(timeout, (block_at - self._clock.now()).total_seconds() + 0.05)
            if not self._network_changed.is_set():
                self._wake.wait(max(0.05, timeout))
            self._wake.clear()

    def _due_block(self) -> bool:
        block_at = self.state.block_at
        return block_at is not None and self._clock.now() >= block_at
