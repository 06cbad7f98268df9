"""Windows posture backend: Get-NetAdapter, GetBestInterface, netsh wlan, BitLocker, Windows Firewall, registry.

Parsing is locale-independent wherever Windows allows it: PowerShell objects as JSON with numeric enums, and for
``netsh wlan show interfaces`` (whose labels *and* values are translated, e.g. 認証 / オープン in Japanese) the
position of the authentication and cipher lines right after the radio-type line, whose value is ``802.11…`` in
every language. Parsers are pure and tested on captured outputs (tests/agent/platform/data/windows_*).
"""

from __future__ import annotations

import json
import logging
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

logger = logging.getLogger(__name__)

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
    return interfaces_from_rows(_json_rows(text, "Get-NetAdapter"))


def interfaces_from_rows(rows: list[dict[str, Any]]) -> list[NetInterface]:
    """Adapter rows (Get-NetAdapter property names; also what :func:`native_adapter_rows` returns)."""
    out: list[NetInterface] = []
    for row in rows:
        kind = IF_TYPES.get(int(row.get("InterfaceType") or 0), "other")
        up = int(row.get("InterfaceOperationalStatus") or 0) == IF_OPER_STATUS_UP
        out.append(
            NetInterface(str(row.get("Name", "")), up, kind, str(row.get("InterfaceDescription") or ""))
        )
    return out


def adapter_indexes(text: str) -> dict[int, str]:
    return {int(r.get("ifIndex") or 0): str(r.get("Name", "")) for r in _json_rows(text, "Get-NetAdapter")}


def native_adapter_rows() -> list[dict[str, Any]]:
    """iphlpapi GetAdaptersAddresses: every adapter in one call of a few milliseconds (PowerShell's
    Get-NetAdapter takes about a second to start, too slow to re-run on every network change)."""
    if sys.platform != "win32":
        raise ProbeUnavailable("GetAdaptersAddresses exists only on Windows")
    import ctypes
    from ctypes import wintypes

    class Adapter(ctypes.Structure):
        pass

    # Only the documented prefix of IP_ADAPTER_ADDRESSES up to Ipv6IfIndex is declared; the list is walked
    # through Next, so the (version-dependent) total size never matters.
    Adapter._fields_ = [
        ("Length", wintypes.ULONG),
        ("IfIndex", wintypes.DWORD),
        ("Next", ctypes.POINTER(Adapter)),
        ("AdapterName", ctypes.c_char_p),
        ("FirstUnicastAddress", ctypes.c_void_p),
        ("FirstAnycastAddress", ctypes.c_void_p),
        ("FirstMulticastAddress", ctypes.c_void_p),
        ("FirstDnsServerAddress", ctypes.c_void_p),
        ("DnsSuffix", ctypes.c_wchar_p),
        ("Description", ctypes.c_wchar_p),
        ("FriendlyName", ctypes.c_wchar_p),
        ("PhysicalAddress", ctypes.c_ubyte * 8),
        ("PhysicalAddressLength", wintypes.DWORD),
        ("Flags", wintypes.DWORD),
        ("Mtu", wintypes.DWORD),
        ("IfType", wintypes.DWORD),
        ("OperStatus", ctypes.c_uint),
        ("Ipv6IfIndex", wintypes.DWORD),
    ]
    gaa_flags = 0x2 | 0x4 | 0x8  # GAA_FLAG_SKIP_ANYCAST | SKIP_MULTICAST | SKIP_DNS_SERVER
    error_buffer_overflow = 111
    size = wintypes.ULONG(16 * 1024)
    for _ in range(4):
        buf = ctypes.create_string_buffer(size.value)
        status = ctypes.windll.iphlpapi.GetAdaptersAddresses(0, gaa_flags, None, buf, ctypes.byref(size))
        if status == 0:
            break
        if status != error_buffer_overflow:
            raise ProbeError(f"GetAdaptersAddresses failed ({status})")
    else:
        raise ProbeError("GetAdaptersAddresses: the adapter list keeps growing")
    rows: list[dict[str, Any]] = []
    node = ctypes.cast(buf, ctypes.POINTER(Adapter))
    while node:
        a = node.contents
        rows.append(
            {
                "Name": a.FriendlyName or "",
                "InterfaceDescription": a.Description or "",
                "ifIndex": int(a.IfIndex or a.Ipv6IfIndex),
                "InterfaceType": int(a.IfType),
                "InterfaceOperationalStatus": int(a.OperStatus),
            }
        )
        node = a.Next
    return rows


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


# Native WLAN API (wlanapi.h): DOT11_AUTH_ALGORITHM and DOT11_CIPHER_ALGORITHM, locale-independent.
DOT11_AUTH_80211_OPEN = 1
DOT11_AUTH_80211_SHARED_KEY = 2
DOT11_AUTH_WPA = 3
DOT11_AUTH_WPA_PSK = 4
DOT11_AUTH_WPA_NONE = 5
DOT11_AUTH_RSNA = 6
DOT11_AUTH_RSNA_PSK = 7
DOT11_AUTH_WPA3_ENT_192 = 8
DOT11_AUTH_WPA3_SAE = 9
DOT11_AUTH_OWE = 10
DOT11_AUTH_WPA3_ENT = 11
DOT11_CIPHER_NONE = 0x00
DOT11_CIPHER_WEP40 = 0x01
DOT11_CIPHER_WEP104 = 0x05
DOT11_CIPHER_WEP = 0x101


def dot11_security(security_enabled: bool, auth: int, cipher: int) -> WifiSecurity:
    """WLAN_SECURITY_ATTRIBUTES of the current connection -> our classification."""
    if (
        cipher in (DOT11_CIPHER_WEP40, DOT11_CIPHER_WEP104, DOT11_CIPHER_WEP)
        or auth == DOT11_AUTH_80211_SHARED_KEY
    ):
        return "wep"
    if auth == DOT11_AUTH_OWE:
        return "owe"
    if auth in (DOT11_AUTH_WPA, DOT11_AUTH_RSNA, DOT11_AUTH_WPA3_ENT_192, DOT11_AUTH_WPA3_ENT):
        return "enterprise"
    if auth == DOT11_AUTH_WPA3_SAE:
        return "wpa3"
    if auth == DOT11_AUTH_RSNA_PSK:
        return "wpa2"
    if auth in (DOT11_AUTH_WPA_PSK, DOT11_AUTH_WPA_NONE):
        return "wpa"
    if auth == DOT11_AUTH_80211_OPEN and (not security_enabled or cipher == DOT11_CIPHER_NONE):
        return "open"
    return "unknown"


def wlan_api_links() -> list[WifiLink]:
    """Connected Wi-Fi interfaces through wlanapi.dll (WlanQueryInterface, current connection)."""
    if sys.platform != "win32":
        raise ProbeUnavailable("the WLAN API exists only on Windows")
    import ctypes
    from ctypes import wintypes

    class GUID(ctypes.Structure):
        _fields_ = [
            ("Data1", wintypes.DWORD),
            ("Data2", wintypes.WORD),
            ("Data3", wintypes.WORD),
            ("Data4", ctypes.c_ubyte * 8),
        ]

    class InterfaceInfo(ctypes.Structure):
        _fields_ = [
            ("InterfaceGuid", GUID),
            ("strInterfaceDescription", ctypes.c_wchar * 256),
            ("isState", ctypes.c_uint),
        ]

    class InterfaceInfoList(ctypes.Structure):
        _fields_ = [
            ("dwNumberOfItems", wintypes.DWORD),
            ("dwIndex", wintypes.DWORD),
            ("InterfaceInfo", InterfaceInfo * 1),
        ]

    class Ssid(ctypes.Structure):
        _fields_ = [("uSSIDLength", wintypes.ULONG), ("ucSSID", ctypes.c_ubyte * 32)]

    class Association(ctypes.Structure):
        _fields_ = [
            ("dot11Ssid", Ssid),
            ("dot11BssType", ctypes.c_uint),
            ("dot11Bssid", ctypes.c_ubyte * 6),
            ("dot11PhyType", ctypes.c_uint),
            ("uDot11PhyIndex", wintypes.ULONG),
            ("wlanSignalQuality", wintypes.ULONG),
            ("ulRxRate", wintypes.ULONG),
            ("ulTxRate", wintypes.ULONG),
        ]

    class Security(ctypes.Structure):
        _fields_ = [
            ("bSecurityEnabled", wintypes.BOOL),
            ("bOneXEnabled", wintypes.BOOL),
            ("dot11AuthAlgorithm", ctypes.c_uint),
            ("dot11CipherAlgorithm", ctypes.c_uint),
        ]

    class Connection(ctypes.Structure):
        _fields_ = [
            ("isState", ctypes.c_uint),
            ("wlanConnectionMode", ctypes.c_uint),
            ("strProfileName", ctypes.c_wchar * 256),
            ("wlanAssociationAttributes", Association),
            ("wlanSecurityAttributes", Security),
        ]

    wlan_interface_state_connected = 1
    wlan_intf_opcode_current_connection = 7
    try:
        api = ctypes.windll.wlanapi
    except OSError as err:  # no wlanapi.dll (Server Core without the WLAN service feature)
        raise ProbeUnavailable(f"wlanapi.dll is not available: {err}") from err
    handle = wintypes.HANDLE()
    version = wintypes.DWORD()
    status = api.WlanOpenHandle(2, None, ctypes.byref(version), ctypes.byref(handle))
    if status != 0:
        raise ProbeUnavailable(
            f"WlanOpenHandle failed ({status}): the WLAN AutoConfig service is not running"
        )
    links: list[WifiLink] = []
    try:
        plist = ctypes.POINTER(InterfaceInfoList)()
        status = api.WlanEnumInterfaces(handle, None, ctypes.byref(plist))
        if status != 0:
            raise ProbeError(f"WlanEnumInterfaces failed ({status})")
        try:
            count = plist.contents.dwNumberOfItems
            infos = ctypes.cast(
                ctypes.byref(plist.contents.InterfaceInfo), ctypes.POINTER(InterfaceInfo * count)
            ).contents
            for info in infos:
                if info.isState != wlan_interface_state_connected:
                    continue
                size = wintypes.DWORD()
                data = ctypes.POINTER(Connection)()
                status = api.WlanQueryInterface(
                    handle,
                    ctypes.byref(info.InterfaceGuid),
                    wlan_intf_opcode_current_connection,
                    None,
                    ctypes.byref(size),
                    ctypes.byref(data),
                    None,
                )
                if status != 0:
                    continue  # disconnected meanwhile (ERROR_INVALID_STATE)
                try:
                    sec = data.contents.wlanSecurityAttributes
                    ssid = data.contents.wlanAssociationAttributes.dot11Ssid
                    name = bytes(ssid.ucSSID[: ssid.uSSIDLength]).decode("utf-8", errors="replace")
                    kind = dot11_security(
                        bool(sec.bSecurityEnabled), int(sec.dot11AuthAlgorithm), int(sec.dot11CipherAlgorithm)
                    )
                    links.append(WifiLink(str(info.strInterfaceDescription), kind, name))
                finally:
                    api.WlanFreeMemory(data)
        finally:
            api.WlanFreeMemory(plist)
    finally:
        api.WlanCloseHandle(handle, None)
    return links


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

    def _rows(self) -> list[dict[str, Any]]:
        try:
            return native_adapter_rows()
        except (ProbeError, OSError, ValueError) as err:
            logger.debug("GetAdaptersAddresses failed (%s); asking PowerShell", err)
            return _json_rows(powershell(_PS_ADAPTERS), "Get-NetAdapter")

    def interfaces(self) -> list[NetInterface]:
        return interfaces_from_rows(self._rows())

    def route_interface(self, address: str) -> str | None:
        index = best_interface_index(address)
        if index is None:
            return None
        names = {int(r.get("ifIndex") or 0): str(r.get("Name", "")) for r in self._rows()}
        return names.get(index, f"ifIndex {index}")

    def resolve(self, name: str) -> list[str]:
        return resolve_name(name)

    def wifi(self) -> list[WifiLink]:
        try:
            return wlan_api_links()
        except (ProbeUnavailable, ProbeError, OSError, ValueError) as err:
            logger.debug("WLAN API unavailable (%s); parsing netsh output", err)
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
    """iphlpapi GetBestInterface (IPv4) / GetBestInterfaceEx (IPv6): the interface index Windows would route
    ``address`` through. No packet is sent."""
    if sys.platform != "win32":
        raise ProbeUnavailable("GetBestInterface exists only on Windows")
    import ctypes
    from ctypes import wintypes

    index = wintypes.DWORD(0)
    if ":" in address:
        # struct sockaddr_in6: family (AF_INET6 = 23 on Windows), port, flowinfo, 16-byte address, scope id
        sockaddr = struct.pack("<HHI16sI", 23, 0, 0, socket.inet_pton(socket.AF_INET6, address), 0)
        buf = ctypes.create_string_buffer(sockaddr, len(sockaddr))
        status = ctypes.windll.iphlpapi.GetBestInterfaceEx(buf, ctypes.byref(index))
    else:
        dest = struct.unpack("<I", socket.inet_aton(address))[0]  # IPAddr is in network byte order
        status = ctypes.windll.iphlpapi.GetBestInterface(wintypes.DWORD(dest), ctypes.byref(index))
    if status != 0:
        return None  # ERROR_NETWORK_UNREACHABLE and friends: no route
    return int(index.value)
