"""Check evaluators over the scripted FakeHost (VPN rules, Wi-Fi actions, device checks, plaintext matching)."""

from __future__ import annotations

from agent.posture.base import DeviceFact, LockTimeout, NetInterface, ProbeError, ProbeUnavailable, WifiLink
from agent.posture.device import check_disk_encryption, check_firewall, check_screen_lock
from agent.posture.fake import FakeHost
from agent.posture.plaintext import Connection, find_violations, process_rule_matcher
from agent.posture.vpn import check_dns_canary, check_vpn, is_vpn_interface, route_targets
from agent.posture.wifi import check_wifi
from policy.model import CustomerApp, Device, DeviceCheck, DnsCanary, ScreenLockCheck, Vpn, Wifi

TUN = NetInterface("tun0", True, "tun")


def statuses(results: list) -> dict[str, str]:  # type: ignore[type-arg]
    return {r.id: r.status for r in results}


def test_vpn_interface_rules() -> None:
    vpn = Vpn()
    assert is_vpn_interface(TUN, vpn)
    assert not is_vpn_interface(NetInterface("tun0", False, "tun"), vpn)
    assert is_vpn_interface(NetInterface("wg-corp", True, "wireguard"), vpn)  # WireGuard by link type
    assert not is_vpn_interface(NetInterface("vmtap3", True, "tap"), vpn)  # a VM's tap is not a VPN
    assert is_vpn_interface(NetInterface("tailscale0", True, "tun"), vpn)  # a layer-3 tun is
    win = NetInterface("corp", True, "virtual", "WireGuard Tunnel")
    assert is_vpn_interface(win, vpn)
    assert not is_vpn_interface(
        NetInterface("vEthernet", True, "virtual", "Hyper-V Virtual Ethernet Adapter"), vpn
    )
    assert is_vpn_interface(
        NetInterface(
            "Ethernet 3",
            True,
            "virtual",
            "Cisco AnyConnect Secure Mobility Client Virtual Miniport Adapter for Windows x64",
        ),
        vpn,
    )
    assert is_vpn_interface(
        NetInterface("x", True, "virtual", "Acme SSL VPN"), Vpn(adapter_descriptions=("Acme*",))
    )
    assert is_vpn_interface(NetInterface("Ethernet 4", True, "ppp", "WAN Miniport (PPTP)"), vpn)
    # macOS utun: only when it carries the default route (iCloud Private Relay etc. create idle utuns)
    utun = NetInterface("utun4", True, "utun")
    assert not is_vpn_interface(utun, vpn)
    assert is_vpn_interface(utun, vpn, frozenset({"utun4"}))


def test_route_targets() -> None:
    assert route_targets("10.99.0.0/24") == ["10.99.0.1", "10.99.0.254"]
    assert route_targets("10.1.2.3") == ["10.1.2.3"]
    assert route_targets("fd00::/64")[0] == "fd00::1"
    assert route_targets("crm.corp.example") == []


def test_vpn_up_with_routes_full_tunnel_and_dns() -> None:
    host = FakeHost(
        nics=[TUN, NetInterface("eth0", True, "ethernet")],
        default_route="tun0",
        dns={"canary.corp": ["10.0.0.53"]},
    )
    vpn = Vpn(routes=("10.99.0.0/24",), full_tunnel=True, dns_canary=DnsCanary("canary.corp", ("10.0.0.53",)))
    report = check_vpn(vpn, host)
    assert report.interfaces == ("tun0",)
    assert statuses(report.results) == {"vpn": "pass", "vpn.routes": "pass", "vpn.full_tunnel": "pass"}
    dns = check_dns_canary(vpn, host)
    assert dns is not None and dns.status == "pass"
    assert check_dns_canary(Vpn(), host) is None


def test_corporate_cidr_routed_outside_the_tunnel_fails() -> None:
    host = FakeHost(nics=[TUN], default_route="tun0", routes={"10.98.0.1": "eth0", "10.98.0.254": "eth0"})
    report = check_vpn(Vpn(routes=("10.99.0.0/24", "10.98.0.0/24")), host)
    [routes] = [r for r in report.results if r.id == "vpn.routes"]
    assert (
        routes.status == "fail"
        and "10.98.0.0/24 -> eth0" in routes.detail.en
        and "10.99" not in routes.detail.en
    )


def test_half_covered_range_fails() -> None:
    host = FakeHost(nics=[TUN], default_route="eth0", routes={"10.0.0.1": "tun0"})
    [_, routes] = check_vpn(Vpn(routes=("10.0.0.0/8",)), host).results
    assert routes.status == "fail"


def test_full_tunnel_split_and_ipv6_leak() -> None:
    split = FakeHost(nics=[TUN], default_route="eth0")
    [_, full] = check_vpn(Vpn(full_tunnel=True), split).results
    assert full.status == "fail" and "eth0" in full.detail.en
    v6 = FakeHost(nics=[TUN], default_route="tun0", routes={"2001:db8::1": "eth0"})
    [_, full6] = check_vpn(Vpn(full_tunnel=True), v6).results
    assert full6.status == "fail" and "IPv6" in full6.detail.en


def test_dns_canary_wrong_answer() -> None:
    host = FakeHost(nics=[TUN], dns={"canary.corp": ["203.0.113.9"]})
    result = check_dns_canary(Vpn(dns_canary=DnsCanary("canary.corp", ("10.0.0.53",))), host)
    assert result is not None and result.status == "fail" and "203.0.113.9" in result.detail.en
    unresolved = check_dns_canary(Vpn(dns_canary=DnsCanary("canary.corp")), FakeHost(nics=[TUN]))
    assert unresolved is not None and unresolved.status == "fail"


def test_vpn_down_and_not_required() -> None:
    host = FakeHost(nics=[NetInterface("eth0", True, "ethernet")])
    [r] = check_vpn(Vpn(), host).results
    assert r.status == "fail" and r.mode == "block" and r.remediation_key == "posture.remedy.vpn.connect"
    assert r.remediation is not None and "VPN" in r.remediation.ja
    [r2] = check_vpn(Vpn(required_for_customer_apps=False), host).results
    assert r2.mode == "warn"


def test_vpn_probe_failures() -> None:
    host = FakeHost(raises={"interfaces": ProbeUnavailable("no sysfs")})
    [r] = check_vpn(Vpn(), host).results
    assert r.status == "skip" and "no sysfs" in r.detail.en
    host = FakeHost(raises={"interfaces": ProbeError("ip crashed")})
    [r] = check_vpn(Vpn(), host).results
    assert r.status == "error"


def test_wifi_actions() -> None:
    open_ = FakeHost(wifi_links=[WifiLink("wlan0", "open", "Free Cafe")])
    assert check_wifi(Wifi(untrusted="allow"), open_, vpn_up=False).status == "pass"
    assert check_wifi(Wifi(untrusted="require_vpn"), open_, vpn_up=True).status == "pass"
    r = check_wifi(Wifi(untrusted="require_vpn"), open_, vpn_up=False)
    assert r.status == "fail" and r.remediation_key == "posture.remedy.wifi.vpn"
    assert "Free Cafe" not in r.detail.en  # the SSID never leaves the PC
    r = check_wifi(Wifi(untrusted="block"), FakeHost(wifi_links=[WifiLink("wlan0", "wep")]), vpn_up=True)
    assert r.status == "fail" and r.remediation_key == "posture.remedy.wifi.block"
    assert check_wifi(Wifi(), FakeHost(wifi_links=[WifiLink("wlan0", "wpa3")]), vpn_up=False).status == "pass"
    assert check_wifi(Wifi(), FakeHost(), vpn_up=False).status == "pass"
    assert (
        check_wifi(Wifi(), FakeHost(wifi_links=[WifiLink("wlan0", "unknown")]), vpn_up=False).status == "skip"
    )


def test_device_checks() -> None:
    device = Device(disk_encryption=DeviceCheck("block"), screen_lock=ScreenLockCheck(max_timeout=600))
    host = FakeHost(
        disk=DeviceFact("bad", "FileVault is Off"),
        fw=DeviceFact("unknown", "not readable"),
        lock=LockTimeout(900, "x"),
    )
    disk = check_disk_encryption(device, host)
    assert disk.status == "fail" and disk.mode == "block" and "FileVault is Off" in disk.detail.en
    assert check_firewall(device, host).status == "skip"
    lock = check_screen_lock(device, host)
    assert lock.status == "fail" and "15m" in lock.detail.en and "10m" in lock.detail.en
    assert check_screen_lock(device, FakeHost(lock=LockTimeout(None, "never"))).status == "fail"
    assert check_screen_lock(device, FakeHost(lock=LockTimeout(300, "ok"))).status == "pass"
    assert check_firewall(device, FakeHost(raises={"firewall": ProbeError("boom")})).status == "error"


def test_plaintext_matching_names_the_rule_not_the_address() -> None:
    rule_for = process_rule_matcher(
        (
            CustomerApp("crm", processes=("crm-client*",)),
            CustomerApp("mail", processes=("OUTLOOK.EXE",)),
            CustomerApp("titles-only"),
        )
    )
    assert rule_for("Outlook") == "mail" and rule_for("crm-client-bin") == "crm" and rule_for("bash") is None
    conns = [
        Connection(1, "crm-client", "10.77.0.1", 80, "ESTABLISHED"),
        Connection(1, "crm-client", "10.77.0.1", 80, "ESTABLISHED"),
        Connection(1, "crm-client", "10.77.0.1", 443, "ESTABLISHED"),
        Connection(2, "outlook.exe", "10.77.0.2", 143, "ESTABLISHED"),
        Connection(2, "outlook.exe", "10.77.0.2", 110, "TIME_WAIT"),
        Connection(3, "firefox", "10.77.0.3", 80, "ESTABLISHED"),
        Connection(4, "crm-client", "127.0.0.1", 80, "ESTABLISHED"),
    ]
    found = find_violations(conns, (80, 110, 143), rule_for)
    assert [(v.rule, v.port, v.count) for v in found] == [("crm", 80, 2), ("mail", 143, 1)]
