"""The UI wiring against the real Runtime (fake desktop): tray commands, the ack cover, pause reporting."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from agent.app import build_runtime
from agent.config import AgentConfig
from agent.i18n import Translator
from agent.platform.base import Rect
from agent.platform.fake import FakeDesktop
from agent.report.stream import EventStream, Kind
from agent.runtime import Runtime
from agent.ui.view import build_view
from agent.ui.wiring import attach_ui, handle_command
from core.clock import SystemClock
from policy.load import load_policy
from tests.harness.fakes import RecordingSink, window

POLICY = """
schema = 1
id = "wired"
version = {version}

[acknowledgement]
required = true
text = {{ ja = "同意します", en = "I agree" }}

[[customer_apps]]
name = "crm"
processes = ["crm"]

[worker]
allow_pause = {pause}
pause_max = "15m"
allow_quit = false
"""


def make_runtime(
    tmp_path: Path, version: int = 1, pause: bool = True, cover: bool = True
) -> tuple[Runtime, EventStream, AgentConfig]:
    policy = load_policy(POLICY.format(version=version, pause=str(pause).lower()).encode())
    config = AgentConfig(state_dir=tmp_path / "state", language="en")
    stream = EventStream()
    # A customer window and a cover sink that draws: the ack reason really covers something.
    desktop = FakeDesktop([window(1, "顧客一覧", "crm", Rect(0, 0, 800, 600))])
    sink = RecordingSink() if cover else None
    runtime = build_runtime(config, policy, desktop, stream, SystemClock(), overlay=sink)
    return runtime, stream, config


def wait(predicate, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not reached")


def test_ack_covers_until_acknowledged_through_the_runtime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAMORI_NOTIFY_BACKEND", "none")
    runtime, stream, config = make_runtime(tmp_path)
    events = stream.subscribe()
    ui = attach_ui(runtime, stream, config, tray=False)
    runtime.start()
    try:
        wait(lambda: "ack" in runtime.status()["cover_reasons"])
        view = build_view(lambda key, **kw: key, runtime.status())
        assert view.ack_needed and view.state.value == "covered"
        handle_command("acknowledge wired 1", runtime, ui.ack, stream)
        assert "ack" not in runtime.status()["cover_reasons"]
        assert runtime.status()["ack"]["pending"] is False
        kinds = []
        while not events.empty():
            kinds.append(events.get_nowait().kind)
        assert Kind.POLICY_ACKNOWLEDGED in kinds
        assert ui.notifier.degraded_reason is not None  # notifications disabled here, and said so
        # ... also to the worker: before the fix the status window never showed it (user guide promises it).
        en = build_view(Translator("en"), runtime.status())
        assert "Notifications: unavailable" in en.lines
    finally:
        runtime.stop()
        ui.notifications.stop()


def test_pause_is_reported_clamped_and_refused_when_not_allowed(tmp_path: Path) -> None:
    runtime, stream, config = make_runtime(tmp_path)
    events = stream.subscribe()
    from agent.ui.ack import AckFlow, AckStore

    ack = AckFlow(AckStore(config.state_dir), stream, runtime.clock, lambda _a: None)
    handle_command("pause 60 meeting", runtime, ack, stream)
    event = events.get_nowait()
    assert event.kind is Kind.PROTECTION_PAUSED and dict(event.data) == {
        "reason_code": "meeting",
        "minutes": 15,
    }

    strict, stream2, _ = make_runtime(tmp_path / "b", pause=False)
    events2 = stream2.subscribe()
    handle_command("pause 5 meeting", strict, ack, stream2)
    handle_command("quit", strict, ack, stream2)
    assert events2.empty() and not strict.stopped


def test_step_away_reaches_the_runtime(tmp_path: Path) -> None:
    runtime, stream, config = make_runtime(tmp_path, cover=False)
    from agent.ui.ack import AckFlow, AckStore

    ack = AckFlow(AckStore(config.state_dir), stream, runtime.clock, lambda _a: None)
    handle_command("step_away", runtime, ack, stream)
    runtime.protection.step()
    # No cover helper in this runtime: the safer fallback of "protect" is "lock" (SPEC.md, Cover).
    assert runtime.status()["presence"]["stage"] == "lock"


def test_without_a_tray_the_agent_runs_and_reports_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from agent.ui.wiring import run_ui

    monkeypatch.setenv("MAMORI_NOTIFY_BACKEND", "none")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.setenv("PYSTRAY_BACKEND", "xorg")  # no X display: this backend cannot load
    runtime, stream, config = make_runtime(tmp_path)
    events = stream.subscribe()
    runtime.start()
    ui = attach_ui(runtime, stream, config)
    assert ui.tray is not None

    def stop_when_reported() -> None:
        seen = []
        while True:
            event = events.get(timeout=30)
            seen.append(event)
            if event.kind is Kind.CAPABILITY_DEGRADED and event.data.get("capability") == "tray":
                runtime.stop()
                return

    stopper = threading.Thread(target=stop_when_reported, daemon=True)
    stopper.start()
    run_ui(ui, runtime)  # returns once the runtime stops
    stopper.join(5)
    assert runtime.stopped


def test_an_agent_without_a_tray_never_loads_pillow(tmp_path: Path) -> None:
    """Pillow is 3.2 MB of the agent's memory (docs/performance.md): only drawing a tray icon may load it."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from agent.app import build_runtime\n"
        "from agent.config import AgentConfig\n"
        "from agent.platform.fake import FakeDesktop\n"
        "from agent.report.stream import EventStream\n"
        "from agent.ui.wiring import attach_ui\n"
        "from core.clock import SystemClock\n"
        "from tests.harness.fakes import RecordingSink\n"
        f"config = AgentConfig(state_dir=__import__('pathlib').Path({str(tmp_path)!r}), tray=False)\n"
        "stream = EventStream()\n"
        "rt = build_runtime(config, None, FakeDesktop(), stream, SystemClock(), overlay=RecordingSink())\n"
        "attach_ui(rt, stream, config, tray=False)\n"
        "print(sorted(m for m in sys.modules if m == 'PIL' or m.startswith('PIL.')))\n"
        "from agent.ui.icons import TrayState, icon_image\n"
        "icon_image(TrayState.PROTECTED)\n"
        "print('PIL' in sys.modules)\n"
    )
    root = Path(__file__).resolve().parents[3]
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=60, check=True
    ).stdout.split("\n")
    assert out[0] == "[]", out  # nothing of Pillow without a tray
    assert out[1] == "True"  # and the icon still draws when asked (the negative control)
