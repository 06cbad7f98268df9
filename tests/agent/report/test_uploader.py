"""The uploader against a recording fake server: format, acks, per-event rejects, bisection, Retry-After,
backoff, auth failures, unreachable servers; and sleep/resume detection."""

from __future__ import annotations

import email.utils
import random
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.report.enrollment import Enrollment
from agent.report.events import build_record, rule_context
from agent.report.outbox import Outbox
from agent.report.service import resumed_from_sleep
from agent.report.stream import AgentEvent, Kind
from agent.report.transport import HttpClient
from agent.report.uploader import Backoff, Uploader, parse_retry_after
from core.clock import FakeClock
from tests.harness.live_server import free_port
from tests.harness.recording_server import Answer, RecordingServer


@pytest.fixture
def server() -> Iterator[RecordingServer]:
    s = RecordingServer()
    yield s
    s.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def enrollment(url: str) -> Enrollment:
    return Enrollment(url, "dtest01", "mdt_secret-token")


def fill(outbox: Outbox, n: int, poison: set[int] | None = None) -> None:
    now = datetime(2026, 4, 1, tzinfo=UTC)
    records = []
    for i in range(1, n + 1):
        check = "poison" if poison and i in poison else f"check-{i}"
        data = {"check_id": check, "status": "fail", "mode": "warn", "enforcement": "warn"}
        records.append(build_record(AgentEvent(Kind.POSTURE_FINDING, now, data), rule_context()))
    outbox.put(records)


def make(tmp_path: Path, clock: FakeClock, **kw: Any) -> tuple[Outbox, Uploader]:
    outbox = Outbox(tmp_path / "outbox.sqlite3", now=clock.now)
    return outbox, Uploader(outbox, HttpClient(None), clock, backoff=Backoff(rng=random.Random(7)), **kw)


def test_batches_are_gzip_ndjson_with_the_device_token(
    tmp_path: Path, clock: FakeClock, server: RecordingServer
) -> None:
    outbox, uploader = make(tmp_path, clock)
    fill(outbox, 3)
    outcome = uploader.upload_once(enrollment(server.url))
    assert outcome.committed == 3 and outcome.retry_in is None
    request = server.received[0]
    assert request.headers["Authorization"] == "Bearer mdt_secret-token"
    assert request.headers["Content-Encoding"] == "gzip"
    assert request.headers["Content-Type"] == "application/x-ndjson"
    assert [e["metadata"]["sequence"] for e in request.lines] == [1, 2, 3]
    assert {e["device"]["uid"] for e in request.lines} == {"dtest01"}
    assert outbox.pending_count() == 0
    assert uploader.recent_sent() == request.lines  # exactly as sent


def test_rejected_events_are_set_aside_and_the_rest_acknowledged(
    tmp_path: Path, clock: FakeClock, server: RecordingServer
) -> None:
    def reject_second(lines: list[dict[str, Any]]) -> Answer:
        return (
            200,
            {},
            {"accepted": len(lines) - 1, "duplicate": 0, "rejected": [{"index": 1, "reason": "time: bad"}]},
        )

    server.script = reject_second
    outbox, uploader = make(tmp_path, clock)
    fill(outbox, 3)
    outcome = uploader.upload_once(enrollment(server.url))
    assert outcome.rejected == (
        (server.received[0].lines[1]["metadata"]["uid"], "time: bad", "posture.finding"),
    )
    assert outbox.pending_count() == 0
    assert [(r.seq, r.reason) for r in outbox.rejected()] == [(2, "time: bad")]
    assert len(uploader.recent_sent()) == 2


def test_a_batch_refused_as_a_whole_is_bisected_down_to_the_bad_event(
    tmp_path: Path, clock: FakeClock, server: RecordingServer
) -> None:
    stored: list[str] = []

    def refuse_poison(lines: list[dict[str, Any]]) -> Answer:
        if any(e["unmapped"]["check_id"] == "poison" for e in lines):
            return 400, {}, {"detail": "bad request"}
        stored.extend(e["unmapped"]["check_id"] for e in lines)
        return accept_like(lines)

    server.script = refuse_poison
    outbox, uploader = make(tmp_path, clock, batch_max_events=8)
    fill(outbox, 8, poison={5})
    for _ in range(20):
        if not outbox.pending_count():
            break
        uploader.upload_once(enrollment(server.url))
    assert outbox.pending_count() == 0
    assert sorted(stored) == sorted(f"check-{i}" for i in range(1, 9) if i != 5)
    assert [r.seq for r in outbox.rejected()] == [5]


def accept_like(lines: list[dict[str, Any]]) -> Answer:
    return 200, {}, {"accepted": len(lines), "duplicate": 0, "rejected": []}


def test_413_halves_the_batch(tmp_path: Path, clock: FakeClock, server: RecordingServer) -> None:
    server.script = lambda lines: (413, {}, {}) if len(lines) > 2 else accept_like(lines)
    outbox, uploader = make(tmp_path, clock, batch_max_events=8)
    fill(outbox, 8)
    for _ in range(10):
        uploader.upload_once(enrollment(server.url))
    accepted = [e["metadata"]["sequence"] for r in server.received if len(r.lines) <= 2 for e in r.lines]
    assert outbox.pending_count() == 0 and outbox.rejected() == []
    assert sorted(accepted) == list(range(1, 9))  # each delivered once, none given up


def test_retry_after_seconds_is_honoured(tmp_path: Path, clock: FakeClock, server: RecordingServer) -> None:
    server.script = lambda lines: (429, {"Retry-After": "7"}, {"detail": "slow down"})
    outbox, uploader = make(tmp_path, clock)
    fill(outbox, 2)
    outcome = uploader.upload_once(enrollment(server.url))
    assert outcome.status == 429 and outcome.retry_in == 7.0
    assert outbox.pending_count() == 2 and outbox.next_batch() != []  # released, sent again later


def test_retry_after_date_is_measured_on_the_servers_clock(tmp_path: Path, server: RecordingServer) -> None:
    skewed = FakeClock(datetime(2031, 1, 1, tzinfo=UTC))  # the PC's clock is years off

    def busy(_lines: list[dict[str, Any]]) -> Answer:
        now = datetime.now(UTC)
        later = now + timedelta(seconds=30)
        return 503, {"Retry-After": email.utils.format_datetime(later, usegmt=True)}, {}

    server.script = busy
    outbox, uploader = make(tmp_path, skewed)
    fill(outbox, 1)
    retry_in = uploader.upload_once(enrollment(server.url)).retry_in
    assert retry_in is not None and 28 <= retry_in <= 30


def test_parse_retry_after_clamps() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("999999", None, now) == 3600.0
    assert parse_retry_after("Thu, 01 Jan 2026 00:00:10 GMT", None, now) == 10.0
    assert parse_retry_after("Wed, 31 Dec 2025 23:00:00 GMT", None, now) == 0.0
    assert parse_retry_after("soon", None, now) is None and parse_retry_after(None, None, now) is None


def test_full_jitter_backoff_stays_under_the_growing_ceiling_and_the_cap() -> None:
    backoff = Backoff(base=1.0, cap=30.0, rng=random.Random(1))
    delays = [backoff.next_delay() for _ in range(40)]
    for attempt, delay in enumerate(delays):
        assert 0 <= delay <= min(30.0, 2**attempt)
    assert max(delays[10:]) > 15  # it does reach up to the cap, not stuck low
    backoff.reset()
    assert backoff.next_delay() <= 1.0


def test_server_errors_and_unreachable_servers_keep_events(
    tmp_path: Path, clock: FakeClock, server: RecordingServer
) -> None:
    server.script = lambda lines: (500, {}, {})
    outbox, uploader = make(tmp_path, clock)
    fill(outbox, 3)
    first = uploader.upload_once(enrollment(server.url))
    assert first.status == 500 and first.retry_in is not None
    down = uploader.upload_once(enrollment(f"http://127.0.0.1:{free_port()}"))
    assert down.status is None and down.retry_in is not None
    assert outbox.pending_count() == 3 and uploader.backoff.attempt == 2


def test_auth_failure_keeps_events(tmp_path: Path, clock: FakeClock, server: RecordingServer) -> None:
    server.script = lambda lines: (401, {}, {"detail": "unknown token"})
    outbox, uploader = make(tmp_path, clock)
    fill(outbox, 3)
    outcome = uploader.upload_once(enrollment(server.url))
    assert outcome.auth_failed and outcome.retry_in is not None and outbox.pending_count() == 3


def test_a_server_refusing_every_request_does_not_empty_the_queue(
    tmp_path: Path, clock: FakeClock, server: RecordingServer
) -> None:
    server.script = lambda lines: (422, {}, {"detail": "proxy says no"})
    outbox, uploader = make(tmp_path, clock, batch_max_events=1)
    fill(outbox, 10)
    for _ in range(10):
        uploader.upload_once(enrollment(server.url))
    assert len(outbox.rejected()) == 3 and outbox.pending_count() == 7


def test_resume_detection() -> None:
    assert resumed_from_sleep(wall_delta=3600, mono_delta=5)  # slept an hour
    assert not resumed_from_sleep(wall_delta=5, mono_delta=5)
    assert not resumed_from_sleep(wall_delta=-3600, mono_delta=5)  # clock set back: nothing to hurry


def test_service_wait_notices_a_wall_clock_jump(tmp_path: Path) -> None:
    from agent.config import AgentConfig
    from agent.report.service import ReportingService
    from agent.report.stream import EventStream

    clock = FakeClock()
    service = ReportingService(AgentConfig(state_dir=tmp_path), EventStream(), clock)
    jumper = threading.Timer(0.05, clock.jump_wall, args=(7200,))
    jumper.start()
    started = time.monotonic()
    assert service._wait(0.3) is True
    assert service._wait(0.05) is False
    clock.jump_wall(-7200)
    assert service._wait(0.05) is False
    assert time.monotonic() - started < 2
    service.outbox.close()
