"""Attach the worker-facing parts (tray, notifications, acknowledgement) to a running agent.

For ``mamori agent run``::

    runtime.start()
    ui = attach_ui(agent.runtime, agent.stream, config, reporting=service, tray=not args.no_tray)
    run_ui(ui, agent.runtime)  # the tray on the main thread, or the runtime alone without a tray

What it does: an :class:`AckFlow` (acknowledgements in ``state_dir``, the "ack" cover reason on the runtime,
``POLICY_ACKNOWLEDGED`` on the stream) fed by a worker that watches the runtime's policy; a
:class:`NotificationBridge` from the event stream to the OS notifier; the tray with its commands routed to
the runtime. A pause holds the away stages for at most the policy's ``worker.pause_max`` (share, posture and
acknowledgement covers stay) and is reported as ``PROTECTION_PAUSED`` with the reason code and the minutes granted.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from agent.config import AgentConfig
from agent.host import Host
from agent.i18n import Translator, detect_language
from agent.platform import Platform, resolve_platform
from agent.report.stream import AgentEvent, EventStream, Kind
from agent.ui.ack import AckFlow, AckStore
from agent.ui.notify import NotificationBridge, Notifier
from agent.ui.tray import Tray
from policy.model import Policy

logger = logging.getLogger(__name__)

POLICY_WATCH_INTERVAL = 2.0  # a new policy's acknowledgement and texts within 2 s (the runtime's own cadence)


class ReportingLike(Protocol):
    def recent_sent(self) -> list[dict[str, Any]]: ...


@dataclass
class UI:
    tray: Tray | None
    ack: AckFlow
    notifications: NotificationBridge
    notifier: Notifier


def translator_for(config: AgentConfig, policy: Policy | None) -> Translator:
    overrides: Mapping[str, Mapping[str, str]] = (
        {"ja": policy.messages.ja, "en": policy.messages.en} if policy is not None else {}
    )
    return Translator(detect_language(config.language), overrides)


def handle_command(command: str, runtime: Host, ack: AckFlow, stream: EventStream) -> None:
    """Carry out one tray command (see agent.ui.tray for the list)."""
    parts = command.split()
    if not parts:
        return
    verb = parts[0]
    if verb == "step_away":
        runtime.step_away()
    elif verb == "acknowledge" and len(parts) == 3 and parts[2].isdigit():
        ack.acknowledge(parts[1], int(parts[2]))
    elif verb == "pause" and len(parts) == 3 and parts[1].isdigit():
        granted = runtime.pause(float(parts[1]))
        if granted <= 0:
            logger.warning("pause refused: the policy does not allow it")
            return
        stream.publish(
            AgentEvent(
                Kind.PROTECTION_PAUSED,
                runtime.clock.now(),
                {"reason_code": parts[2], "minutes": max(1, round(granted))},
            )
        )
    elif verb == "resume":
        runtime.resume()
        stream.publish(AgentEvent(Kind.PROTECTION_RESUMED, runtime.clock.now(), {"reason_code": "worker"}))
    elif verb == "quit":
        policy = runtime.policy()
        if policy is not None and policy.worker.allow_quit:
            runtime.stop()
    else:
        logger.warning("unknown tray command %s", verb)


def attach_ui(
    runtime: Host,
    stream: EventStream,
    config: AgentConfig,
    *,
    reporting: ReportingLike | None = None,
    tray: bool = True,
    platform: Platform | None = None,
) -> UI:
    plat = platform if platform is not None else resolve_platform()
    policy = runtime.policy()
    t = translator_for(config, policy)
    holder: dict[str, Tray] = {}

    def set_cover(active: bool) -> None:
        runtime.set_cover_reason("ack", active, "cover.ack")

    def show_dialog(p: Policy) -> None:
        if "tray" in holder:
            holder["tray"].show_ack_for(p)

    ack = AckFlow(AckStore(config.state_dir), stream, runtime.clock, set_cover, show_dialog)
    runtime.add_status_provider("ack", ack.status)

    def degraded(reason: str) -> None:
        stream.publish(
            AgentEvent(
                Kind.CAPABILITY_DEGRADED,
                runtime.clock.now(),
                {"capability": "notifications", "reason": "unavailable"},
            )
        )
        logger.warning("notifications unavailable: %s", reason)

    notifier = Notifier(plat.create_notifications(), runtime.clock, on_degraded=degraded)
    # The status window and the tray say when notifications cannot be shown (user guide, "Notifications").
    runtime.add_status_provider("notifications", lambda: {"available": notifier.degraded_reason is None})

    def seconds_left() -> float | None:
        presence = runtime.status().get("presence") or {}
        left = presence.get("seconds_left") if isinstance(presence, dict) else None
        return float(left) if isinstance(left, int | float) else None

    bridge = NotificationBridge(stream, notifier, t, seconds_left).start()

    the_tray: Tray | None = None
    if tray and config.tray:
        recent: Callable[[], Sequence[Mapping[str, Any]]] = reporting.recent_sent if reporting else list
        the_tray = Tray(
            t,
            runtime.status,
            lambda command: handle_command(command, runtime, ack, stream),
            reported_provider=recent,
            policy_provider=runtime.policy,
            backends=plat.tray_backends,
        )
        the_tray.previous_ack = ack.acknowledged
        holder["tray"] = the_tray

    def watch_policy(stop: threading.Event) -> None:
        seen: tuple[str, int] | None = None
        while not stop.wait(POLICY_WATCH_INTERVAL):
            current = runtime.policy()
            key = (current.id, current.version) if current is not None else None
            if key != seen and current is not None:
                seen = key
                new_t = translator_for(config, current)
                bridge.translator = new_t
                if the_tray is not None:
                    the_tray.set_translator(new_t)
                ack.on_policy(current)

    runtime.add_worker("ui-policy", watch_policy)
    return UI(the_tray, ack, bridge, notifier)


def run_ui(ui: UI, runtime: Host) -> None:
    """Block on the main thread: the tray while it runs, else the runtime. Stopping either stops both.

    A tray that cannot start (no system tray, no display) is a degraded state, not a failure: it is reported
    as ``agent.degraded`` (capability "tray") and the agent keeps protecting without it.
    """
    from agent.ui.tray import TrayUnavailableError

    if ui.tray is not None:
        tray = ui.tray
        stopper = threading.Thread(
            target=_stop_tray_with(runtime, tray), name="mamori-tray-stop", daemon=True
        )
        stopper.start()
        try:
            tray.run()
            runtime.stop()  # the tray ended (Quit): the agent ends with it
            ui.notifications.stop()
            return
        except TrayUnavailableError as err:
            logger.warning("%s", err)
            runtime.report_degraded("tray", "unavailable")
    runtime.wait_stopped()
    ui.notifications.stop()


def _stop_tray_with(runtime: Host, tray: Tray) -> Callable[[], None]:
    def watch() -> None:
        runtime.wait_stopped()  # no wake-ups while the agent runs (idle CPU budget, SPEC.md)
        tray.stop()

    return watch
