"""VPN posture: tunnel up, corporate routes through it, full tunnel, DNS canary (policy ``[network.vpn]``).

Pure over a :class:`HostProbe`: the backend lists interfaces and asks the OS routing decision for an address
(``ip route get`` on Linux, ``GetBestInterface`` on Windows, ``route -n get`` on macOS); no packet is sent.

Check ids: ``vpn`` (a VPN interface is up), ``vpn.routes`` (each policy CIDR/host routes via a VPN interface),
``vpn.full_tunnel`` (the default route — including OpenVPN's ``0.0.0.0/1`` + ``128.0.0.0/1`` — goes via the VPN,
and IPv6 does not bypass it), ``vpn.dns`` (the canary name resolves to the expected addresses).
"""

from __future__ import annotations

import fnmatch
import ipaddress
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from agent.i18n import Translator
from agent.posture.base import (
    CheckResult,
    HostProbe,
    NetInterface,
    PostureError,
    ProbeUnavailable,
    probe_failed,
    result,
)
from policy.model import Mode, Vpn

logger = logging.getLogger(__name__)

# Windows adapter descriptions of common VPN clients (InterfaceDescription); policy adds its own.
BUILTIN_DESCRIPTIONS: tuple[str, ...] = (
    "WireGuard*",
    "Wintun*",
    "TAP-Windows*",
    "TAP-Win32*",
    "*OpenVPN*",
    "Cisco AnyConnect*",
    "Cisco Secure Client*",
    "PANGP*",
    "*GlobalProtect*",
    "Fortinet*",
    "*FortiClient*",
    "*SonicWall*",
    "*Pulse Secure*",
    "*Ivanti*",
)
# Kinds that are a VPN by themselves: a layer-3 tun device is what OpenVPN, Tailscale, sing-box... create; a
# bare "tap" is also what VMs use (libvirt vnet*, qemu tap*), and macOS creates utun devices for iCloud Private
# Relay and others, so those two count only by name or by carrying the routes.
SELF_EVIDENT_KINDS: frozenset[str] = frozenset({"tun", "wireguard", "ppp", "ovpn-dco", "ipsec"})
# Route lookups for the full-tunnel check: public resolver addresses in both halves of IPv4 (OpenVPN's def1
# installs 0/1 and 128/1). Only the local routing table is consulted; nothing is sent. Documentation ranges
# (192.0.2.0/24...) are avoided on purpose: lab and CI networks use them as their LAN, which is never tunneled.
FULL_TUNNEL_PROBES_V4: tuple[str, ...] = ("9.9.9.9", "149.112.112.112")
FULL_TUNNEL_PROBE_V6 = "2001:db8::1"


@dataclass(frozen=True)
class VpnReport:
    results: list[CheckResult]
    interfaces: tuple[str, ...]  # VPN interfaces that are up now (for VPN_UP / VPN_DOWN events)


def effective_mode(vpn: Vpn) -> Mode:
    """With ``required_for_customer_apps = false`` the VPN checks are reported and warned, never covering."""
    if not vpn.required_for_customer_apps and vpn.mode == "block":
        return "warn"
    return vpn.mode


def glob_match(name: str, patterns: Sequence[str]) -> bool:
    low = name.lower()
    return any(fnmatch.fnmatchcase(low, p.lower()) for p in patterns)


def is_vpn_interface(iface: NetInterface, vpn: Vpn, routed: frozenset[str] = frozenset()) -> bool:
    """Whether an up interface counts as the VPN.

    ``routed`` holds the interfaces that carry the default route or a policy route: a macOS ``utun`` counts
    only when it does (issue 5: "macOS utun with the default route through it").
    """
    if not iface.up or iface.kind == "loopback":
        return False
    if iface.kind == "utun":
        return iface.name in routed
    if glob_match(iface.name, vpn.interfaces):
        return True
    if iface.description and glob_match(
        iface.description, (*vpn.adapter_descriptions, *BUILTIN_DESCRIPTIONS)
    ):
        return True
    return iface.kind in SELF_EVIDENT_KINDS


def route_targets(entry: str) -> list[str]:
    """The addresses whose route represents a policy ``routes`` entry: a CIDR's first host (and last for wide
    ones, so that a half-covered range fails), an address itself; [] for a host name (resolved by the caller)."""
    try:
        net = ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return []
    if net.num_addresses == 1:
        return [str(net.network_address)]
    first = net.network_address + 1
    last = net.broadcast_address - 1 if net.num_addresses > 2 else net.broadcast_address
    return [str(first)] if first == last else [str(first), str(last)]


def check_vpn(vpn: Vpn, host: HostProbe, translator: Translator | None = None) -> VpnReport:
    mode = effective_mode(vpn)
    t = translator

    def unavailable(status: str, reason: str) -> VpnReport:
        ids = (
            ["vpn"]
            + (["vpn.routes"] if vpn.routes else [])
            + (["vpn.full_tunnel"] if vpn.full_tunnel else [])
        )
        key = "posture.skip" if status == "skip" else "posture.error"
        return VpnReport(
            [
                result(
                    i,
                    "skip" if status == "skip" else "error",
                    mode,
                    key,
                    translator=t,
                    remediation_key="posture.remedy.check_error",
                    reason=reason,
                )
                for i in ids
            ],
            (),
        )

    try:
        interfaces = host.interfaces()
        routed = _routed_interfaces(vpn, host) if any(i.kind == "utun" for i in interfaces) else frozenset()
    except ProbeUnavailable as err:
        return unavailable("skip", str(err))
    except PostureError as err:
        return unavailable("error", str(err))

    up = tuple(sorted(i.name for i in interfaces if is_vpn_interface(i, vpn, routed)))
    results: list[CheckResult] = []
    if up:
        results.append(result("vpn", "pass", mode, "posture.vpn.up", translator=t, interfaces=", ".join(up)))
    else:
        results.append(
            result(
                "vpn",
                "fail",
                mode,
                "posture.vpn.down",
                remediation_key="posture.remedy.vpn.connect",
                translator=t,
                patterns=", ".join(vpn.interfaces) or "-",
            )
        )
    if vpn.routes:
        results.append(_check_routes(vpn, host, set(up), mode, t))
    if vpn.full_tunnel:
        results.append(_check_full_tunnel(host, set(up), mode, t))
    return VpnReport(results, up)


def _routed_interfaces(vpn: Vpn, host: HostProbe) -> frozenset[str]:
    names: set[str] = set()
    for address in FULL_TUNNEL_PROBES_V4:
        iface = host.route_interface(address)
        if iface:
            names.add(iface)
    for entry in vpn.routes:
        for address in route_targets(entry):
            iface = host.route_interface(address)
            if iface:
                names.add(iface)
    return frozenset(names)


def _check_routes(vpn: Vpn, host: HostProbe, up: set[str], mode: Mode, t: Translator | None) -> CheckResult:
    outside: list[str] = []
    try:
        for entry in vpn.routes:
            targets = route_targets(entry) or host.resolve(entry)
            if not targets:
                outside.append(f"{entry} -> ?")
            for address in targets:
                iface = host.route_interface(address)
                if iface not in up:
                    outside.append(f"{entry} -> {iface or 'no route'}")
                    break
    except PostureError as err:
        return probe_failed("vpn.routes", mode, err, t)
    if outside:
        return result(
            "vpn.routes",
            "fail",
            mode,
            "posture.vpn.routes.outside",
            remediation_key="posture.remedy.vpn.routes",
            translator=t,
            routes="; ".join(outside),
        )
    return result("vpn.routes", "pass", mode, "posture.vpn.routes.ok", translator=t, count=len(vpn.routes))


def _check_full_tunnel(host: HostProbe, up: set[str], mode: Mode, t: Translator | None) -> CheckResult:
    try:
        leaks = sorted(
            {
                iface or "no route"
                for a in FULL_TUNNEL_PROBES_V4
                if (iface := host.route_interface(a)) not in up
            }
        )
        v6 = host.route_interface(FULL_TUNNEL_PROBE_V6)
    except PostureError as err:
        return probe_failed("vpn.full_tunnel", mode, err, t)
    if leaks:
        return result(
            "vpn.full_tunnel",
            "fail",
            mode,
            "posture.vpn.full_tunnel.outside",
            remediation_key="posture.remedy.vpn.full_tunnel",
            translator=t,
            interfaces=", ".join(leaks),
        )
    if v6 is not None and v6 not in up:
        return result(
            "vpn.full_tunnel",
            "fail",
            mode,
            "posture.vpn.full_tunnel.ipv6",
            remediation_key="posture.remedy.vpn.full_tunnel",
            translator=t,
            interface=v6,
        )
    return result("vpn.full_tunnel", "pass", mode, "posture.vpn.full_tunnel.ok", translator=t)


def check_dns_canary(vpn: Vpn, host: HostProbe, translator: Translator | None = None) -> CheckResult | None:
    """``vpn.dns``, or None without a canary. Separate from :func:`check_vpn` because a resolver can take
    seconds to time out when the VPN (and the corporate DNS) is gone; the monitor runs it after the fast checks."""
    if vpn.dns_canary is None:
        return None
    return _check_dns(vpn, host, effective_mode(vpn), translator)


def _check_dns(vpn: Vpn, host: HostProbe, mode: Mode, t: Translator | None) -> CheckResult:
    canary = vpn.dns_canary
    assert canary is not None
    try:
        answers = host.resolve(canary.name)
    except ProbeUnavailable as err:
        return result("vpn.dns", "skip", mode, "posture.skip", translator=t, reason=str(err))
    except PostureError:
        answers = []
    if not answers:
        return result(
            "vpn.dns",
            "fail",
            mode,
            "posture.vpn.dns.unresolved",
            remediation_key="posture.remedy.vpn.connect",
            translator=t,
            name=canary.name,
        )
    if canary.expect and not set(answers) & {str(ipaddress.ip_address(a)) for a in canary.expect}:
        return result(
            "vpn.dns",
            "fail",
            mode,
            "posture.vpn.dns.unexpected",
            remediation_key="posture.remedy.vpn.connect",
            translator=t,
            name=canary.name,
            answers=", ".join(sorted(answers)),
        )
    return result("vpn.dns", "pass", mode, "posture.vpn.dns.ok", translator=t, name=canary.name)
