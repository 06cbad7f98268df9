"""Per-OS parsers on captured/reconstructed tool outputs (tests/agent/platform/data/README.md says which is which)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.platform import posture_linux as linux
from agent.platform import posture_macos as macos
from agent.platform import posture_windows as windows
from agent.posture.base import ProbeError

DATA = Path(__file__).parent / "data"


def data(name: str) -> str:
    return (DATA / name).read_bytes().decode("utf-8")


# ----------------------------------------------------------------------------------------------- Windows


def test_netsh_english_open_network() -> None:
    [link] = windows.parse_netsh_wlan_interfaces(data("windows_netsh_wlan_en_open.txt"))
    assert link.interface == "Wi-Fi"
    assert link.security == "open"
    assert link.ssid == "Cafe_Free_WiFi"


def test_netsh_japanese_wpa2_personal() -> None:
    [link] = windows.parse_netsh_wlan_interfaces(data("windows_netsh_wlan_ja_wpa2.txt"))
    assert (link.interface, link.security) == ("Wi-Fi", "wpa2")


def test_netsh_japanese_open_network_is_open() -> None:
    [link] = windows.parse_netsh_wlan_interfaces(data("windows_netsh_wlan_ja_open.txt"))
    assert link.security == "open"  # 認証: オープン / 暗号: なし


def test_netsh_unknown_language_uses_the_line_positions() -> None:
    # German labels are not in the parser's table: the lines after "802.11ac" give auth and cipher
    [link] = windows.parse_netsh_wlan_interfaces(data("windows_netsh_wlan_de_wep.txt"))
    assert link.security == "wep"


def test_netsh_japanese_via_position_rule_only() -> None:
    text = data("windows_netsh_wlan_ja_open.txt").replace("認証", "AUTH?").replace("暗号", "CIPH?")
    [link] = windows.parse_netsh_wlan_interfaces(text)
    assert link.security == "open"


def test_netsh_cp932_bytes_decode() -> None:
    from agent.posture.base import _decode

    raw = data("windows_netsh_wlan_ja_wpa2.txt").encode("cp932")
    [link] = windows.parse_netsh_wlan_interfaces(_decode(raw))
    assert link.security == "wpa2"


def test_netsh_disconnected_interface_is_not_a_link() -> None:
    assert windows.parse_netsh_wlan_interfaces(data("windows_netsh_wlan_en_disconnected.txt")) == []


@pytest.mark.parametrize(
    ("auth", "cipher", "expected"),
    [
        ("WPA3-Personal", "GCMP-256", "wpa3"),
        ("WPA2-エンタープライズ", "CCMP", "enterprise"),
        ("WPA2-Enterprise", "CCMP", "enterprise"),
        ("Open", "WEP", "wep"),
        ("共有", "WEP", "wep"),
        ("OWE", "GCMP", "owe"),
        ("Ouvrir", "Aucun", "open"),
        ("???", "CCMP", "unknown"),
    ],
)
def test_wlan_security_classification(auth: str, cipher: str, expected: str) -> None:
    assert windows.wlan_security(auth, cipher) == expected


def test_get_netadapter_kinds_and_state() -> None:
    nics = {n.name: n for n in windows.parse_net_adapters(data("windows_get_netadapter.json"))}
    assert nics["Wi-Fi"].kind == "wifi" and nics["Wi-Fi"].up
    assert nics["イーサネット"].kind == "ethernet" and not nics["イーサネット"].up
    assert nics["corp-vpn"].description == "WireGuard Tunnel" and nics["corp-vpn"].up
    assert nics["vEthernet (Default Switch)"].kind == "virtual"
    assert windows.adapter_indexes(data("windows_get_netadapter.json"))[31] == "corp-vpn"


def test_get_netadapter_single_object() -> None:
    text = '{"Name":"Ethernet","InterfaceDescription":"Intel","ifIndex":3,"InterfaceType":6,"InterfaceOperationalStatus":1}'
    [nic] = windows.parse_net_adapters(text)
    assert nic.up and nic.kind == "ethernet"


def test_bitlocker_cim() -> None:
    assert windows.parse_bitlocker_cim(data("windows_bitlocker_cim_on.json")).state == "ok"
    suspended = windows.parse_bitlocker_cim(data("windows_bitlocker_cim_suspended.json"))
    assert suspended.state == "bad" and "suspended" in suspended.reason
    assert windows.parse_bitlocker_cim("").state == "bad"


def test_bitlocker_shell_property() -> None:
    assert windows.parse_bitlocker_shell("1\r\n").state == "ok"
    assert windows.parse_bitlocker_shell("2").state == "bad"
    assert windows.parse_bitlocker_shell("").state == "bad"
    with pytest.raises(ProbeError):
        windows.parse_bitlocker_shell("garbage")


def test_firewall_profiles_name_the_disabled_one() -> None:
    fact = windows.parse_firewall_profiles(data("windows_firewall_profiles.json"))
    assert fact.state == "bad" and fact.reason.endswith("Public")
    assert windows.parse_firewall_profiles('[{"Name":"Domain","Enabled":true}]').state == "ok"


def test_reg_query_and_lock_timeout() -> None:
    desktop = windows.parse_reg_query(data("windows_reg_desktop.txt"))
    assert desktop["ScreenSaveTimeOut"] == "1200" and desktop["ScreenSaverIsSecure"] == "1"
    system = windows.parse_reg_query(data("windows_reg_policies_system.txt"))
    assert system["InactivityTimeoutSecs"] == "900"
    lock = windows.windows_lock_timeout(system, desktop, {})
    assert lock.seconds == 900.0 and "inactivity" in lock.reason
    assert windows.windows_lock_timeout({}, desktop, {}).seconds == 1200.0
    # a GPO value overrides the user's own setting
    assert windows.windows_lock_timeout({}, desktop, {"ScreenSaveTimeOut": "300"}).seconds == 300.0
    assert windows.windows_lock_timeout({}, {**desktop, "ScreenSaverIsSecure": "0"}, {}).seconds is None


# ------------------------------------------------------------------------------------------------- Linux


def test_ip_route_get_json() -> None:
    assert linux.parse_ip_route_get(data("linux_ip_route_get.json")) == "eth0"
    assert linux.parse_ip_route_get("[]") is None


def test_nmcli_terse_with_escaped_colon_and_open_network() -> None:
    [link] = linux.parse_nmcli_wifi(data("linux_nmcli_wifi.txt"))
    assert link.ssid == "Free:Cafe Wi-Fi"
    assert (link.interface, link.security) == ("wlp0s20f3", "open")
    [home] = linux.parse_nmcli_wifi(data("linux_nmcli_wifi_wpa3.txt"))
    assert home.security == "wpa3"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", "open"),
        ("--", "open"),
        ("WEP", "wep"),
        ("WPA1", "wpa"),
        ("WPA1 WPA2", "wpa2"),
        ("WPA2 802.1X", "enterprise"),
        ("WPA3", "wpa3"),
        ("OWE", "owe"),
    ],
)
def test_nm_security(value: str, expected: str) -> None:
    assert linux.nm_security(value) == expected


def test_lsblk_luks_root_is_encrypted() -> None:
    fact = linux.parse_lsblk_encryption(data("linux_lsblk_luks.json"))
    assert fact.state == "ok" and "ubuntu--vg-ubuntu--lv" in fact.reason


def test_lsblk_plain_root_captured_on_this_vm_is_not_encrypted() -> None:
    fact = linux.parse_lsblk_encryption(data("linux_lsblk_plain_vm.json"))
    assert fact.state == "bad" and "/ on vda" in fact.reason


def test_lsblk_old_util_linux_only_home_encrypted() -> None:
    fact = linux.parse_lsblk_encryption(data("linux_lsblk_old_mountpoint.json"))
    assert fact.state == "bad" and "/ on sda2" in fact.reason and "/home" not in fact.reason


def test_lsblk_container_root_is_unknown() -> None:
    assert linux.parse_lsblk_encryption('{"blockdevices": []}').state == "unknown"


def test_ufw_and_nft() -> None:
    assert linux.parse_ufw_status(data("linux_ufw_status_active.txt")) is not None
    assert linux.parse_ufw_status(data("linux_ufw_status_active.txt")).state == "ok"  # type: ignore[union-attr]
    assert linux.parse_ufw_status(data("linux_ufw_status_inactive.txt")).state == "bad"  # type: ignore[union-attr]
    assert linux.parse_nft_ruleset(data("linux_nft_ruleset_ufw.txt")).state == "ok"
    assert linux.parse_nft_ruleset(data("linux_nft_ruleset_empty.txt")).state == "bad"


def test_gnome_and_kde_lock_timeouts() -> None:
    assert linux.gnome_lock_timeout("uint32 300", "true", "uint32 0").seconds == 300
    assert linux.gnome_lock_timeout("uint32 300", "true", "uint32 60").seconds == 360
    assert linux.gnome_lock_timeout("uint32 0", "true", "uint32 0").seconds is None
    assert linux.gnome_lock_timeout("uint32 300", "false", "uint32 0").seconds is None
    assert linux.kde_lock_timeout("", "10").seconds == 600
    assert linux.kde_lock_timeout("false", "5").seconds is None


def test_sysfs_classification(tmp_path: Path) -> None:
    def nic(name: str, type_: str, flags: str, oper: str, extra: dict[str, str] | None = None) -> None:
        d = tmp_path / name
        d.mkdir()
        for k, v in {"type": type_, "flags": flags, "operstate": oper, **(extra or {})}.items():
            (d / k).write_text(v + "\n")

    nic("eth0", "1", "0x1003", "up")
    nic("tun0", "65534", "0x1091", "unknown", {"tun_flags": "0x1001"})
    nic("tap0", "1", "0x1003", "down", {"tun_flags": "0x1002"})
    nic("wg0", "65534", "0x91", "unknown", {"uevent": "DEVTYPE=wireguard\nINTERFACE=wg0"})
    nic("ppp0", "512", "0x10d1", "unknown")
    nic("wlan0", "1", "0x1003", "up", {"uevent": "DEVTYPE=wlan"})
    nic("lo", "772", "0x9", "unknown")
    kinds = {n.name: (n.kind, n.up) for n in linux.read_sysfs_interfaces(tmp_path)}
    assert kinds == {
        "eth0": ("ethernet", True),
        "tun0": ("tun", True),
        "tap0": ("tap", False),
        "wg0": ("wireguard", True),
        "ppp0": ("ppp", True),
        "wlan0": ("wifi", True),
        "lo": ("loopback", True),
    }


def test_live_sysfs_has_loopback() -> None:
    nics = linux.read_sysfs_interfaces(Path("/sys/class/net"))
    assert any(n.kind == "loopback" for n in nics)


# ------------------------------------------------------------------------------------------------- macOS


def test_ifconfig() -> None:
    nics = {n.name: n for n in macos.parse_ifconfig(data("macos_ifconfig.txt"))}
    assert nics["utun4"].kind == "utun" and nics["utun4"].up and nics["utun4"].addresses == ("10.8.0.6",)
    assert nics["en0"].kind == "ethernet" and "192.168.10.23" in nics["en0"].addresses
    assert not nics["gif0"].up and nics["lo0"].kind == "loopback"


def test_route_get() -> None:
    assert macos.parse_route_get(data("macos_route_get_utun.txt")) == "utun4"
    assert macos.parse_route_get(data("macos_route_get_en0.txt")) == "en0"
    assert macos.parse_route_get("route: writing to routing socket: not in table\n") is None


def test_corewlan_codes() -> None:
    assert macos.corewlan_security(0) == "open"
    assert macos.corewlan_security(1) == "wep"
    assert macos.corewlan_security(4) == "wpa2"
    assert macos.corewlan_security(11) == "wpa3"
    assert macos.corewlan_security(2**63 - 1) == "unknown"


def test_system_profiler_current_network_only() -> None:
    [link] = macos.parse_system_profiler_wifi(data("macos_system_profiler_airport_open.txt"))
    assert (link.interface, link.security) == ("en0", "open")  # not the WPA2 neighbour listed after it
    [home] = macos.parse_system_profiler_wifi(data("macos_system_profiler_airport_wpa3.txt"))
    assert home.security == "wpa3"


def test_fdesetup_and_firewall() -> None:
    assert macos.parse_fdesetup(data("macos_fdesetup_on.txt")).state == "ok"
    assert macos.parse_fdesetup(data("macos_fdesetup_off.txt")).state == "bad"
    assert macos.parse_fdesetup(data("macos_fdesetup_progress.txt")).state == "bad"
    assert macos.parse_socketfilterfw(data("macos_socketfilterfw_on.txt")).state == "ok"
    assert macos.parse_socketfilterfw(data("macos_socketfilterfw_off.txt")).state == "bad"


def test_macos_lock_timeout() -> None:
    pmset = data("macos_pmset_g.txt")
    lock = macos.macos_lock_timeout(data("macos_sysadminctl_delay300.txt"), "1200", pmset)
    assert lock.seconds == 600 + 300  # display sleeps after 10 min, password 300 s later
    assert macos.macos_lock_timeout(data("macos_sysadminctl_immediate.txt"), "300", pmset).seconds == 300
    assert macos.macos_lock_timeout(data("macos_sysadminctl_off.txt"), "300", pmset).seconds is None
    assert (
        macos.macos_lock_timeout(data("macos_sysadminctl_immediate.txt"), "0", "displaysleep 0").seconds
        is None
    )


@pytest.mark.parametrize(
    ("enabled", "auth", "cipher", "expected"),
    [
        (False, windows.DOT11_AUTH_80211_OPEN, windows.DOT11_CIPHER_NONE, "open"),
        (True, windows.DOT11_AUTH_80211_OPEN, windows.DOT11_CIPHER_WEP40, "wep"),
        (True, windows.DOT11_AUTH_80211_SHARED_KEY, windows.DOT11_CIPHER_WEP104, "wep"),
        (True, windows.DOT11_AUTH_RSNA_PSK, 0x04, "wpa2"),  # CCMP
        (True, windows.DOT11_AUTH_WPA3_SAE, 0x04, "wpa3"),
        (True, windows.DOT11_AUTH_RSNA, 0x04, "enterprise"),
        (True, windows.DOT11_AUTH_OWE, 0x08, "owe"),
        (True, windows.DOT11_AUTH_WPA_PSK, 0x02, "wpa"),  # TKIP
        (True, 0x80000001, 0x04, "unknown"),  # an IHV-defined algorithm
    ],
)
def test_wlan_api_security_attributes(enabled: bool, auth: int, cipher: int, expected: str) -> None:
    assert windows.dot11_security(enabled, auth, cipher) == expected
