"""The agent side of the chaos test, run as a real process: ``python -m tests.harness.chaos_agent STATE TOTAL RATE``.

Publishes posture findings numbered 1..TOTAL through the real ReportingService (stream -> outbox -> uploader)
at RATE events/s, then flushes and exits. After a SIGKILL it resumes from the outbox: an event counts as
emitted once it is in the outbox, exactly as in the real agent. Prints ``UPLOAD`` before each upload request and
``ANSWERED status`` when its answer arrived, ``EMITTED i`` every 500 events and ``DONE`` at the end.
"""

from __future__ import annotations

import random
import sys
import threading
import time
from pathlib import Path
from typing import Any

import requests

from agent.config import AgentConfig
from agent.report.service import ReportingService
from agent.report.stream import AgentEvent, EventStream, Kind
from agent.report.uploader import Backoff
from core.clock import SystemClock

_SAY = threading.Lock()


def say(line: str) -> None:
    """One whole line on stdout: the uploader's thread and the main thread both speak, and ``print`` writes the
    text and its newline separately (they interleaved as "EMITTED 12000UPLOAD")."""
    with _SAY:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class AnnouncingSession(requests.Session):
    """A real session that says when an upload starts and when its answer arrived, so the test can kill
    the process between the two and prove it did."""

    def post(self, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        events = str(url).endswith("/v1/events")
        if events:
            say("UPLOAD")
        response = super().post(url, *args, **kwargs)
        if events:
            say(f"ANSWERED {response.status_code}")
        return response


def main(argv: list[str]) -> int:
    state, total, rate = Path(argv[0]), int(argv[1]), float(argv[2])
    clock = SystemClock()
    stream = EventStream(history=10)
    service = ReportingService(
        AgentConfig(state_dir=state),
        stream,
        clock,
        batch_delay=0.05,
        batch_max_events=250,
        policy_interval=1e9,
        heartbeat=1e9,
        backoff=Backoff(base=0.05, cap=1.0, rng=random.Random()),
        session=AnnouncingSession(),
    )
    start = service.outbox.last_sequence() + 1
    say(f"START {start}")
    service.start()
    began = time.monotonic()
    for i in range(start, total + 1):
        data = {"check_id": f"chaos-{i}", "status": "fail", "mode": "warn", "enforcement": "warn"}
        stream.publish(AgentEvent(Kind.POSTURE_FINDING, clock.now(), data))
        if i % 50 == 0:
            ahead = (i - start + 1) / rate - (time.monotonic() - began)
            if ahead > 0:
                time.sleep(ahead)
        if i % 500 == 0:
            say(f"EMITTED {i}")
    while not service.flush(timeout=5):
        pass
    say("DONE")
    service.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
