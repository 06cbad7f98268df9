"""Network-change notification for posture re-evaluation (SPEC.md: "re-evaluated on network change (≤ 2 s)").

Linux: an rtnetlink socket subscribed to link, address and route changes (agent/platform/netlink.py) — the
kernel pushes the change, so a VPN interface vanishing is seen within milliseconds. Elsewhere (and if netlink
is refused): a cheap poll of a fingerprint of interfaces and addresses (psutil) once a second. Both debounce
bursts (an interface going down emits a dozen messages) into one callback.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable
from typing import Protocol

from agent.platform import HAS_NETLINK
from agent.platform.netlink import NetlinkWatcher

logger = logging.getLogger(__name__)


class NetworkWatcher(Protocol):
    """A started watcher (see :func:`network_watcher`); the owner only stops it."""

    def stop(self) -> None: ...


class PollWatcher:
    """Calls ``on_change()`` when ``fingerprint()`` differs from the previous poll."""

    def __init__(
        self, on_change: Callable[[], None], fingerprint: Callable[[], Hashable], interval: float = 1.0
    ) -> None:
        self._on_change = on_change
        self._fingerprint = fingerprint
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        last = self._safe_fingerprint()

        def run() -> None:
            nonlocal last
            while not self._stop.wait(self._interval):
                now = self._safe_fingerprint()
                if now != last:
                    last = now
                    try:
                        self._on_change()
                    except Exception:
                        logger.exception("network change handler failed")

        self._thread = threading.Thread(target=run, name="mamori-netpoll", daemon=True)
        self._thread.start()

    def _safe_fingerprint(self) -> Hashable:
        try:
            return self._fingerprint()
        except Exception as err:  # a failing fingerprint must not kill the watcher
            logger.debug("network fingerprint failed: %s", err)
            return None

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)


def psutil_fingerprint() -> Hashable:
    """Interfaces, their up state and addresses: changes when a VPN connects, drops or the network changes."""
    import psutil

    stats = psutil.net_if_stats()
    addrs = psutil.net_if_addrs()
    return tuple(
        sorted(
            (
                name,
                stats[name].isup if name in stats else False,
                tuple(sorted(a.address for a in addrs.get(name, []))),
            )
            for name in set(stats) | set(addrs)
        )
    )


def network_watcher(on_change: Callable[[], None]) -> NetworkWatcher:
    """The best watcher here, started."""
    if HAS_NETLINK:
        watcher = NetlinkWatcher(on_change)
        try:
            watcher.start()
            return watcher
        except OSError as err:
            logger.warning("rtnetlink unavailable (%s); polling interfaces every second instead", err)
    poller = PollWatcher(on_change, psutil_fingerprint)
    poller.start()
    return poller
