"""The Linux backend on this machine: every device/Wi-Fi fact is either determined or honestly skipped."""

from __future__ import annotations

import sys

import pytest

from agent.posture.device import check_disk_encryption, check_firewall, check_screen_lock
from agent.posture.wifi import check_wifi
from policy.model import Device, Wifi

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the live Linux backend needs Linux")


def test_live_device_and_wifi_checks_never_error_here() -> None:
    from agent.platform.posture_linux import LinuxHost

    host = LinuxHost()
    results = [
        check_disk_encryption(Device(), host),
        check_firewall(Device(), host),
        check_screen_lock(Device(), host),
        check_wifi(Wifi(), host, vpn_up=False),
    ]
    for r in results:
        assert r.status in ("pass", "fail", "skip"), (r.id, r.detail.en)
        assert r.detail.en and r.detail.ja
        if r.status == "skip":
            assert r.detail.en.startswith("Not determinable here:")


def test_live_interfaces_and_route_lookup() -> None:
    from agent.platform.posture_linux import LinuxHost

    host = LinuxHost()
    names = {n.name for n in host.interfaces()}
    assert "lo" in names
    assert host.route_interface("127.0.0.1") == "lo"
