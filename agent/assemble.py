"""Everything `mamori agent run` attaches to the runtime besides presence (SPEC.md, "Agent behaviour").

- the MDM/GPO policy drop (``policy_bundle`` in agent.toml), applied to the trusted store when it changes;
- the posture monitor, following the runtime's trusted policy, covering customer windows while a check blocks;
- the screen-share guard;
- the reporting service (outbox, uploader, policy pull from the server), when the agent is enrolled or a
  server is configured.

Each piece talks to the runtime only through its public API (``add_worker``, ``add_status_provider``,
``set_cover_reason``, ``policy``), so any of them can fail and be restarted without taking presence down.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from core.clock import Clock
from agent.config import AgentConfig
from agent.report.stream import AgentEvent, EventStream, Kind
from policy.model import Policy

logger = logging.getLogger(__name__)

DROP_INTERVAL = 2.0
POLICY_FOLLOW_INTERVAL = 2.0


class Host(Protocol):
    """What the monitors need from :class:`agent.runtime.Runtime`."""

    def policy(self) -> Policy | None: ...
    def set_cover_reason(self, source: str, active: bool, message_key: str | None = None) -> None: ...
    def add_worker(self, name: str, target: Callable[[threading.Event], None]) -> None: ...
    def add_status_provider(self, name: str, provider: Callable[[], object]) -> None: ...


class PolicyDropWatcher:
    """Applies the locally dropped bundle (MDM/GPO) to the trusted store whenever the file changes.

    A rejected bundle leaves the trusted store as it was (last-known-good) and is reported once per file
    version as ``policy.rejected`` with the reason code; an accepted one as ``policy.applied``.
    """

    def __init__(
        self, config: AgentConfig, stream: EventStream, clock: Clock, interval: float = DROP_INTERVAL
    ) -> None:
        if config.policy_bundle is None:
            raise ValueError("no policy_bundle configured")
        self.path: Path = config.policy_bundle
        self.config = config
        self.stream = stream
        self.clock = clock
        self.interval = interval
        self._seen: tuple[int, int] | None = None
        self._key_problem: str | None = None

    def check_once(self) -> str | None:
        """Apply the drop if it changed since the last look; returns "accepted", "unchanged", the rejection
        reason code, or None when there was nothing new to read."""
        from policy.errors import BundleRejectedError, PolicyError
        from policy.keys import load_trusted_keys
        from policy.store import TrustedStore

        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._seen = None
            return None
        except OSError as err:
            logger.warning("policy drop %s unreadable: %s", self.path, err.strerror)
            return None
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._seen:
            return None
        try:
            bundle = self.path.read_bytes()
            trusted = load_trusted_keys(self.config.trusted_keys)
        except OSError as err:
            logger.warning("policy drop %s unreadable: %s", self.path, err.strerror)
            return None
        except PolicyError as err:
            # Retried every interval until the keys are fixed, but said once: not 40 000 log lines a day.
            if str(err) != self._key_problem:
                self._key_problem = str(err)
                logger.warning("policy drop not applied: %s", err)
            return None
        self._key_problem = None
        self._seen = stamp
        now = self.clock.now()
        try:
            result = TrustedStore(self.config.state_dir).apply(bundle, trusted, now)
        except BundleRejectedError as err:
            logger.warning("policy drop rejected, keeping the last good policy: %s", err)
            self.stream.publish(AgentEvent(Kind.POLICY_REJECTED, now, {"reason": err.reason}))
            return err.reason
        except PolicyError as err:
            logger.warning("policy drop not applied: %s", err)
            return None
        if result.accepted:
            data = {"policy_id": result.policy.id, "version": result.policy.version}
            self.stream.publish(AgentEvent(Kind.POLICY_APPLIED, now, data))
        return result.status

    def run(self, stop: threading.Event) -> None:
        self.check_once()
        while not stop.wait(self.interval):
            self.check_once()


class PostureFollower:
    """Runs the posture monitor on the runtime's current policy and turns a block into the "posture" cover."""

    def __init__(self, runtime: Host, stream: EventStream, clock: Clock, **monitor_options: Any) -> None:
        self.host = runtime
        self.stream = stream
        self.clock = clock
        self._options = monitor_options
        self._monitor: Any = None
        self._policy: Policy | None = None

    def _on_change(self, state: Any, _results: list[Any]) -> None:
        self.host.set_cover_reason("posture", bool(state.block), state.message_key if state.block else None)

    def run(self, stop: threading.Event) -> None:
        from agent.posture.monitor import PostureMonitor

        try:
            while not stop.is_set():
                policy = self.host.policy()
                if policy is not None and policy is not self._policy:
                    if self._monitor is None:
                        self._monitor = PostureMonitor(
                            policy, self.clock, self._on_change, self.stream, **self._options
                        )
                        self._monitor.start()
                    else:
                        self._monitor.set_policy(policy)
                    self._policy = policy
                stop.wait(POLICY_FOLLOW_INTERVAL)
        finally:
            if self._monitor is not None:
                self._monitor.stop()
                self._monitor = None
                self._policy = None

    def status(self) -> dict[str, object]:
        monitor = self._monitor
        if monitor is None:
            return {"block": False, "blocking": [], "warnings": [], "block_at": None, "checks": []}
        result: dict[str, object] = monitor.status()
        return result


@dataclass
class Attached:
    posture: PostureFollower
    share: Any
    reporting: Any  # agent.report.service.ReportingService | None
    drop: PolicyDropWatcher | None


def attach_monitors(
    runtime: Any, stream: EventStream, config: AgentConfig, clock: Clock, *, reporting: bool = True
) -> Attached:
    """Register every monitor with ``runtime`` (before ``runtime.start()``: workers start with it)."""
    from agent.share.guard import install_share_guard

    drop = None
    if config.policy_bundle is not None:
        drop = PolicyDropWatcher(config, stream, clock)
        runtime.add_worker("policy-drop", drop.run)

    posture = PostureFollower(runtime, stream, clock)
    runtime.add_worker("posture", posture.run)
    runtime.add_status_provider("posture", posture.status)

    caps = runtime.desktop.capabilities()
    # Without readable titles (macOS without Screen Recording) the share guard says "unknown", never "no".
    share = install_share_guard(runtime, runtime.desktop, stream, clock, titles_readable=caps.window_list)

    service = None
    if reporting:
        from agent.report.service import ReportingService

        # The service reads the trusted store itself: it reloads on "policy.applied", which the drop watcher and
        # the server pull publish right after the store changed (the runtime's cached view may lag by a tick).
        service = ReportingService(config, stream, clock)
        runtime.add_status_provider("reporting", service.status)
    return Attached(posture, share, service, drop)
