"""The composition root: every part of the running agent is built here, and only here (``mamori agent run``).

From agent.toml it builds one event stream, one policy source (agent.policy_source), the desktop backend of the
platform resolved once (agent.platform), the protection loop with its cover helper, the supervising runtime
(the :class:`agent.host.Host` every part plugs into), the control socket, and the parts that plug in: the MDM
policy drop, the posture monitor, the screen-share guard, reporting, and the worker's UI. Nothing else in the
agent constructs these (only `mamori demo` without a display runs the reporting service alone); tests build
the same graph through :func:`build_runtime` and :func:`build_agent`.
"""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass
from pathlib import Path

from agent.clipboard.guard import install_clipboard_guard
from agent.config import AgentConfig
from agent.control import ControlServer
from agent.degraded import Degraded
from agent.i18n import Translator, detect_language
from agent.onlooker.guard import OnlookerGuard, install_onlooker_guard
from agent.overlay.supervisor import CoverSink, OverlaySupervisor
from agent.platform import Platform, resolve_platform
from agent.platform.audio import CallWatcher, create_call_probe
from agent.platform.base import Desktop
from agent.policy_drop import PolicyDropWatcher
from agent.policy_source import PolicySource, PolicyView
from agent.policy_verifier import child_key_loader
from agent.posture.follower import PostureFollower
from agent.protection import Protection
from agent.report.service import ReportingService
from agent.report.stream import EventStream
from agent.runtime import HotkeyStarter, Runtime
from agent.runtime_memory import release_free_memory
from agent.share.guard import ShareGuard, install_share_guard
from core.clock import Clock, SystemClock
from policy.model import Policy

logger = logging.getLogger(__name__)

STARTUP_SECONDS = 20.0  # start to "protected" is ≤ 2 s; the first upload and posture round end within ~15 s


@dataclass(frozen=True)
class Agent:
    """The running pieces of one agent."""

    config: AgentConfig
    platform: Platform
    stream: EventStream
    policy: PolicySource
    runtime: Runtime
    control: ControlServer
    posture: PostureFollower
    share: ShareGuard
    drop: PolicyDropWatcher | None
    reporting: ReportingService | None
    onlooker: OnlookerGuard | None = None


def build_runtime(
    config: AgentConfig,
    policy: Policy | PolicyView | None,
    desktop: Desktop,
    stream: EventStream,
    clock: Clock,
    *,
    overlay: CoverSink | None = None,
    translator: Translator | None = None,
    tick: float = 0.1,
    idle_tick: float = 1.0,
    lock_verify_timeout: float = 5.0,
    hotkey: HotkeyStarter | None = None,
) -> Runtime:
    """The protection loop and its supervisor over ``desktop``; ``policy`` is a fixed policy or a view."""
    view: PolicyView = policy if callable(policy) else _fixed(policy)
    degraded = Degraded(stream, clock)
    protection = Protection(
        config,
        view,
        desktop,
        stream,
        clock,
        degraded=degraded,
        overlay=overlay,
        translator=translator,
        tick=tick,
        idle_tick=idle_tick,
        lock_verify_timeout=lock_verify_timeout,
    )
    return Runtime(protection, degraded, hotkey=hotkey)


def build_agent(
    config: AgentConfig,
    unsigned_policy: Path | None = None,
    *,
    hotkey: bool = True,
    reporting: bool = True,
    clock: Clock | None = None,
    platform: Platform | None = None,
) -> Agent:
    """Build every part of the agent for this PC (nothing runs until :func:`run_agent` or ``runtime.start``)."""
    from agent.hotkey import start_hotkey

    plat = platform if platform is not None else resolve_platform()
    clock = clock or SystemClock()
    stream = EventStream()
    source = (
        PolicySource.unsigned(unsigned_policy, config, clock, stream)
        if unsigned_policy is not None
        else PolicySource(config, clock, stream, keys=child_key_loader())
    )
    desktop = plat.create_desktop(config.lock_command, main_run_loop=config.tray)  # macOS: sleep needs it

    # The helper reports clicks and failures to the protection loop built just below.
    def clicked(key: str) -> None:
        runtime.protection.reveal(key)

    def failed(reason: str) -> None:
        runtime.protection.overlay_failed(reason)

    overlay = OverlaySupervisor(on_click=clicked, on_failure=failed)
    runtime = build_runtime(
        config, source, desktop, stream, clock, overlay=overlay, hotkey=start_hotkey if hotkey else None
    )
    control = ControlServer(config.control_socket, runtime.handle_control)

    drop = None
    if config.policy_bundle is not None:
        drop = PolicyDropWatcher(config.policy_bundle, source)
        runtime.add_worker("policy-drop", drop.run)
    posture = PostureFollower(runtime, stream, clock, probe=plat.create_posture_host())
    runtime.add_worker("posture", posture.run)
    runtime.add_status_provider("posture", posture.status)
    # A call (microphone in use) may delay the lock, never the cover (presence.inhibit_lock_when = ["call"]).
    call_probe = create_call_probe()
    if call_probe is not None:
        calls = CallWatcher(call_probe, runtime.set_inhibitor)
        runtime.add_worker("call", calls.run)
        runtime.add_status_provider("call", calls.status)
    # Without readable titles (macOS without Screen Recording) the share guard says "unknown", never "no".
    share = install_share_guard(
        runtime, desktop, stream, clock, titles_readable=desktop.capabilities().window_list
    )
    # Customer data leaves the clipboard while away, sharing or blocked (presence.clipboard).
    install_clipboard_guard(
        runtime,
        plat.desktop_backend,
        runtime.protection.cover_reason_codes,
        Translator(detect_language(config.language)),
    )
    # Opt-in twice: the policy's [onlooker] mode and agent.toml's camera; no process runs while either is off.
    onlooker = install_onlooker_guard(runtime, stream, clock, config.camera)
    service = None
    if reporting:
        service = ReportingService(config, stream, clock, policy=source)
        runtime.add_status_provider("reporting", service.status)
    return Agent(config, plat, stream, source, runtime, control, posture, share, drop, service, onlooker)


def run_agent(agent: Agent, *, tray: bool = True) -> int:
    """Start every part, block on the worker's UI (or the runtime without one) until stopped, then stop all."""
    from agent.ui.wiring import attach_ui, run_ui

    runtime = agent.runtime
    ui = attach_ui(
        runtime, agent.stream, agent.config, reporting=agent.reporting, tray=tray, platform=agent.platform
    )
    agent.control.start()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda _s, _f: runtime.stop())
    if agent.reporting is not None:
        agent.reporting.start()
    # Start-up (policy check, first upload, posture probes, icons) frees most of what it allocated; hand those
    # pages back once it is over (agent/runtime_memory.py).
    trim = threading.Timer(STARTUP_SECONDS, release_free_memory)
    trim.name, trim.daemon = "mamori-trim", True
    try:
        runtime.start()
        trim.start()
        run_ui(ui, runtime)
    finally:
        trim.cancel()
        runtime.stop()
        agent.control.stop()
        if agent.reporting is not None:
            agent.reporting.stop()
    return 0


def _fixed(policy: Policy | None) -> PolicyView:
    def view() -> Policy | None:
        return policy

    return view
