"""The reporting service: stream -> privacy filter -> durable outbox -> server; heartbeats, checkins, policy pull.

Two threads: one drains the :class:`EventStream` subscription into the outbox (one transaction per burst), one
uploads, checks in, sends heartbeats and refreshes the policy. The runtime builds one service, calls
``start()`` and, on shutdown, ``stop()`` after publishing ``agent.stopped`` so the clean-stop notice is sent.

Sleep/resume: intervals are measured on the monotonic clock, which on Linux and macOS does not advance while
the machine sleeps. When the wall clock moved much further than the monotonic clock across one wait, the
machine slept (or NTP stepped the clock): pending retries, the heartbeat and the policy refresh are due at once,
so a resumed laptop reports promptly instead of finishing a pre-sleep backoff.
"""

from __future__ import annotations

import logging
import queue
import re
import secrets
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from agent.config import AgentConfig
from agent.platform import OS_NAME
from agent.policy_source import PolicySource
from agent.report import transport
from agent.report.enrollment import Enrollment, EnrollmentWatch
from agent.report.events import Context, build_record, rule_context
from agent.report.outbox import Outbox, OutboxError, Pending
from agent.report.stream import AgentEvent, EventStream, Kind
from agent.report.summary import DeviceState, quit_allowed
from agent.report.uploader import Backoff, PolicyFetcher, Uploader
from core import __version__
from core.clock import Clock

if TYPE_CHECKING:
    import requests

    from agent.report.transport import HttpClient, Response
    from policy.model import Policy

logger = logging.getLogger(__name__)

OUTBOX_FILE = "outbox.sqlite3"
TITLE_KEY_FILE = "report-title.key"
RESUME_SLACK = (
    30.0  # seconds the wall clock may run ahead of the monotonic clock in one wait without "resume"
)
MAX_WAIT = 5.0
MIN_WAIT = 0.01  # the shortest wait of one upload-loop pass: no pass returns without waiting
_NON_CODE = re.compile(r"[^a-z0-9_.-]+")
# Put on the service's own subscription queue by stop() to end the persist loop's blocking get().
_WAKE = cast(AgentEvent, object())


def wait_noticing_resume(wake: threading.Event, clock: Clock, seconds: float) -> bool:
    """Wait on ``wake`` up to ``seconds``; True when the wall clock ran far ahead of the monotonic one meanwhile."""
    wall0, mono0 = clock.now(), clock.monotonic()
    wake.wait(max(0.0, seconds))
    wake.clear()
    wall_delta = (clock.now() - wall0).total_seconds()
    if resumed_from_sleep(wall_delta, clock.monotonic() - mono0):
        logger.info("clock ran ahead by %.0fs during a wait (resume from sleep?): retrying now", wall_delta)
        return True
    return False


def resumed_from_sleep(wall_delta: float, mono_delta: float, slack: float = RESUME_SLACK) -> bool:
    """True when the wall clock ran ahead of the monotonic clock: the machine slept, or the clock was stepped."""
    return wall_delta - mono_delta > slack


class LazySession:
    """The client every request to the server goes through (agent/report/transport.py's ``HttpClient``: its TLS
    trusts agent.toml's ``server_ca`` or the OS store, whatever REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE say), made
    on the first request. ``http.client`` and ``ssl`` cost ~7 MB of RSS (docs/performance.md): an agent that
    reports to no server (an MDM-drop-only deployment) never loads them."""

    def __init__(self, server_ca: Path | None) -> None:
        self._server_ca = server_ca
        self._client: HttpClient | None = None
        self._lock = threading.Lock()

    @property
    def created(self) -> bool:
        return self._client is not None

    def client(self) -> HttpClient:
        with self._lock:
            if self._client is None:
                from agent.report.transport import HttpClient

                self._client = HttpClient(self._server_ca)
            return self._client

    def get(self, url: str, **kwargs: Any) -> Response:
        return self.client().get(url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> Response:
        return self.client().post(url, **kwargs)

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()


def privacy_context(policy: Policy | None, state_dir: Path) -> Context:
    """What the privacy filter needs from the policy: rule names, share apps, the window-title mode and key."""
    if policy is None:
        return Context()
    mode = policy.reporting.window_titles
    return rule_context(
        [rule.name for rule in policy.customer_apps],
        [sig.app for sig in policy.screen_share.signatures],
        mode,
        title_key(state_dir) if mode == "hashed" else None,
    )


def title_key(state_dir: Path) -> bytes:
    """Per-device secret for keyed title hashes; never leaves the PC."""
    from policy.store import atomic_write

    path = state_dir / TITLE_KEY_FILE
    try:
        key = path.read_bytes()
        if len(key) == 32:
            return key
    except OSError:
        pass
    key = secrets.token_bytes(32)
    atomic_write(path, key, mode=0o600)
    return key


def rejected_event(rejected: Sequence[tuple[str, str, str]], now: datetime) -> AgentEvent | None:
    """``report.rejected`` for events the server refused (uid, reason, kind); None when there is nothing to say.
    A rejected rejection report is not reported again (no feedback loop)."""
    rejected = [r for r in rejected if r[2] != Kind.REPORT_REJECTED]
    if not rejected:
        return None
    data = {
        "count": len(rejected),
        "uids": [uid for uid, _, _ in rejected][:100],
        "reasons": dict(Counter(reason_code(reason) for _uid, reason, _kind in rejected)),
    }
    return AgentEvent(Kind.REPORT_REJECTED, now, data)


def reason_code(reason: str) -> str:
    """A server problem ("time: must be epoch milliseconds") -> a code for the report.rejected event ("time")."""
    head = reason.split(":", 1)[0].strip().lower()
    code = _NON_CODE.sub("_", head).strip("_.-")[:64]
    return code or "other"


class ReportingService:
    def __init__(
        self,
        config: AgentConfig,
        stream: EventStream,
        clock: Clock,
        *,
        session: HttpClient | requests.Session | None = None,
        batch_delay: float = 2.0,
        batch_max_events: int = 500,
        policy_interval: float = 300.0,
        heartbeat: float | None = None,
        backoff: Backoff | None = None,
        on_send: Callable[[Sequence[Pending]], None] | None = None,
        policy: PolicySource | None = None,
    ) -> None:
        self.config = config
        self.stream = stream
        self.clock = clock
        self.batch_delay = batch_delay
        self.batch_max_events = batch_max_events
        self.policy_interval = policy_interval
        self._heartbeat_override = heartbeat
        # Subscribe now, not in start(): nothing published after construction is missed.
        self._queue = stream.subscribe()
        config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.outbox = Outbox(config.state_dir / OUTBOX_FILE, now=clock.now)
        if session is not None and not isinstance(session, transport.HttpClient):
            session = transport.http_session(config.server_ca, session)  # a test's: the same pinned trust
        self.session = session = session or cast("HttpClient", LazySession(config.server_ca))
        self.uploader = Uploader(
            self.outbox, session, clock, batch_max_events=batch_max_events, backoff=backoff, on_send=on_send
        )
        # The agent's one policy source (agent/app.py); alone (tests, `agent report`) a source of its own.
        self.policy_source = policy if policy is not None else PolicySource(config, clock, stream)
        self._policy: Policy | None = None
        self._context = Context()
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._persist_done = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._first_pending: float | None = None
        self._retry_at = 0.0
        self._flushing = False
        self._enrollments = EnrollmentWatch(config.state_dir)
        self.auth_failed = False
        self.last_upload_status: int | None = None
        # state summary (heartbeat / checkin), derived from the stream
        self.state = DeviceState(clock)
        self.reload_policy()

    # --- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> None:
        for name, target in (
            ("mamori-report-persist", self._persist_loop),
            ("mamori-report-upload", self._upload_loop),
        ):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        """Persist everything published so far, try one last upload and a clean-stop checkin, then close."""
        self._stopping.set()
        self._wake.set()
        self._queue.put(_WAKE)  # after every event published so far: the persist loop stores them, then ends
        for thread in self._threads:
            thread.join(timeout)
        alive = [t.name for t in self._threads if t.is_alive()]
        self._threads.clear()
        if alive:
            # A request is still hanging (server not answering): leave the outbox open for that daemon thread;
            # everything is already on disk.
            logger.warning("reporting threads still busy at stop: %s", ", ".join(alive))
            return
        self.outbox.close()

    def flush(self, timeout: float = 30.0) -> bool:
        """Upload now and wait until everything published so far is on the server (True) or timeout (False)."""
        deadline = time.monotonic() + timeout
        self._flushing = True
        try:
            while time.monotonic() < deadline:
                # unfinished_tasks, not empty(): an event taken off the queue is not yet in the outbox.
                if self._queue.unfinished_tasks == 0 and not self.outbox.has_work():
                    return True
                self._wake.set()
                time.sleep(0.05)
            return False
        finally:
            self._flushing = False

    def recent_sent(self) -> list[dict[str, Any]]:
        """The last events exactly as sent to the server (newest last), for the tray's "What is reported"."""
        return self.uploader.recent_sent()

    def status(self) -> dict[str, Any]:
        enrollment = self._current_enrollment()
        return {
            "enrolled": enrollment is not None,
            "device_id": enrollment.device_id if enrollment else None,
            "pending": self.outbox.pending_count(),
            "rejected": len(self.outbox.rejected()),
            "auth_failed": self.auth_failed,
            "last_upload_status": self.last_upload_status,
        }

    # --- policy / privacy context ----------------------------------------------------------------------------

    def reload_policy(self) -> None:
        policy = self.policy_source.current()
        self._policy = policy
        if policy is not None:
            self.outbox.set_bounds(policy.reporting.outbox_max_events, policy.reporting.outbox_max_bytes)
        self._context = privacy_context(policy, self.config.state_dir)

    def _heartbeat_interval(self) -> float:
        if self._heartbeat_override is not None:
            return self._heartbeat_override
        return self._policy.reporting.heartbeat if self._policy else 300.0

    # --- persisting ------------------------------------------------------------------------------------------

    def _persist_loop(self) -> None:
        try:
            while True:
                # Blocks until an event (or stop()'s wake-up): no polling while the agent is idle.
                first = self._queue.get()
                if first is _WAKE:
                    self._queue.task_done()
                    if self._stopping.is_set():
                        return
                    continue
                events = [first]
                wake = False
                while len(events) < 1000:
                    try:
                        event = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if event is _WAKE:
                        self._queue.task_done()
                        wake = True
                        break
                    events.append(event)
                while True:
                    try:
                        self._persist(events)
                        for _ in events:
                            self._queue.task_done()  # flush() waits on these, not on an empty queue
                        break
                    except OutboxError as err:
                        # Disk full or unwritable: keep the events in memory and retry; never drop silently.
                        logger.error("%s", err)
                        if self._stopping.wait(1.0):
                            return
                if wake and self._stopping.is_set():
                    return
        finally:
            self._persist_done.set()

    def _persist(self, events: list[AgentEvent]) -> None:
        records = []
        reload = False
        for event in events:
            self.state.track(event)
            if event.kind == Kind.POLICY_APPLIED:
                reload = True
            try:
                records.append(build_record(event, self._context))
            except (KeyError, ValueError) as err:  # an unmapped kind is a programming error; keep the rest
                logger.error("cannot build event %s: %s", event.kind, err)
        self.outbox.put(records)
        with self._lock:
            if self._first_pending is None:
                self._first_pending = self.clock.monotonic()
        if self.outbox.pending_count() >= self.batch_max_events:
            self._wake.set()
        if reload:
            self.reload_policy()
            self._wake.set()  # the upload thread recomputes its heartbeat deadline from this policy

    def summary(self) -> dict[str, Any]:
        """The state summary of heartbeats and checkins: online / away / non_compliant."""
        return self.state.summary(self._policy)

    # --- uploading -------------------------------------------------------------------------------------------

    def _current_enrollment(self) -> Enrollment | None:
        enrollment, changed = self._enrollments.current()
        if changed:
            self.auth_failed = False  # new credentials: try them
        return enrollment

    def _note_auth(self, failed: bool, status: int | None) -> None:
        """Say once, when the server starts refusing this device's token (revoked on the server, or the
        enrollment is no longer valid), that reporting stopped: one log line, and an ``agent.degraded`` event
        (enrollment, revoked) that the worker sees as a notification and a status line. Uploads go on with
        backoff; the events stay queued and are sent once the device is enrolled again."""
        was = self.auth_failed
        self.auth_failed = failed
        if failed and not was:
            logger.error(
                "the server refused this device's token (HTTP %s): the device was revoked or its enrollment "
                "is no longer valid; events stay queued here (%d now) until it is enrolled again "
                "(mamori agent enroll)",
                status,
                self.outbox.pending_count(),
            )
            self.stream.publish(
                AgentEvent(
                    Kind.CAPABILITY_DEGRADED,
                    self.clock.now(),
                    {"capability": "enrollment", "reason": "revoked"},
                )
            )
        elif was and not failed:
            logger.info("the server accepts this device's token again; sending the queued events")

    def _upload_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self._upload_cycle()
            except Exception:  # the uploader must outlive any bug or disk error; events stay in the outbox
                logger.exception("reporting upload loop failed; restarting it in 5 s")
                self._stopping.wait(5.0)
        try:
            self._final()
        except Exception:
            logger.exception("final upload at stop failed")

    def _upload_cycle(self) -> None:
        # The heartbeat deadline is derived on every pass from the policy in force *now* (a policy applied after
        # start moves it), and the first heartbeat is due one interval after start (issue 12, item 5).
        last_heartbeat = self.clock.monotonic()
        next_policy = last_heartbeat
        while not self._stopping.is_set():
            now = self.clock.monotonic()
            enrollment = self._current_enrollment()
            # Without an enrollment nothing is due: look for one again after MAX_WAIT. Every pass waits, so the
            # thread can never spin (an MDM-drop-only agent has no server at all).
            deadlines = [now + MAX_WAIT]
            if enrollment is not None:
                if now >= next_policy:
                    self._refresh_policy(enrollment)
                    next_policy = now + self.policy_interval
                if now >= last_heartbeat + self._heartbeat_interval():
                    self.stream.publish(AgentEvent(Kind.HEARTBEAT, self.clock.now(), self.summary()))
                    self._checkin(enrollment, stopping=False)
                    last_heartbeat = now
                if self._upload_due(now):
                    self._upload(enrollment)
                    continue
                deadlines += [last_heartbeat + self._heartbeat_interval(), next_policy]
                if self.outbox.has_work():
                    deadlines.append(max(self._retry_at, (self._first_pending or now) + self.batch_delay))
            if self._wait(max(MIN_WAIT, min(deadlines) - now)):
                self._retry_at = 0.0
                self.uploader.backoff.reset()
                last_heartbeat = next_policy = float("-inf")

    def _upload_due(self, now: float) -> bool:
        pending = self.outbox.pending_count()
        if not self.outbox.has_work() or now < self._retry_at:
            return False
        if self._flushing or self._stopping.is_set() or pending >= self.batch_max_events:
            return True
        first = self._first_pending
        return first is None or now - first >= self.batch_delay

    def _upload(self, enrollment: Enrollment) -> None:
        outcome = self.uploader.upload_once(enrollment)
        self.last_upload_status = outcome.status
        self._note_auth(outcome.auth_failed, outcome.status)
        if outcome.retry_in is not None:
            self._retry_at = self.clock.monotonic() + outcome.retry_in
        if outcome.rejected:
            self._report_rejected(outcome.rejected)
        with self._lock:
            self._first_pending = None if not self.outbox.has_work() else self.clock.monotonic()

    def _report_rejected(self, rejected: Sequence[tuple[str, str, str]]) -> None:
        event = rejected_event(rejected, self.clock.now())
        if event is not None:
            self.stream.publish(event)

    def _wait(self, seconds: float) -> bool:
        """Wait up to ``seconds`` (at most MAX_WAIT, so stop and wake are prompt). True when the machine resumed."""
        return wait_noticing_resume(self._wake, self.clock, min(seconds, MAX_WAIT))

    def _refresh_policy(self, enrollment: Enrollment) -> None:
        """Pull the server's policy; the source applies it and reports policy.applied / policy.rejected."""
        from policy.errors import BundleRejectedError, PolicyError

        fetcher = PolicyFetcher(self.session, self.config.state_dir, self.policy_source.apply)
        try:
            fetcher.refresh(enrollment)
        except BundleRejectedError:
            return  # reported by the source; the last good policy stays in force
        except PolicyError as err:
            logger.warning("policy refresh failed: %s", err)

    def _checkin(self, enrollment: Enrollment, *, stopping: bool) -> None:
        summary = self.summary() | {
            "agent_version": __version__,
            "hostname": socket.gethostname()[:255],
            "heartbeat_s": self._heartbeat_interval(),
            "last_sequence": self.outbox.last_sequence(),
            "stopping": stopping,
            "os": OS_NAME,
        }
        if stopping:
            summary["quit_allowed"] = quit_allowed(self._policy)
        status = self.uploader.checkin(enrollment, summary)
        if status in (401, 403):
            self._note_auth(True, status)
        elif status is not None and status != 200:
            logger.warning("checkin refused with HTTP %d", status)

    def _final(self) -> None:
        """On stop: wait for the persist thread, one last upload attempt, then the clean-stop checkin."""
        self._persist_done.wait(5.0)
        enrollment = self._current_enrollment()
        if enrollment is None:
            return
        for _ in range(20):
            if not self.outbox.has_work():
                break
            outcome = self.uploader.upload_once(enrollment)
            if outcome.retry_in is not None or outcome.status is None:
                break
        self._checkin(enrollment, stopping=True)
