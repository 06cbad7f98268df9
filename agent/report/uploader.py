"""Sending the outbox to the server, checking in, and pulling the policy (SPEC.md, Events and Server API).

All HTTP goes through one session (the transport seam: agent/report/transport.py's ``HttpClient`` in the agent;
a ``requests.Session`` works the same), against a real server in the tests. Rules:

- batches by count and bytes (time is the service's job), NDJSON, gzip, the device bearer token;
- 200: events the server committed (accepted or duplicate) are deleted; events it rejected one by one are set
  aside and reported, never resent, so one bad event never blocks the queue;
- 413 and other whole-batch 4xx: the batch is halved until the bad event is alone, then that one is set aside;
- 429/503: wait what Retry-After says (measured against the server's own Date header, so a wrong local clock
  does not matter); connection errors and other 5xx: full-jitter exponential backoff with a cap
  (AWS Architecture Blog, "Exponential Backoff And Jitter");
- 401/403: the enrollment is no longer valid; keep the events and retry slowly.

Waiting is measured on the monotonic clock, so wall-clock jumps change nothing (see ``service.py`` for
sleep/resume).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import random
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.report.enrollment import Enrollment
from agent.report.events import stamp_device
from agent.report.outbox import Outbox, Pending, encode
from agent.report.transport import request_errors
from core.clock import Clock

if TYPE_CHECKING:
    import requests

    from agent.report.transport import HttpClient, Response
    from policy.store import ApplyResult

    Session = HttpClient | requests.Session

logger = logging.getLogger(__name__)

MAX_RETRY_AFTER = 3600.0
MAX_SINGLE_REFUSALS = 3  # single events refused in a row before we suspect the server, not the events
TIMEOUT = (5.0, 30.0)  # connect, read


@dataclass
class Backoff:
    """Full-jitter exponential backoff: sleep = random(0, min(cap, base * 2**attempt))."""

    base: float = 1.0
    cap: float = 300.0
    attempt: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * (2 ** min(self.attempt, 32)))
        self.attempt += 1
        return self.rng.uniform(0, ceiling)

    def reset(self) -> None:
        self.attempt = 0


def parse_retry_after(value: str | None, server_date: str | None, local_now: datetime) -> float | None:
    """Retry-After as seconds (RFC 9110 10.2.3: delay-seconds or HTTP-date), clamped to [0, 1 h]."""
    if not value:
        return None
    import email.utils  # here: ~0.3 MB that an agent reporting to no server never needs

    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    reference = local_now
    if server_date:
        with contextlib.suppress(TypeError, ValueError):
            reference = email.utils.parsedate_to_datetime(server_date)
    if when.tzinfo is None or reference.tzinfo is None:
        return None
    return max(0.0, min((when - reference).total_seconds(), MAX_RETRY_AFTER))


@dataclass(frozen=True)
class UploadOutcome:
    """What one upload attempt did. ``retry_in`` is None when the next batch may go right away."""

    sent: int = 0
    committed: int = 0
    duplicate: int = 0
    rejected: tuple[tuple[str, str, str], ...] = ()  # (uid, reason, kind)
    retry_in: float | None = None
    status: int | None = None
    auth_failed: bool = False


class Uploader:
    def __init__(
        self,
        outbox: Outbox,
        session: Session,
        clock: Clock,
        *,
        batch_max_events: int = 500,
        batch_max_bytes: int = 1024 * 1024,
        backoff: Backoff | None = None,
        recent: int = 50,
        on_send: Callable[[Sequence[Pending]], None] | None = None,
    ) -> None:
        self.outbox = outbox
        self.session = session
        self.clock = clock
        self.batch_max_events = batch_max_events
        self.batch_max_bytes = batch_max_bytes
        self._limit = batch_max_events  # shrinks while bisecting a refused batch, grows back on success
        self.backoff = backoff or Backoff()
        self._recent: deque[dict[str, Any]] = deque(maxlen=recent)
        self._single_refusals = 0
        self._on_send = on_send

    def recent_sent(self) -> list[dict[str, Any]]:
        """The last events exactly as they were sent (newest last), for the worker's "What is reported" view."""
        return list(self._recent)

    def upload_once(self, enrollment: Enrollment) -> UploadOutcome:
        """Send one batch. Never raises for network or server trouble; the outcome says when to retry."""
        batch = self.outbox.next_batch(self._limit, self.batch_max_bytes)
        if not batch:
            return UploadOutcome()
        records = [stamp_device(json.loads(p.body), enrollment.device_id) for p in batch]
        lines = [encode(r) for r in records]
        body = gzip.compress(b"\n".join(lines) + b"\n", compresslevel=6)
        if self._on_send is not None:
            self._on_send(batch)
        try:
            response = self.session.post(
                enrollment.server.rstrip("/") + "/v1/events",
                data=body,
                headers={
                    "Authorization": f"Bearer {enrollment.token}",
                    "Content-Type": "application/x-ndjson",
                    "Content-Encoding": "gzip",
                },
                timeout=TIMEOUT,
            )
        except request_errors() as err:
            self.outbox.release([p.seq for p in batch])
            delay = self.backoff.next_delay()
            logger.info(
                "upload of %d events failed (%s); retrying in %.1fs", len(batch), type(err).__name__, delay
            )
            return UploadOutcome(sent=len(batch), retry_in=delay)
        return self._handle(batch, records, response)

    def _handle(
        self, batch: list[Pending], records: list[dict[str, Any]], response: Response | requests.Response
    ) -> UploadOutcome:
        status = response.status_code
        seqs = [p.seq for p in batch]
        if status == 200:
            try:
                result = response.json()
                rejected_items = result.get("rejected", [])
                bad = {
                    int(item["index"]): str(item.get("reason", "rejected"))[:200] for item in rejected_items
                }
                accepted = int(result.get("accepted", 0))
                duplicate = int(result.get("duplicate", 0))
            except (ValueError, TypeError, KeyError, AttributeError):
                # A 200 we cannot read still means "committed": the server answers 200 only after commit.
                bad, accepted, duplicate = {}, len(batch), 0
            bad = {i: r for i, r in bad.items() if 0 <= i < len(batch)}
            self.outbox.ack([p.seq for i, p in enumerate(batch) if i not in bad])
            self.outbox.set_aside([(batch[i].seq, reason) for i, reason in bad.items()])
            self._recent.extend(r for i, r in enumerate(records) if i not in bad)
            self.backoff.reset()
            self._single_refusals = 0
            self._limit = min(self.batch_max_events, self._limit * 2)
            if bad:
                logger.warning("server rejected %d of %d events", len(bad), len(batch))
            return UploadOutcome(
                sent=len(batch),
                committed=accepted,
                duplicate=duplicate,
                rejected=tuple((batch[i].uid, reason, batch[i].kind) for i, reason in bad.items()),
                status=status,
            )
        if status in (429, 503):
            self.outbox.release(seqs)
            delay = parse_retry_after(
                response.headers.get("Retry-After"), response.headers.get("Date"), self.clock.now()
            )
            if delay is None:
                delay = self.backoff.next_delay()
            else:
                self.backoff.attempt += 1
            return UploadOutcome(sent=len(batch), retry_in=delay, status=status)
        if status in (401, 403):
            self.outbox.release(seqs)
            # Said once by the reporting service (its log line and the worker's notification), not per retry.
            logger.debug("server refused the device token (HTTP %d)", status)
            return UploadOutcome(
                sent=len(batch), retry_in=self.backoff.next_delay(), status=status, auth_failed=True
            )
        if 400 <= status < 500:
            if len(batch) > 1:
                # The server refused the batch as a whole: halve until the offending event is alone.
                self.outbox.release(seqs)
                self._limit = max(1, len(batch) // 2)
                return UploadOutcome(sent=len(batch), status=status)
            self._single_refusals += 1
            if self._single_refusals > MAX_SINGLE_REFUSALS and status != 413:
                # Event after event refused alone: the server (or a proxy) refuses requests, not events.
                # Keep the events and back off rather than discard the whole queue one by one.
                self.outbox.release(seqs)
                logger.warning(
                    "server refuses every request (HTTP %d); keeping events and backing off", status
                )
                return UploadOutcome(sent=1, retry_in=self.backoff.next_delay(), status=status)
            reason = f"http_{status}"
            self.outbox.set_aside([(batch[0].seq, reason)])
            return UploadOutcome(sent=1, rejected=((batch[0].uid, reason, batch[0].kind),), status=status)
        self.outbox.release(seqs)
        return UploadOutcome(sent=len(batch), retry_in=self.backoff.next_delay(), status=status)

    # --- checkin -------------------------------------------------------------------------------------------------

    def checkin(self, enrollment: Enrollment, summary: Mapping[str, Any]) -> int | None:
        """POST /v1/checkin; returns the HTTP status or None when the server was unreachable."""
        try:
            response = self.session.post(
                enrollment.server.rstrip("/") + "/v1/checkin",
                json=dict(summary),
                headers={"Authorization": f"Bearer {enrollment.token}"},
                timeout=TIMEOUT,
            )
        except request_errors() as err:
            logger.info("checkin failed: %s", type(err).__name__)
            return None
        return response.status_code


class PolicyFetcher:
    """GET /v1/policy with If-None-Match; a new bundle goes through the trusted store (verify, version, expiry)."""

    ETAG_FILE = "policy.etag"

    def __init__(self, session: Session, state_dir: Path, apply: Callable[[bytes], ApplyResult]) -> None:
        self.session = session
        self.state_dir = state_dir
        self.apply = apply

    def _etag(self) -> str | None:
        try:
            return (self.state_dir / self.ETAG_FILE).read_text(encoding="ascii").strip() or None
        except (OSError, UnicodeDecodeError):
            return None

    def refresh(self, enrollment: Enrollment) -> ApplyResult | None:
        """None when nothing new (304, 404, unreachable). Raises BundleRejectedError for a bad bundle; its
        ETag is remembered so the same bad bundle is not fetched and reported again and again."""
        headers = {"Authorization": f"Bearer {enrollment.token}"}
        etag = self._etag()
        if etag:
            headers["If-None-Match"] = etag
        try:
            response = self.session.get(
                enrollment.server.rstrip("/") + "/v1/policy", headers=headers, timeout=TIMEOUT
            )
        except request_errors() as err:
            logger.info("policy refresh failed: %s", type(err).__name__)
            return None
        if response.status_code != 200:
            return None
        from policy.errors import BundleRejectedError

        new_etag = response.headers.get("ETag", "")
        try:
            result = self.apply(response.content)
        except BundleRejectedError:
            self._remember(new_etag)
            raise
        self._remember(new_etag)
        return result

    def _remember(self, etag: str) -> None:
        from policy.store import atomic_write

        if etag and len(etag) < 200:
            atomic_write(self.state_dir / self.ETAG_FILE, etag.encode("ascii", "replace"), mode=0o600)
