"""Linux posture backend: sysfs, ``ip``, NetworkManager, lsblk, ufw/firewalld/nftables, GNOME/KDE settings.

Parsers are pure module-level functions over captured tool output (tests/agent/platform/data/linux_*); the
:class:`LinuxHost` methods only gather text and call them. Paths are parameters so tests can point them at a
fake sysfs tree.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
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

# linux/if_arp.h and linux/if_tun.h
ARPHRD_ETHER = 1
ARPHRD_PPP = 512
ARPHRD_LOOPBACK = 772
ARPHRD_NONE = 65534
IFF_UP = 0x1
IFF_TUN = 0x0001
IFF_TAP = 0x0002


# -------------------------------------------------------------------------------------------- interfaces


def classify_interface(
    type_code: int, tun_flags: int | None, devtype: str, wireless: bool, kind_hint: str = ""
) -> InterfaceKind:
    """The kind of a sysfs interface from ``type``, ``tun_flags``, ``uevent`` DEVTYPE and ``wireless/``."""
    if tun_flags is not None:
        return "tap" if tun_flags & IFF_TAP else "tun"
    devtype = devtype.lower()
    if devtype == "wireguard":
        return "wireguard"
    if devtype in ("ovpn-dco", "ovpn"):
        return "ovpn-dco"
    if devtype in ("vti", "xfrm", "ipsec"):
        return "ipsec"
    if type_code == ARPHRD_PPP:
        return "ppp"
    if type_code == ARPHRD_LOOPBACK:
        return "loopback"
    if wireless or devtype == "wlan":
        return "wifi"
    if devtype in ("bridge", "veth", "vlan", "macvlan", "bond", "dummy", "vxlan") or kind_hint == "virtual":
        return "virtual"
    if type_code == ARPHRD_ETHER:
        return "ethernet"
    return "other"


def interface_up(flags: int, operstate: str) -> bool:
    """Administratively up and not reported down. Tunnels report operstate "unknown" while up."""
    return bool(flags & IFF_UP) and operstate.strip().lower() not in ("down", "lowerlayerdown", "notpresent")


def parse_uevent(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def read_sysfs_interfaces(root: Path) -> list[NetInterface]:
    """Interfaces from a /sys/class/net tree. Unreadable attributes degrade that item only (psutil ad_value)."""
    out: list[NetInterface] = []
    try:
        entries = sorted(root.iterdir())
    except OSError as err:
        raise ProbeUnavailable(f"{root} is not readable ({err.strerror})") from err
    for entry in entries:

        def attr(name: str, default: str = "", path: Path = entry) -> str:
            try:
                return (path / name).read_text(encoding="utf-8", errors="replace").strip()
            except OSError:
                return default

        tun = attr("tun_flags")
        virtual = "virtual" if "/virtual/" in os.path.realpath(entry) else ""
        kind = classify_interface(
            _int(attr("type", "0")),
            int(tun, 16) if tun else None,
            parse_uevent(attr("uevent")).get("DEVTYPE", ""),
            (entry / "wireless").exists() or (entry / "phy80211").exists(),
            virtual,
        )
        out.append(NetInterface(entry.name, interface_up(_int(attr("flags", "0")), attr("operstate")), kind))
    return out


def _int(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        return 0


def parse_ip_route_get(text: str) -> str | None:
    """``ip -j route get ADDR`` -> the output device."""
    try:
        data = json.loads(text or "[]")
    except json.JSONDecodeError as err:
        raise ProbeError(f"ip route get: unexpected output ({err.msg})") from err
    for entry in data if isinstance(data, list) else []:
        if isinstance(entry, dict) and entry.get("dev"):
            return str(entry["dev"])
    return None


# -------------------------------------------------------------------------------------------------- wifi


def split_terse(line: str) -> list[str]:
    """Split one ``nmcli -t`` line: ':' separates fields, '\\:' and '\\\\' are escapes inside a field."""
    fields: list[str] = []
    current: list[str] = []
    chars = iter(line)
    for ch in chars:
        if ch == "\\":
            current.append(next(chars, ""))
        elif ch == ":":
            fields.append("".join(current))
            current = []
        else:
            current.append(ch)
    fields.append("".join(current))
    return fields


def nm_security(value: str) -> WifiSecurity:
    """NetworkManager's SECURITY column ("", "--", "WEP", "WPA1 WPA2", "WPA2 802.1X", "WPA3", "OWE")."""
    tokens = value.upper().split()
    if not tokens or tokens == ["--"]:
        return "open"
    if "802.1X" in tokens:
        return "enterprise" if any(t.startswith("WPA") for t in tokens) else "wep"
    if "WPA3" in tokens:
        return "wpa3"
    if "WPA2" in tokens:
        return "wpa2"
    if "WPA1" in tokens or "WPA" in tokens:
        return "wpa"
    if "OWE" in tokens:
        return "owe"
    if "WEP" in tokens:
        return "wep"
    return "unknown"


def parse_nmcli_wifi(text: str) -> list[WifiLink]:
    """``nmcli -t -f ACTIVE,SSID,SECURITY,DEVICE device wifi list --rescan no``: the active rows.

    ACTIVE is "yes"/"no" in every locale because ``-t`` output is not translated for this field; we also accept
    the localized Japanese "はい" to be safe.
    """
    links: list[WifiLink] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = split_terse(line)
        if len(fields) < 4:
            continue
        active, ssid, security, device = fields[0], fields[1], fields[2], fields[3]
        if active.strip().lower() in ("yes", "はい", "*"):
            links.append(WifiLink(interface=device, security=nm_security(security), ssid=ssid))
    return links


# ------------------------------------------------------------------------------------------ disk encryption


def _walk(
    nodes: Iterable[Mapping[str, Any]], ancestors: tuple[Mapping[str, Any], ...] = ()
) -> Iterable[tuple[Mapping[str, Any], tuple[Mapping[str, Any], ...]]]:
    for node in nodes:
        yield node, ancestors
        yield from _walk(node.get("children") or (), (*ancestors, node))


def _mountpoints(node: Mapping[str, Any]) -> list[str]:
    points = node.get("mountpoints")
    if points is None:
        single = node.get("mountpoint")
        points = [single] if single else []
    return [p for p in points if p]


def parse_lsblk_encryption(text: str, mounts: tuple[str, ...] = ("/", "/home")) -> DeviceFact:
    """``lsblk -J -o NAME,TYPE,MOUNTPOINTS,FSTYPE``: is each of / and /home on a dm-crypt (LUKS) layer?"""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ProbeError(f"lsblk: unexpected output ({err.msg})") from err
    found: dict[str, tuple[str, bool]] = {}
    for node, ancestors in _walk(data.get("blockdevices") or []):
        for point in _mountpoints(node):
            if point in mounts:
                chain = (*ancestors, node)
                encrypted = any(n.get("type") == "crypt" or n.get("fstype") == "crypto_LUKS" for n in chain)
                found[point] = (str(node.get("name", "?")), encrypted)
    if "/" not in found:
        return DeviceFact(
            "unknown", "the root file system is not on a local block device (container or network root)"
        )
    plain = [f"{point} on {name}" for point, (name, enc) in sorted(found.items()) if not enc]
    if plain:
        return DeviceFact("bad", "no dm-crypt/LUKS layer under " + ", ".join(plain))
    return DeviceFact(
        "ok", "dm-crypt/LUKS: " + ", ".join(f"{p} on {n}" for p, (n, _) in sorted(found.items()))
    )


# ------------------------------------------------------------------------------------------------ firewall


def parse_ufw_status(text: str) -> DeviceFact | None:
    """``ufw status``: "Status: active" / "Status: inactive" (ufw's own output is not translated)."""
    match = re.search(r"^Status:\s*(\w+)", text, re.MULTILINE)
    if not match:
        return None
    return DeviceFact("ok", "ufw active") if match.group(1) == "active" else DeviceFact("bad", "ufw inactive")


def parse_nft_ruleset(text: str) -> DeviceFact:
    """``nft list ruleset``: an input-hook filter chain that drops or rejects anything counts as a firewall."""
    chains = re.split(r"^\s*chain\s+", text, flags=re.MULTILINE)[1:]
    for chain in chains:
        body = chain.split("}", 1)[0]
        if not re.search(r"type\s+filter\s+hook\s+input\b", body):
            continue
        if re.search(r"policy\s+drop\b", body) or re.search(
            r"^\s*(?!#).*\b(drop|reject)\b", body, re.MULTILINE
        ):
            name = chain.split(None, 1)[0] if chain.split() else "?"
            return DeviceFact("ok", f"nftables input chain {name!r} filters traffic")
    return DeviceFact("bad", "no nftables input chain drops or rejects traffic")


# --------------------------------------------------------------------------------------------- screen lock


def _gvariant_number(text: str) -> int:
    match = re.search(r"(\d+)\s*$", text.strip())
    if not match:
        raise ProbeError(f"gsettings: unexpected value {text.strip()!r}")
    return int(match.group(1))


def gnome_lock_timeout(idle_delay: str, lock_enabled: str, lock_delay: str) -> LockTimeout:
    """GNOME: the screen blanks after ``idle-delay`` s (0 = never) and locks ``lock-delay`` s later if enabled."""
    idle = _gvariant_number(idle_delay)
    if lock_enabled.strip() != "true":
        return LockTimeout(None, "GNOME screen lock is disabled (org.gnome.desktop.screensaver lock-enabled)")
    if idle == 0:
        return LockTimeout(None, "GNOME never blanks the screen (org.gnome.desktop.session idle-delay 0)")
    total = idle + _gvariant_number(lock_delay)
    return LockTimeout(float(total), f"GNOME locks after {total} s")


def kde_lock_timeout(autolock: str, timeout_minutes: str) -> LockTimeout:
    """KDE kscreenlockerrc [Daemon] Autolock (default true) and Timeout in minutes (default 5)."""
    if autolock.strip().lower() == "false":
        return LockTimeout(None, "KDE screen locking is disabled (kscreenlockerrc Autolock=false)")
    minutes = int(timeout_minutes.strip() or "5")
    return LockTimeout(float(minutes * 60), f"KDE locks after {minutes} min")


# ------------------------------------------------------------------------------------------------ backend


class LinuxHost:
    """The live Linux probe."""

    name = "linux"

    def __init__(self, sysfs: Path = Path("/sys/class/net")) -> None:
        self.sysfs = sysfs

    def interfaces(self) -> list[NetInterface]:
        return read_sysfs_interfaces(self.sysfs)

    def route_interface(self, address: str) -> str | None:
        done = run(["ip", "-j", "route", "get", address], ok_codes=(0, 1, 2), timeout=5.0)
        if done.returncode != 0:
            # "RTNETLINK answers: Network is unreachable": no route at all, which is an answer, not a failure
            if "unreachable" in done.stderr.lower() or "no route" in done.stderr.lower():
                return None
            raise ProbeError(f"ip route get failed: {done.stderr.strip()[:200]}")
        return parse_ip_route_get(done.stdout)

    def resolve(self, name: str) -> list[str]:
        return resolve_name(name)

    def wifi(self) -> list[WifiLink]:
        wireless = [i.name for i in self.interfaces() if i.kind == "wifi"]
        if not wireless:
            return []
        done = run(
            ["nmcli", "-t", "-f", "ACTIVE,SSID,SECURITY,DEVICE", "device", "wifi", "list", "--rescan", "no"]
        )
        return parse_nmcli_wifi(done.stdout)

    def disk_encryption(self) -> DeviceFact:
        done = run(["lsblk", "-J", "-o", "NAME,TYPE,MOUNTPOINTS,FSTYPE"], ok_codes=(0, 1))
        if done.returncode != 0 or "unknown column" in done.stderr.lower():
            done = run(["lsblk", "-J", "-o", "NAME,TYPE,MOUNTPOINT,FSTYPE"])  # util-linux < 2.37
        return parse_lsblk_encryption(done.stdout)

    def firewall(self) -> DeviceFact:
        notes: list[str] = []
        for probe in (self._ufw, self._firewalld, self._nft):
            try:
                fact = probe()
            except ProbeUnavailable as err:
                notes.append(str(err))
                continue
            if fact is not None:
                return fact
        raise ProbeUnavailable("no firewall front end is readable here (" + "; ".join(notes) + ")")

    def _ufw(self) -> DeviceFact | None:
        done = run(["ufw", "status"], ok_codes=(0, 1))
        fact = parse_ufw_status(done.stdout)
        if fact is None and "root" in (done.stderr + done.stdout).lower():
            raise ProbeUnavailable("ufw status needs root")
        return fact

    def _firewalld(self) -> DeviceFact | None:
        done = run(["firewall-cmd", "--state"], ok_codes=(0, 252, 1))
        state = (done.stdout + done.stderr).strip().lower()
        if state == "running":
            return DeviceFact("ok", "firewalld running")
        if state == "not running":
            return None  # maybe nftables/ufw
        return None

    def _nft(self) -> DeviceFact | None:
        done = run(["nft", "list", "ruleset"], ok_codes=(0, 1))
        if done.returncode != 0:
            raise ProbeUnavailable("nft list ruleset needs root")
        return parse_nft_ruleset(done.stdout)

    def screen_lock(self) -> LockTimeout:
        desktop = os.environ.get("XDG_CURRENT_DESKTOP", "").upper()
        if "KDE" in desktop:
            autolock = run(
                ["kreadconfig5", "--file", "kscreenlockerrc", "--group", "Daemon", "--key", "Autolock"]
            )
            timeout = run(
                ["kreadconfig5", "--file", "kscreenlockerrc", "--group", "Daemon", "--key", "Timeout"]
            )
            return kde_lock_timeout(autolock.stdout, timeout.stdout)

        def get(schema: str, key: str) -> str:
            done = run(["gsettings", "get", schema, key], ok_codes=(0, 1))
            if done.returncode != 0:
                raise ProbeUnavailable(f"gsettings has no {schema} (not a GNOME-family desktop)")
            return done.stdout

        return gnome_lock_timeout(
            get("org.gnome.desktop.session", "idle-delay"),
            get("org.gnome.desktop.screensaver", "lock-enabled"),
            get("org.gnome.desktop.screensaver", "lock-delay"),
        )
