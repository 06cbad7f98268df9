"""Windows posture backend: Get-NetAdapter, GetBestInterface, netsh wlan, BitLocker, Windows Firewall, registry.

Parsing is locale-independent wherever Windows allows it: PowerShell objects as JSON with numeric enums, and for
``netsh wlan show interfaces`` (whose labels *and* values are translated, e.g. 認証 / オープン in Japanese) the
position of the authentication and cipher lines right after the radio-type line, whose value is ``802.11…`` in
every language. Parsers are pure and tested on captured outputs (tests/posture/data/windows_*).
"""

from __future__ import annotations

import json
import re
import socket
import struct
import sys
from collections.abc import Mapping
from typing import Any

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

# IANA ifType values reported by Get-NetAdapter's InterfaceType
IF_TYPES: Mapping[int, InterfaceKind] = {
    6: "ethernet",
    23: "ppp",
    24: "loopback",
    53: "virtual",  # IF_TYPE_PROP_VIRTUAL: Hyper-V, TAP-Windows, Wintun, WireGuard, many VPN clients
    71: "wifi",
    131: "ipsec",  # IF_TYPE_TUNNEL
}
IF_OPER_STATUS_UP = 1


def _json_rows(text: str, what: str) -> list[dict[str, Any]]:
    """ConvertTo-Json prints one object for one row and an array for several."""
    text = text.strip()
    if not text:
        return []
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ProbeError(f"{what}: unexpected output ({err.msg})") from err
    rows = data if isinstance(data, list) else [data]
    return [r for r in rows if isinstance(r, dict)]


def parse_net_adapters(text: str) -> list[NetInterface]:
    """``Get-NetAdapter | Select-Object Name,InterfaceDescription,ifIndex,InterfaceType,
    InterfaceOperationalStatus | ConvertTo-Json``."""
    out: list[NetInterface] = []
    for row in _json_rows(text, "Get-NetAdapter"):
        kind = IF_TYPES.get(int(row.get("InterfaceType") or 0), "other")
        up = int(row.get("InterfaceOperationalStatus") or 0) == IF_OPER_STATUS_UP
        out.append(
            NetInterface(str(row.get("Name", "")), up, kind, str(row.get("InterfaceDescription") or ""))
        )
    return out


def adapter_indexes(text: str) -> dict[int, str]:
    return {int(r.get("ifIndex") or 0): str(r.get("Name", "")) for r in _json_rows(text, "Get-NetAdapter")}


# -------------------------------------------------------------------------------------------------- wifi

_CIPHERS = ("CCMP", "GCMP", "TKIP")


def wlan_security(authentication: str, cipher: str) -> WifiSecurity:
    """Classify netsh's (translated) authentication and cipher values.

    The protocol names (WPA2, WPA3, WEP, OWE, CCMP, GCMP, TKIP) are not translated; "Open"/"オープン" and
    "None"/"なし" are, so anything without a known protocol name is treated as open.
    """
    auth = authentication.upper()
    ciph = cipher.upper()
    if "WEP" in ciph or "WEP" in auth:
        return "wep"
    if "OWE" in auth:
        return "owe"
    enterprise = "ENTERPRISE" in auth or "エンタープライズ" in authentication
    if "WPA3" in auth:
        return "enterprise" if enterprise else "wpa3"
    if "WPA2" in auth:
        return "enterprise" if enterprise else "wpa2"
    if "WPA" in auth:
        return "enterprise" if enterprise else "wpa"
    if any(ciph.startswith(c) for c in _CIPHERS):
        return "unknown"  # encrypted, but with an authentication name we do not know
    return "open"


def parse_netsh_wlan_interfaces(text: str) -> list[WifiLink]:
    """``netsh wlan show interfaces`` in any display language -> the connected interfaces.

    Each interface is a block of ``label : value`` lines. The first line of a block is the interface name, the
    untranslated ``SSID`` label appears only while connected, and the authentication and cipher lines follow the
    radio-type line (value ``802.11ac`` etc.). Known English/Japanese labels are used first; the position rule is
    the fallback for other languages.
    """
    links: list[WifiLink] = []
    for block in _blocks(text):
        pairs = block
        labels = {k.strip().lower(): v for k, v in pairs}
        ssid = labels.get("ssid")
        if ssid is None:
            continue  # not connected
        name = pairs[0][1]
        auth = _first(labels, ("authentication", "認証"))
        cipher = _first(labels, ("cipher", "暗号"))
        if auth is None or cipher is None:
            radio = next(
                (i for i, (_, v) in enumerate(pairs) if re.fullmatch(r"802\.11\w*", v.strip())), None
            )
            if radio is None or radio + 2 >= len(pairs):
                links.append(WifiLink(name, "unknown", ssid))
                continue
            auth, cipher = pairs[radio + 1][1], pairs[radio + 2][1]
        links.append(WifiLink(name, wlan_security(auth, cipher), ssid))
    return links


def _first(labels: Mapping[str, str], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        if key in labels:
            return labels[key]
    return None


def _blocks(text: str) -> list[list[tuple[str, str]]]:
    """Interface blocks of ``label : value`` pairs (blank lines separate blocks; the trailer has no SSID)."""
    blocks: list[list[tuple[str, str]]] = []
    current: list[tuple[str, str]] = []
    for line in text.splitlines():
        match = re.match(r"^\s+(\S.*?)\s*:\s(.*)$", line)
        if match:
            current.append((match.group(1), match.group(2).strip()))
        elif not line.strip() and current:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    return blocks


# ------------------------------------------------------------------------------------------ disk encryption

CONVERSION = {
    0: "fully decrypted",
    1: "fully encrypted",
    2: "encryption in progress",
    3: "decryption in progress",
    4: "encryption paused",
    5: "decryption paused",
}


def parse_bitlocker_cim(text: str) -> DeviceFact:
    """Win32_EncryptableVolume (DriveLetter, ProtectionStatus, ConversionStatus) of the system drive as JSON.
    ProtectionStatus: 0 off, 1 on, 2 unknown (volume locked)."""
    rows = _json_rows(text, "Win32_EncryptableVolume")
    if not rows:
        return DeviceFact("bad", "the system drive is not a BitLocker volume")
    row = rows[0]
    drive = row.get("DriveLetter") or "C:"
    protection = int(row.get("ProtectionStatus") or 0)
    conversion = int(row.get("ConversionStatus") or 0)
    if protection == 1 and conversion == 1:
        return DeviceFact("ok", f"BitLocker protection on for {drive}")
    if protection == 0 and conversion == 1:
        return DeviceFact("bad", f"BitLocker is suspended on {drive} (encrypted, protection off)")
    return DeviceFact(
        "bad",
        f"BitLocker on {drive}: protection {'on' if protection == 1 else 'off'}, "
        f"{CONVERSION.get(conversion, f'conversion {conversion}')}",
    )


# Shell property System.Volume.BitLockerProtection (readable without administrator rights).
SHELL_BITLOCKER = {
    1: ("ok", "on"),
    2: ("bad", "off"),
    3: ("bad", "encryption in progress"),
    4: ("bad", "decryption in progress"),
    5: ("bad", "suspended"),
    6: ("ok", "on (locked)"),
}


def parse_bitlocker_shell(text: str) -> DeviceFact:
    value = text.strip()
    if not value:
        return DeviceFact("bad", "BitLocker is not enabled on the system drive")
    try:
        state, label = SHELL_BITLOCKER.get(int(value), ("unknown", f"state {value}"))
    except ValueError as err:
        raise ProbeError(f"BitLockerProtection: unexpected value {value!r}") from err
    return DeviceFact("ok" if state == "ok" else "bad" if state == "bad" else "unknown", f"BitLocker {label}")


# ------------------------------------------------------------------------------------------------ firewall


def parse_firewall_profiles(text: str) -> DeviceFact:
    """``Get-NetFirewallProfile | Select-Object Name,Enabled | ConvertTo-Json``; Enabled is 1/0 or true/false."""
    rows = _json_rows(text, "Get-NetFirewallProfile")
    if not rows:
        raise ProbeError("Get-NetFirewallProfile returned no profile")
    off = [str(r.get("Name")) for r in rows if r.get("Enabled") not in (1, True, "True", "1")]
    if off:
        return DeviceFact("bad", "Windows Firewall off for profile(s): " + ", ".join(off))
    return DeviceFact("ok", "Windows Firewall on for " + ", ".join(str(r.get("Name")) for r in rows))


# --------------------------------------------------------------------------------------------- screen lock


def parse_reg_query(text: str) -> dict[str, str]:
    """``reg query KEY`` -> value name -> data (REG_SZ text; REG_DWORD as a decimal string)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        match = re.match(r"^\s{2,}(.+?)\s{2,}(REG_\w+)\s{2,}(.*)$", line) or re.match(
            r"^\s{2,}(.+?)\s{2,}(REG_\w+)\s*$", line
        )
        if not match:
            continue
        name, kind = match.group(1), match.group(2)
        data = match.group(3).strip() if match.lastindex and match.lastindex >= 3 else ""
        if kind == "REG_DWORD" and data.lower().startswith("0x"):
            data = str(int(data, 16))
        values[name] = data
    return values


def windows_lock_timeout(
    machine_policy: Mapping[str, str], desktop: Mapping[str, str], desktop_policy: Mapping[str, str]
) -> LockTimeout:
    """The shortest of: the machine inactivity limit (``InactivityTimeoutSecs``, Interactive logon: Machine
    inactivity limit) and a secure screen saver (``ScreenSaveActive``/``ScreenSaverIsSecure``/
    ``ScreenSaveTimeOut``, GPO values first). Display-off plus "require sign-in on wake" is not counted."""
    candidates: list[tuple[float, str]] = []
    limit = _num(machine_policy.get("InactivityTimeoutSecs"))
    if limit:
        candidates.append((limit, f"machine inactivity limit {int(limit)} s"))

    def value(name: str) -> str | None:
        return desktop_policy.get(name, desktop.get(name))

    if value("ScreenSaveActive") == "1" and value("ScreenSaverIsSecure") == "1":
        timeout = _num(value("ScreenSaveTimeOut"))
        if timeout:
            candidates.append((timeout, f"secure screen saver after {int(timeout)} s"))
    if not candidates:
        return LockTimeout(None, "no inactivity limit and no password-protected screen saver")
    seconds, reason = min(candidates)
    return LockTimeout(seconds, reason)


def _num(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


# ------------------------------------------------------------------------------------------------ backend

_PS_ADAPTERS = (
    "Get-NetAdapter | Select-Object Name,InterfaceDescription,ifIndex,InterfaceType,InterfaceOperationalStatus"
    " | ConvertTo-Json -Compress"
)
_PS_BITLOCKER = (
    "Get-CimInstance -Namespace root/cimv2/Security/MicrosoftVolumeEncryption -ClassName Win32_EncryptableVolume"
    " -Filter \"DriveLetter='$env:SystemDrive'\" -ErrorAction Stop"
    " | Select-Object DriveLetter,ProtectionStatus,ConversionStatus | ConvertTo-Json -Compress"
)
_PS_BITLOCKER_SHELL = (
    "(New-Object -ComObject Shell.Application).NameSpace(17).ParseName($env:SystemDrive)"
    ".ExtendedProperty('System.Volume.BitLockerProtection')"
)
_PS_FIREWALL = "Get-NetFirewallProfile | Select-Object Name,Enabled | ConvertTo-Json -Compress"


def powershell(script: str) -> str:
    prefix = "[Console]::OutputEncoding = [Text.Encoding]::UTF8; "
    return run(
        ["powershell.exe", "-NoProfile", "-NonInteractive", "-Command", prefix + script], timeout=30.0
    ).stdout


class WindowsHost:
    """The live Windows probe."""

    name = "windows"

    def interfaces(self) -> list[NetInterface]:
        return parse_net_adapters(powershell(_PS_ADAPTERS))

    def route_interface(self, address: str) -> str | None:
        if ":" in address:
            return None  # GetBestInterface is IPv4 only; IPv6 leak detection is not implemented on Windows
        index = best_interface_index(address)
        if index is None:
            return None
        return adapter_indexes(powershell(_PS_ADAPTERS)).get(index, f"ifIndex {index}")

    def resolve(self, name: str) -> list[str]:
        return resolve_name(name)

    def wifi(self) -> list[WifiLink]:
        done = run(["netsh", "wlan", "show", "interfaces"], ok_codes=(0, 1))
        if done.returncode != 0:
            return []  # WLAN AutoConfig service not running: no Wi-Fi
        return parse_netsh_wlan_interfaces(done.stdout)

    def disk_encryption(self) -> DeviceFact:
        try:
            return parse_bitlocker_cim(powershell(_PS_BITLOCKER))
        except ProbeError:  # not administrator: the shell property is readable by everyone
            return parse_bitlocker_shell(powershell(_PS_BITLOCKER_SHELL))

    def firewall(self) -> DeviceFact:
        return parse_firewall_profiles(powershell(_PS_FIREWALL))

    def screen_lock(self) -> LockTimeout:
        def query(key: str) -> dict[str, str]:
            done = run(["reg", "query", key], ok_codes=(0, 1))
            return parse_reg_query(done.stdout) if done.returncode == 0 else {}

        return windows_lock_timeout(
            query(r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Policies\System"),
            query(r"HKCU\Control Panel\Desktop"),
            query(r"HKCU\Software\Policies\Microsoft\Windows\Control Panel\Desktop"),
        )


def best_interface_index(address: str) -> int | None:
    """iphlpapi GetBestInterface: the interface index Windows would route ``address`` through."""
    if sys.platform != "win32":
        raise ProbeUnavailable("GetBestInterface exists only on Windows")
    import ctypes
    from ctypes import wintypes

    dest = struct.unpack("<I", socket.inet_aton(address))[0]  # IPAddr is in network byte order
    index = wintypes.DWORD(0)
    status = ctypes.windll.iphlpapi.GetBestInterface(wintypes.DWORD(dest), ctypes.byref(index))
    if status != 0:
        return None  # ERROR_NETWORK_UNREACHABLE and friends: no route
    return int(index.value)
