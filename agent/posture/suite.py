"""Run every posture check the policy asks for, in a stable order, grouped by cost.

Groups: ``network`` (VPN interfaces and routes, Wi-Fi, plaintext: cheap, re-run on every network change),
``probes`` (DNS canary and TLS handshakes, which may wait for timeouts: run right after), ``device`` (disk, firewall, screen lock: periodic only). A check whose mode is "off" is not run and
is listed as ``skip`` so that ``mamori agent check`` shows what the policy disabled.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

from agent.i18n import Translator
from agent.posture.base import CheckResult, HostProbe, result
from agent.posture.device import check_disk_encryption, check_firewall, check_screen_lock
from agent.posture.plaintext import RuleFor, check_plaintext, process_rule_matcher
from agent.posture.tls import check_id as tls_check_id
from agent.posture.tls import check_tls
from agent.posture.vpn import check_dns_canary, check_vpn, effective_mode
from agent.posture.wifi import check_wifi
from policy.model import Device, Mode, Policy

GROUPS: tuple[str, ...] = ("network", "probes", "device")
DeviceCheckFn = Callable[[Device, HostProbe, Translator | None], CheckResult]


@dataclass(frozen=True)
class Evaluation:
    results: dict[str, list[CheckResult]]  # group -> results
    vpn_interfaces: tuple[str, ...] | None  # None when the network group did not run


def _off(check_id: str, t: Translator | None) -> CheckResult:
    return result(check_id, "skip", "off", "posture.off", translator=t)


def evaluate(
    policy: Policy,
    host: HostProbe,
    *,
    groups: Collection[str] = GROUPS,
    rule_for: RuleFor | None = None,
    translator: Translator | None = None,
    tls_timeout: float = 5.0,
) -> Evaluation:
    t = translator
    out: dict[str, list[CheckResult]] = {}
    vpn_ifaces: tuple[str, ...] | None = None
    net = policy.network
    if "network" in groups:
        items: list[CheckResult] = []
        if effective_mode(net.vpn) == "off":
            items.append(_off("vpn", t))
            vpn_up = False
        else:
            report = check_vpn(net.vpn, host, t)
            items.extend(report.results)
            vpn_ifaces = report.interfaces
            vpn_up = bool(report.interfaces)
        items.append(_off("wifi", t) if net.wifi.mode == "off" else check_wifi(net.wifi, host, vpn_up, t))
        if net.plaintext.mode == "off":
            items.append(_off("plaintext", t))
        else:
            matcher = rule_for or process_rule_matcher(policy.customer_apps)
            items.append(check_plaintext(net.plaintext, matcher, t))
        out["network"] = items
    if "probes" in groups:
        probes: list[CheckResult] = []
        dns = check_dns_canary(net.vpn, host, t) if effective_mode(net.vpn) != "off" else None
        if dns is not None:
            probes.append(dns)
        probes.extend(
            _off(tls_check_id(e), t) if e.mode == "off" else check_tls(e, t, tls_timeout) for e in net.tls
        )
        out["probes"] = probes
    if "device" in groups:
        dev = policy.device
        items = []
        device_checks: tuple[tuple[str, Mode, DeviceCheckFn], ...] = (
            ("device.disk_encryption", dev.disk_encryption.mode, check_disk_encryption),
            ("device.firewall", dev.firewall.mode, check_firewall),
            ("device.screen_lock", dev.screen_lock.mode, check_screen_lock),
        )
        for cid, mode, fn in device_checks:
            items.append(_off(cid, t) if mode == "off" else fn(dev, host, t))
        out["device"] = items
    return Evaluation(out, vpn_ifaces)
