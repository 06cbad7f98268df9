"""Linux rtnetlink: the kernel pushes link, address and route changes (rtnetlink(7)), so posture sees a VPN
interface vanish within milliseconds. The only network-change source that needs an OS socket family; the
shared poll fallback lives in agent/posture/watcher.py.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import sys
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)

# linux/rtnetlink.h multicast groups
RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV4_ROUTE = 0x40
RTMGRP_IPV6_IFADDR = 0x100
RTMGRP_IPV6_ROUTE = 0x400
NETLINK_GROUPS = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_IFADDR | RTMGRP_IPV6_ROUTE
DEBOUNCE_S = 0.1


class NetlinkWatcher:
    """Calls ``on_change()`` (from its own thread) after each burst of rtnetlink link/addr/route messages."""

    def __init__(self, on_change: Callable[[], None]) -> None:
        self._on_change = on_change
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._wake_r = self._wake_w = -1

    def start(self) -> None:
        if sys.platform != "linux":
            raise OSError("rtnetlink exists only on Linux")
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        sock.bind((0, NETLINK_GROUPS))
        # The thread blocks in select() on the socket and this pipe; stop() writes to the pipe. No timeout
        # polling: the idle agent must not wake up for nothing (SPEC.md, "Performance targets").
        self._wake_r, self._wake_w = os.pipe()
        self._sock = sock
        self._thread = threading.Thread(target=self._run, name="mamori-netlink", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        sock = self._sock
        assert sock is not None
        while not self._stop.is_set():
            readable, _, _ = select.select([sock.fileno(), self._wake_r], [], [])
            if self._stop.is_set() or self._wake_r in readable:
                return
            try:
                sock.recv(65536)
            except OSError as err:  # ENOBUFS after a burst: we lost messages, which still means "changed"
                logger.debug("netlink recv: %s", err)
            # Debounce: swallow the rest of the burst (an interface going down emits a dozen messages).
            while select.select([sock.fileno()], [], [], DEBOUNCE_S)[0]:
                try:
                    sock.recv(65536)
                except OSError:
                    break
            try:
                self._on_change()
            except Exception:
                logger.exception("network change handler failed")

    def stop(self) -> None:
        self._stop.set()
        if self._sock is not None:
            os.write(self._wake_w, b"\0")
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        if self._sock is not None:
            self._sock.close()
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._sock = None
