"""macOS posture backend: ifconfig, ``route -n get``, CoreWLAN, fdesetup, the application firewall, screen lock.

Parsers are pure and tested on captured outputs (tests/agent/platform/data/macos_*). CoreWLAN (pyobjc) is imported
inside the method that needs it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from agent.posture.base import (
    DeviceFact,
    InterfaceKind,
    LockTimeout,
    NetInterface,
    ProbeError,
    ProbeUnavailable,
    WifiLink,
    WifiSecurity,
    resolve_name,
    run,
)


def _kind(name: str) -> InterfaceKind:
    prefixes: tuple[tuple[str, InterfaceKind], ...] = (
        ("utun", "utun"),
        ("lo", "loopback"),
        ("ppp", "ppp"),
        ("ipsec", "ipsec"),
        ("tun", "tun"),
        ("tap", "tap"),
        ("en", "ethernet"),
        ("bridge", "virtual"),
        ("awdl", "virtual"),
        ("llw", "virtual"),
        ("anpi", "virtual"),
        ("ap", "virtual"),
        ("gif", "virtual"),
        ("stf", "virtual"),
    )
    for prefix, kind in prefixes:
        if name.startswith(prefix):
            return kind
    return "other"


def parse_ifconfig(text: str) -> list[NetInterface]:
    """``ifconfig -a``: ``name: flags=8051<UP,POINTOPOINT,RUNNING,MULTICAST> mtu 1380`` + indented addresses."""
    out: list[NetInterface] = []
    name = ""
    flags: set[str] = set()
    addresses: list[str] = []

    def flush() -> None:
        if name:
            out.append(NetInterface(name, {"UP", "RUNNING"} <= flags, _kind(name), "", tuple(addresses)))

    for line in text.splitlines():
        head = re.match(r"^([A-Za-z0-9]+):\s+flags=\w+<([^>]*)>", line)
        if head:
            flush()
            name, flags, addresses = head.group(1), set(head.group(2).split(",")), []
            continue
        addr = re.match(r"^\s+inet6?\s+([0-9a-fA-F:.]+)", line)
        if addr and name:
            addresses.append(addr.group(1))
    flush()
    return out


def parse_route_get(text: str) -> str | None:
    """``route -n get ADDR``: the ``interface:`` line; absent ("not in table") means no route."""
    match = re.search(r"^\s*interface:\s*(\S+)", text, re.MULTILINE)
    return match.group(1) if match else None


# CoreWLAN CWSecurity enum values (CoreWLAN/CoreWLANTypes.h).
CW_SECURITY: Mapping[int, WifiSecurity] = {
    0: "open",  # kCWSecurityNone
    1: "wep",  # kCWSecurityWEP
    2: "wpa",  # kCWSecurityWPAPersonal
    3: "wpa",  # kCWSecurityWPAPersonalMixed
    4: "wpa2",  # kCWSecurityWPA2Personal
    5: "wpa2",  # kCWSecurityPersonal
    6: "wep",  # kCWSecurityDynamicWEP
    7: "enterprise",  # kCWSecurityWPAEnterprise
    8: "enterprise",  # kCWSecurityWPAEnterpriseMixed
    9: "enterprise",  # kCWSecurityWPA2Enterprise
    10: "enterprise",  # kCWSecurityEnterprise
    11: "wpa3",  # kCWSecurityWPA3Personal
    12: "enterprise",  # kCWSecurityWPA3Enterprise
    13: "wpa3",  # kCWSecurityWPA3Transition
    14: "owe",  # kCWSecurityOWE
    15: "owe",  # kCWSecurityOWETransition
}


def corewlan_security(code: int) -> WifiSecurity:
    return CW_SECURITY.get(code, "unknown")  # kCWSecurityUnknown is NSIntegerMax


def parse_system_profiler_wifi(text: str) -> list[WifiLink]:
    """``system_profiler SPAirPortDataType``: the "Security:" line of "Current Network Information"."""
    links: list[WifiLink] = []
    interface = ""
    in_current = False
    for line in text.splitlines():
        iface = re.match(r"^\s+(en\d+):\s*$", line)
        if iface:
            interface, in_current = iface.group(1), False
            continue
        if "Current Network Information:" in line:
            in_current = True
            continue
        if in_current and "Other Local Wi-Fi Networks:" in line:
            in_current = False
        match = re.match(r"^\s+Security:\s*(.+)$", line)
        if in_current and match:
            links.append(WifiLink(interface or "en0", profiler_security(match.group(1))))
            in_current = False
    return links


def profiler_security(value: str) -> WifiSecurity:
    v = value.upper()
    if v in ("NONE", "OPEN") or v.startswith("NONE"):
        return "open"
    if "WEP" in v:
        return "wep"
    if "OWE" in v:
        return "owe"
    if "ENTERPRISE" in v:
        return "enterprise"
    if "WPA3" in v:
        return "wpa3"
    if "WPA2" in v:
        return "wpa2"
    if "WPA" in v:
        return "wpa"
    return "unknown"


def parse_fdesetup(text: str) -> DeviceFact:
    """``fdesetup status``: "FileVault is On." / "FileVault is Off." / "Encryption in progress: ..."."""
    if re.search(r"Encryption in progress", text):
        return DeviceFact("bad", "FileVault encryption in progress")
    if re.search(r"Decryption in progress", text):
        return DeviceFact("bad", "FileVault decryption in progress")
    if re.search(r"FileVault is On", text):
        return DeviceFact("ok", "FileVault is On")
    if re.search(r"FileVault is Off", text):
        return DeviceFact("bad", "FileVault is Off")
    raise ProbeError(f"fdesetup: unexpected output {text.strip()[:80]!r}")


def parse_socketfilterfw(text: str) -> DeviceFact:
    """``socketfilterfw --getglobalstate``: "(State = 0)" off, 1 on, 2 block all."""
    match = re.search(r"State\s*=\s*(\d)", text)
    if match:
        return (
            DeviceFact("bad", "application firewall is off")
            if match.group(1) == "0"
            else DeviceFact("ok", "application firewall is on")
        )
    if "enabled" in text.lower() or "blocking" in text.lower():
        return DeviceFact("ok", "application firewall is on")
    if "disabled" in text.lower():
        return DeviceFact("bad", "application firewall is off")
    raise ProbeError(f"socketfilterfw: unexpected output {text.strip()[:80]!r}")


def macos_lock_timeout(sysadminctl: str, screensaver_idle: str | None, pmset: str) -> LockTimeout:
    """Lock after min(screen saver idle, display sleep) plus the "require password" delay.

    ``sysadminctl -screenLock status`` (macOS 13+) prints "screenLock delay is 300 seconds", "screenLock delay is
    immediate" or "screenLock is off" (on stderr). ``defaults -currentHost read com.apple.screensaver idleTime``
    is seconds (0 = never); ``pmset -g`` has "displaysleep N" in minutes (0 = never).
    """
    if re.search(r"screenLock is off", sysadminctl):
        return LockTimeout(None, "password after sleep or screen saver is off")
    delay_match = re.search(r"screenLock delay is (immediate|(\d+) seconds?)", sysadminctl)
    if delay_match is None:
        raise ProbeError(f"sysadminctl: unexpected output {sysadminctl.strip()[:80]!r}")
    delay = 0 if delay_match.group(1) == "immediate" else int(delay_match.group(2))
    idles: list[int] = []
    if screensaver_idle and screensaver_idle.strip().isdigit() and int(screensaver_idle) > 0:
        idles.append(int(screensaver_idle))
    sleep = re.search(r"^\s*displaysleep\s+(\d+)", pmset, re.MULTILINE)
    if sleep and int(sleep.group(1)) > 0:
        idles.append(int(sleep.group(1)) * 60)
    if not idles:
        return LockTimeout(None, "neither the screen saver nor display sleep ever starts")
    total = min(idles) + delay
    return LockTimeout(
        float(total), f"locks after {total} s (idle {min(idles)} s + password delay {delay} s)"
    )


class MacHost:
    """The live macOS probe."""

    name = "macos"

    def interfaces(self) -> list[NetInterface]:
        return parse_ifconfig(run(["ifconfig", "-a"]).stdout)

    def route_interface(self, address: str) -> str | None:
        argv = ["route", "-n", "get", *(["-inet6"] if ":" in address else []), address]
        done = run(argv, ok_codes=(0, 1))
        return parse_route_get(done.stdout) if done.returncode == 0 else None

    def resolve(self, name: str) -> list[str]:
        return resolve_name(name)

    def wifi(self) -> list[WifiLink]:
        try:
            import CoreWLAN

            client = CoreWLAN.CWWiFiClient.sharedWiFiClient()
            links = []
            for iface in client.interfaces() or []:
                if iface.powerOn() and iface.wlanChannel() is not None:
                    links.append(
                        WifiLink(
                            str(iface.interfaceName()),
                            corewlan_security(int(iface.security())),
                            str(iface.ssid() or ""),
                        )
                    )
            return links
        except ImportError:
            text = run(["system_profiler", "SPAirPortDataType"], timeout=30.0).stdout
            return parse_system_profiler_wifi(text)

    def disk_encryption(self) -> DeviceFact:
        return parse_fdesetup(run(["fdesetup", "status"]).stdout)

    def firewall(self) -> DeviceFact:
        done = run(["/usr/libexec/ApplicationFirewall/socketfilterfw", "--getglobalstate"])
        return parse_socketfilterfw(done.stdout)

    def screen_lock(self) -> LockTimeout:
        try:
            status = run(["sysadminctl", "-screenLock", "status"], ok_codes=(0, 1))
        except ProbeUnavailable:
            raise
        idle = run(["defaults", "-currentHost", "read", "com.apple.screensaver", "idleTime"], ok_codes=(0, 1))
        pmset = run(["pmset", "-g"])
        return macos_lock_timeout(
            status.stderr + status.stdout, idle.stdout if idle.returncode == 0 else None, pmset.stdout
        )
