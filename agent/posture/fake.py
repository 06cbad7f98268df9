"""A scripted HostProbe for tests and demos: set the facts, or an exception to raise, per method."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from agent.posture.base import DeviceFact, LockTimeout, NetInterface, PostureError, WifiLink


@dataclass
class FakeHost:
    name: str = "fake"
    nics: list[NetInterface] = field(default_factory=list)
    routes: dict[str, str | None] = field(default_factory=dict)  # address -> interface
    default_route: str | None = None  # interface for addresses not in ``routes``
    dns: dict[str, list[str]] = field(default_factory=dict)
    wifi_links: list[WifiLink] = field(default_factory=list)
    disk: DeviceFact = field(default_factory=lambda: DeviceFact("ok", "fake encrypted"))
    fw: DeviceFact = field(default_factory=lambda: DeviceFact("ok", "fake firewall"))
    lock: LockTimeout = field(default_factory=lambda: LockTimeout(300.0, "fake 300 s"))
    raises: dict[str, PostureError] = field(default_factory=dict)  # method name -> error to raise
    calls: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _enter(self, method: str) -> None:
        with self._lock:
            self.calls.append(method)
        err = self.raises.get(method)
        if err is not None:
            raise err

    def interfaces(self) -> list[NetInterface]:
        self._enter("interfaces")
        return list(self.nics)

    def route_interface(self, address: str) -> str | None:
        self._enter("route_interface")
        return self.routes.get(address, self.default_route)

    def resolve(self, name: str) -> list[str]:
        self._enter("resolve")
        return list(self.dns.get(name, []))

    def wifi(self) -> list[WifiLink]:
        self._enter("wifi")
        return list(self.wifi_links)

    def disk_encryption(self) -> DeviceFact:
        self._enter("disk_encryption")
        return self.disk

    def firewall(self) -> DeviceFact:
        self._enter("firewall")
        return self.fw

    def screen_lock(self) -> LockTimeout:
        self._enter("screen_lock")
        return self.lock
