"""Shared vocabulary of the posture checks (SPEC.md, "Posture"; issue 5).

A check is a pure evaluator: ``facts from a HostProbe + policy section -> list[CheckResult]``. Everything that
touches the OS lives in one backend per OS (agent/platform/posture_linux.py, posture_windows.py,
posture_macos.py) behind :class:`HostProbe`; each backend keeps its text/JSON parsers as pure module-level
functions so they are tested on captured outputs. Backends return the frozen dataclasses below, never library
objects, and translate OS failures once, at their boundary, into :class:`ProbeUnavailable` ("not determinable
here" -> ``skip``) or :class:`ProbeError` (it should have worked -> ``error``).
"""

from __future__ import annotations

import logging
import socket
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from agent.i18n import Translator
from core.errors import MamoriError
from policy.model import LocalText, Mode

logger = logging.getLogger(__name__)

Status = Literal["pass", "fail", "error", "skip"]
STATUSES: tuple[str, ...] = ("pass", "fail", "error", "skip")


class PostureError(MamoriError):
    """Base of posture failures."""


class ProbeUnavailable(PostureError):
    """This OS/machine does not let us determine the fact (tool absent, API missing, no permission)."""


class ProbeError(PostureError):
    """Determining the fact should have worked but failed (tool crashed, unparsable output, timeout)."""


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one posture check, with its ja/en detail and remediation.

    ``remediation_key`` is the i18n key of the fix message; enforcement collects these keys so that the cover
    over customer-data windows can show the fix in the worker's language (policy ``[messages]`` may override).
    """

    id: str
    status: Status
    mode: Mode
    detail: LocalText
    remediation: LocalText | None = None
    remediation_key: str | None = None

    def to_json(self, language: str) -> dict[str, str]:
        """The SPEC.md ``mamori agent check --json`` shape of one check."""
        return {"id": self.id, "status": self.status, "mode": self.mode, "detail": self.detail.get(language)}


def text(key: str, translator: Translator | None = None, **params: object) -> LocalText:
    """A catalog message in both languages."""
    both = (translator or Translator("en")).both(key, **params)
    return LocalText(ja=both["ja"], en=both["en"])


def result(
    check_id: str,
    status: Status,
    mode: Mode,
    detail_key: str,
    *,
    remediation_key: str | None = None,
    translator: Translator | None = None,
    **params: object,
) -> CheckResult:
    """Build a CheckResult from catalog keys; a passing or skipped check carries no remediation."""
    fix = remediation_key if status in ("fail", "error") else None
    return CheckResult(
        id=check_id,
        status=status,
        mode=mode,
        detail=text(detail_key, translator, **params),
        remediation=text(fix, translator, **params) if fix else None,
        remediation_key=fix,
    )


def probe_failed(check_id: str, mode: Mode, err: Exception, translator: Translator | None) -> CheckResult:
    """The result of a check whose probe raised: "skip" when this OS cannot tell (ProbeUnavailable), else
    "error" (which enforcement.on_check_error decides about)."""
    if isinstance(err, ProbeUnavailable):
        return result(check_id, "skip", mode, "posture.skip", translator=translator, reason=str(err))
    return result(
        check_id,
        "error",
        mode,
        "posture.error",
        remediation_key="posture.remedy.check_error",
        translator=translator,
        reason=str(err),
    )


# ---------------------------------------------------------------------------------------------------- facts


InterfaceKind = Literal[
    "tun",
    "tap",
    "wireguard",
    "ppp",
    "ovpn-dco",
    "utun",
    "ipsec",
    "ethernet",
    "wifi",
    "loopback",
    "virtual",
    "other",
]
TUNNEL_KINDS: frozenset[str] = frozenset({"tun", "tap", "wireguard", "ppp", "ovpn-dco", "utun", "ipsec"})


@dataclass(frozen=True)
class NetInterface:
    """A network interface as the OS reports it."""

    name: str
    up: bool
    kind: InterfaceKind = "other"
    description: str = (
        ""  # Windows adapter description ("WireGuard Tunnel", "TAP-Windows Adapter V9"); "" elsewhere
    )
    addresses: tuple[str, ...] = ()


WifiSecurity = Literal["open", "wep", "wpa", "wpa2", "wpa3", "enterprise", "owe", "unknown"]
UNTRUSTED_WIFI: frozenset[str] = frozenset({"open", "wep"})


@dataclass(frozen=True)
class WifiLink:
    """The Wi-Fi network an interface is associated with. The SSID never leaves the PC (it can locate a home)."""

    interface: str
    security: WifiSecurity
    ssid: str = ""


DeviceState = Literal["ok", "bad", "unknown"]


@dataclass(frozen=True)
class DeviceFact:
    """One device-posture fact. ``reason`` is short technical text (e.g. "FileVault is Off"), shown as is."""

    state: DeviceState
    reason: str


@dataclass(frozen=True)
class LockTimeout:
    """The effective OS screen-lock timeout; ``seconds is None`` means the screen never locks by itself."""

    seconds: float | None
    reason: str


class HostProbe(Protocol):
    """Everything the posture checks need from the OS. Methods raise ProbeUnavailable / ProbeError only."""

    @property
    def name(self) -> str: ...

    def interfaces(self) -> list[NetInterface]: ...

    def route_interface(self, address: str) -> str | None:
        """The interface the OS would use to reach ``address`` (no packet is sent); None when unroutable."""
        ...

    def resolve(self, name: str) -> list[str]: ...

    def wifi(self) -> list[WifiLink]:
        """Associated Wi-Fi links (empty when not on Wi-Fi)."""
        ...

    def disk_encryption(self) -> DeviceFact: ...

    def firewall(self) -> DeviceFact: ...

    def screen_lock(self) -> LockTimeout: ...


@dataclass(frozen=True)
class Completed:
    stdout: str
    stderr: str
    returncode: int


def run(
    argv: Sequence[str],
    *,
    timeout: float = 10.0,
    ok_codes: tuple[int, ...] = (0,),
    env: dict[str, str] | None = None,
) -> Completed:
    """Run an OS tool for a backend; converts failures once into ProbeUnavailable / ProbeError."""
    try:
        proc = subprocess.run(
            list(argv), capture_output=True, timeout=timeout, check=False, env=env, stdin=subprocess.DEVNULL
        )
    except FileNotFoundError as err:
        raise ProbeUnavailable(f"{argv[0]} is not installed") from err
    except PermissionError as err:
        raise ProbeUnavailable(f"{argv[0]}: permission denied") from err
    except subprocess.TimeoutExpired as err:
        raise ProbeError(f"{argv[0]} did not answer within {timeout:g} s") from err
    out = _decode(proc.stdout)
    errtext = _decode(proc.stderr)
    if proc.returncode not in ok_codes:
        first = (errtext.strip() or out.strip()).splitlines()[:1]
        raise ProbeError(f"{argv[0]} exited with {proc.returncode}: {first[0] if first else 'no output'}")
    return Completed(out, errtext, proc.returncode)


def _decode(data: bytes) -> str:
    """Tool output as text: UTF-8 first; Windows tools in a Japanese locale may answer in CP932."""
    for encoding in ("utf-8", "cp932"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return data.decode("utf-8", errors="replace")


def resolve_name(name: str) -> list[str]:
    """Addresses of ``name`` through the OS resolver (the corporate DNS when the VPN pushes it)."""
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return []
    except OSError as err:
        raise ProbeError(f"resolving {name} failed: {err}") from err
    return sorted({str(info[4][0]) for info in infos})


@dataclass(frozen=True)
class Unsupported:
    """A HostProbe for an OS Mamori has no backend for: every fact is 'not determinable here'."""

    name: str = "unsupported"
    reason: str = "no posture backend for this OS"
    notes: tuple[str, ...] = field(default_factory=tuple)

    def interfaces(self) -> list[NetInterface]:
        raise ProbeUnavailable(self.reason)

    def route_interface(self, address: str) -> str | None:
        raise ProbeUnavailable(self.reason)

    def resolve(self, name: str) -> list[str]:
        raise ProbeUnavailable(self.reason)

    def wifi(self) -> list[WifiLink]:
        raise ProbeUnavailable(self.reason)

    def disk_encryption(self) -> DeviceFact:
        raise ProbeUnavailable(self.reason)

    def firewall(self) -> DeviceFact:
        raise ProbeUnavailable(self.reason)

    def screen_lock(self) -> LockTimeout:
        raise ProbeUnavailable(self.reason)
