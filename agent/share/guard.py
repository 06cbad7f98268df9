"""Plugging the share guard into the agent: one call for the composition root (agent/app.py).

``install_share_guard(runtime, desktop, stream, clock, notify=...)`` builds the monitor and the self-check and
registers them with the runtime through its public API only (``policy``, ``set_cover_reason``,
``add_worker``, ``add_status_provider``, ``covered_windows``), so the runtime supervises the polling thread
and restarts it if it crashes; ``runtime.status()["share"]`` then shows the apps detected and unknown.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from agent.host import Host
from agent.i18n import Translator
from agent.platform.base import Desktop
from agent.report.stream import EventStream
from agent.share.monitor import ShareMonitor, ShareNotice
from agent.share.processes import ProcessLister
from agent.share.selfcheck import (
    OPAQUE_COVER,
    MssGrabber,
    ScreenGrabber,
    SelfCheckResult,
    ShareSelfCheck,
    runtime_targets,
)
from core.clock import Clock
from policy.model import CustomerApp

SELFCHECK_MESSAGE_KEY = "share.selfcheck_failed"


@dataclass(frozen=True)
class ShareGuard:
    monitor: ShareMonitor
    selfcheck: ShareSelfCheck


def install_share_guard(
    host: Host,
    desktop: Desktop,
    stream: EventStream,
    clock: Clock,
    *,
    notify: Callable[[ShareNotice], None] | None = None,
    grabber: ScreenGrabber | None = None,
    process_lister: ProcessLister | None = None,
    titles_readable: bool = True,
) -> ShareGuard:
    """Create the monitor and self-check, register them with ``host``, and return both.

    ``notify`` receives the once-per-share notice and, when the self-check finds a customer window missing
    from the captured screen, the ``share.selfcheck_failed`` notice (show both to the worker).
    """

    def customer_apps() -> tuple[CustomerApp, ...]:
        policy = host.policy()
        return policy.customer_apps if policy is not None else ()

    def selfcheck_failed(result: SelfCheckResult) -> None:
        # The share may be sending customer data: the lock screen is the one thing it cannot capture around.
        host.lock_now("share_cover_not_captured")
        if notify is None:
            return
        policy = host.policy()
        overrides = {"ja": policy.messages.ja, "en": policy.messages.en} if policy is not None else {}
        rules = tuple(sorted({t.rule for t in result.failed}))
        text = Translator("en", overrides).both(SELFCHECK_MESSAGE_KEY)
        notify(ShareNotice(key=SELFCHECK_MESSAGE_KEY, apps=rules, text=text))

    selfcheck = ShareSelfCheck(
        runtime_targets(host.covered_windows, customer_apps),
        OPAQUE_COVER,
        grabber=grabber if grabber is not None else MssGrabber(),
        stream=stream,
        clock=clock,
        on_failure=selfcheck_failed,
    )
    monitor = ShareMonitor(
        host.policy,
        desktop,
        clock,
        lambda _state: None,
        stream,
        process_lister=process_lister,
        set_cover_reason=host.set_cover_reason,
        notify=notify,
        selfcheck=selfcheck.run,
        titles_readable=titles_readable,
    )
    host.add_worker("share", monitor.run)
    host.add_status_provider("share", monitor.status)
    return ShareGuard(monitor, selfcheck)
