"""The cover supervisor with real helper processes that cannot draw (no display): it gives up after repeated
deaths, and the runtime then locks instead of covering (SPEC.md, "Cover")."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from agent.app import build_runtime
from agent.config import AgentConfig
from agent.overlay.supervisor import OverlaySupervisor
from agent.platform.fake import FakeDesktop
from agent.report.stream import EventStream, Kind
from agent.runtime import Runtime
from core.clock import SystemClock
from tests.harness.fakes import policy, window
from tests.harness.xdesktop import wait_for


def no_display_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}


def test_helper_without_display_is_given_up_after_repeated_deaths() -> None:
    failed = threading.Event()
    reasons: list[str] = []

    def on_failure(reason: str) -> None:
        reasons.append(reason)
        failed.set()

    sup = OverlaySupervisor(env=no_display_env(), on_failure=on_failure, max_restarts=2, ping_interval=0)
    sup.start()
    try:
        assert failed.wait(30), "the supervisor never gave up"
        assert not sup.available()
        assert sup.restarts == 2
        assert "cannot open the cover window" in reasons[0]
        assert sup.status()["available"] is False
    finally:
        sup.stop()


def test_runtime_locks_when_covering_is_impossible(tmp_path: Path) -> None:
    desk = FakeDesktop([window(1, "Acme | Salesforce", "chrome")])
    stream = EventStream()
    holder: list[Runtime] = []
    sup = OverlaySupervisor(
        env=no_display_env(),
        on_failure=lambda r: holder[0].protection.overlay_failed(r),  # noqa: PLW0108 - bound later
        max_restarts=1,
        ping_interval=0,
    )
    rt = build_runtime(AgentConfig(state_dir=tmp_path), policy(), desk, stream, SystemClock(), overlay=sup)
    holder.append(rt)
    desk.set_idle(95)  # protect stage
    rt.start()
    try:
        wait_for(lambda: desk.lock_calls == 1, timeout=30, what="lock instead of cover")
    finally:
        rt.stop()
    degraded = [dict(e.data) for e in stream.recent() if e.kind is Kind.CAPABILITY_DEGRADED]
    assert {"capability": "cover", "reason": "helper_failed"} in degraded
    assert [dict(e.data) for e in stream.recent() if e.kind is Kind.SESSION_LOCKED] == [{"method": "fake"}]
