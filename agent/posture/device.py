"""Device posture (policy ``[device]``): disk encryption, host firewall, screen-lock timeout.

Where an OS does not let an unprivileged agent know (a container root, no firewall front end readable, a
desktop without a known lock setting), the check is ``skip`` with the reason: never a guessed pass.
"""

from __future__ import annotations

from collections.abc import Callable

from agent.i18n import Translator
from agent.posture.base import (
    CheckResult,
    DeviceFact,
    HostProbe,
    PostureError,
    probe_failed,
    result,
)
from policy.model import Device, Mode, format_duration


def _fact_check(
    check_id: str, mode: Mode, probe: Callable[[], DeviceFact], key: str, t: Translator | None
) -> CheckResult:
    try:
        fact = probe()
    except PostureError as err:
        return probe_failed(check_id, mode, err, t)
    if fact.state == "ok":
        return result(check_id, "pass", mode, f"posture.{key}.ok", translator=t, reason=fact.reason)
    if fact.state == "bad":
        return result(
            check_id,
            "fail",
            mode,
            f"posture.{key}.bad",
            remediation_key=f"posture.remedy.{key}",
            translator=t,
            reason=fact.reason,
        )
    return result(check_id, "skip", mode, "posture.skip", translator=t, reason=fact.reason)


def check_disk_encryption(device: Device, host: HostProbe, t: Translator | None = None) -> CheckResult:
    return _fact_check("device.disk_encryption", device.disk_encryption.mode, host.disk_encryption, "disk", t)


def check_firewall(device: Device, host: HostProbe, t: Translator | None = None) -> CheckResult:
    return _fact_check("device.firewall", device.firewall.mode, host.firewall, "firewall", t)


def check_screen_lock(device: Device, host: HostProbe, t: Translator | None = None) -> CheckResult:
    check_id = "device.screen_lock"
    mode = device.screen_lock.mode
    limit = device.screen_lock.max_timeout
    try:
        lock = host.screen_lock()
    except PostureError as err:
        return probe_failed(check_id, mode, err, t)
    if lock.seconds is None:
        return result(
            check_id,
            "fail",
            mode,
            "posture.lock.never",
            remediation_key="posture.remedy.lock",
            translator=t,
            reason=lock.reason,
            limit=format_duration(limit),
        )
    if lock.seconds > limit:
        return result(
            check_id,
            "fail",
            mode,
            "posture.lock.too_long",
            remediation_key="posture.remedy.lock",
            translator=t,
            reason=lock.reason,
            actual=format_duration(lock.seconds),
            limit=format_duration(limit),
        )
    return result(
        check_id,
        "pass",
        mode,
        "posture.lock.ok",
        translator=t,
        actual=format_duration(lock.seconds),
        limit=format_duration(limit),
    )
