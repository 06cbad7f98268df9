"""Wi-Fi security posture (policy ``[network.wifi]``): open or WEP networks are untrusted.

``untrusted = "allow"`` reports them and passes, ``"require_vpn"`` passes only while a VPN is up, ``"block"``
fails whatever the VPN does. The SSID stays on the PC: the detail names the interface and security only.
"""

from __future__ import annotations

from agent.i18n import Translator
from agent.posture.base import (
    UNTRUSTED_WIFI,
    CheckResult,
    HostProbe,
    PostureError,
    probe_failed,
    result,
)
from policy.model import Wifi

CHECK_ID = "wifi"


def check_wifi(
    wifi: Wifi, host: HostProbe, vpn_up: bool, translator: Translator | None = None
) -> CheckResult:
    t = translator
    mode = wifi.mode
    try:
        links = host.wifi()
    except PostureError as err:
        return probe_failed(CHECK_ID, mode, err, t)
    if not links:
        return result(CHECK_ID, "pass", mode, "posture.wifi.none", translator=t)
    untrusted = [link for link in links if link.security in UNTRUSTED_WIFI]
    if untrusted:
        names = ", ".join(f"{link.interface} ({link.security.upper()})" for link in untrusted)
        if wifi.untrusted == "allow":
            return result(CHECK_ID, "pass", mode, "posture.wifi.untrusted_allowed", translator=t, links=names)
        if wifi.untrusted == "require_vpn":
            if vpn_up:
                return result(CHECK_ID, "pass", mode, "posture.wifi.untrusted_vpn", translator=t, links=names)
            return result(
                CHECK_ID,
                "fail",
                mode,
                "posture.wifi.untrusted_no_vpn",
                remediation_key="posture.remedy.wifi.vpn",
                translator=t,
                links=names,
            )
        return result(
            CHECK_ID,
            "fail",
            mode,
            "posture.wifi.untrusted_blocked",
            remediation_key="posture.remedy.wifi.block",
            translator=t,
            links=names,
        )
    unknown = [link for link in links if link.security == "unknown"]
    if unknown:
        return result(
            CHECK_ID,
            "skip",
            mode,
            "posture.wifi.unknown",
            translator=t,
            links=", ".join(link.interface for link in unknown),
        )
    return result(
        CHECK_ID,
        "pass",
        mode,
        "posture.wifi.secure",
        translator=t,
        links=", ".join(f"{link.interface} ({link.security.upper()})" for link in links),
    )
