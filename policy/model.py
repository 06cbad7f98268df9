"""The policy model: one frozen dataclass per section of the policy file (SPEC.md, "Policy").

This module is the single source of truth for field names, types, defaults and documentation: the JSON
Schema (``policy.schema``) and docs/policy-reference.md are generated from these dataclasses. Each field's
``metadata`` carries ``doc`` (English description) and optional schema hints (``enum``, ``pattern``,
``minimum``, ``example``).

Durations are kept as seconds (float); regular expressions are compiled at load time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

Mode = Literal["off", "report", "warn", "block"]
MODES: tuple[str, ...] = ("off", "report", "warn", "block")


def doc(text: str, **hints: Any) -> dict[str, Any]:
    """Field metadata: the reference documentation text plus JSON Schema hints."""
    return {"doc": text, **hints}


# One pattern for the parser and the JSON Schema: "90s", "5m", "1h30m", "1h 30m"; at least one part.
DURATION_PATTERN = r"^(?=.*\d)\s*(\d+h)?\s*(\d+m)?\s*(\d+s)?\s*$"
_DURATION_RE = re.compile(DURATION_PATTERN)


def parse_duration(text: str) -> float:
    """'90s' -> 90.0, '5m' -> 300.0, '1h30m' -> 5400.0. Raises ValueError with an actionable message."""
    match = _DURATION_RE.match(text)
    if not text.strip() or match is None or not any(match.groups()):
        raise ValueError(f'{text!r} is not a duration; write e.g. "90s", "5m" or "1h30m"')
    hours, minutes, seconds = (int(g[:-1]) if g else 0 for g in match.groups())
    return float(hours * 3600 + minutes * 60 + seconds)


def format_duration(seconds: float) -> str:
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{secs}s" if secs else ""]
    return "".join(parts) or "0s"


@dataclass(frozen=True)
class LocalText:
    ja: str = field(default="", metadata=doc("Japanese text.", example="顧客情報の取り扱いに同意します。"))
    en: str = field(
        default="", metadata=doc("English text.", example="I agree to handle customer data as described.")
    )

    def get(self, language: str) -> str:
        return self.ja if language == "ja" and self.ja else self.en or self.ja


@dataclass(frozen=True)
class Presence:
    warn_after: float = field(
        default=240.0, metadata=doc("Idle time before the countdown warning is shown.", duration=True)
    )
    protect_after: float = field(
        default=300.0, metadata=doc("Idle time before customer-data windows are covered.", duration=True)
    )
    lock_after: float = field(
        default=600.0, metadata=doc("Idle time before the session is locked.", duration=True)
    )
    cover: Literal["blur", "opaque"] = field(
        default="blur", metadata=doc("How a customer-data window is covered.", enum=["blur", "opaque"])
    )
    reveal: Literal["activity", "click"] = field(
        default="activity",
        metadata=doc(
            "What uncovers windows after the worker returns: any input, or a click on the cover.",
            enum=["activity", "click"],
        ),
    )
    lock_before_sleep: bool = field(
        default=True, metadata=doc("Lock the session before the machine sleeps, where the OS allows it.")
    )
    clipboard: Literal["notice", "clear", "off"] = field(
        default="notice",
        metadata=doc(
            "While customer-data windows are covered for being away, a screen share or a blocking check: "
            "clipboard and primary-selection content copied from a customer-data app is replaced by a ja/en "
            "notice, emptied, or left alone (off).",
            enum=["notice", "clear", "off"],
        ),
    )
    inhibit_lock_when: tuple[str, ...] = field(
        default=("fullscreen", "call"),
        metadata=doc(
            "Situations that may delay the lock stage (never the cover).",
            items_enum=["fullscreen", "call"],
        ),
    )
    max_inhibit: float = field(
        default=3600.0,
        metadata=doc("Longest time an inhibitor may delay the lock after lock_after.", duration=True),
    )
    hotkey: str = field(
        default="<ctrl>+<alt>+m",
        metadata=doc(
            "Global hotkey for 'step away now' (pynput syntax); empty disables it.",
            example="<ctrl>+<alt>+m",
            pattern=r"^$|^(<[a-z0-9_]+>|[^+<>\s])(\+(<[a-z0-9_]+>|[^+<>\s]))*$",
            pattern_hint="write keys joined by '+', modifiers in angle brackets, e.g. \"<ctrl>+<alt>+m\"",
        ),
    )


@dataclass(frozen=True)
class Onlooker:
    mode: Literal["off", "report", "cover"] = field(
        default="off",
        metadata=doc(
            "Onlooker guard (docs/onlooker.md): off; report (events only); or cover (customer-data windows "
            "are covered while more faces than allowed are seen). Uses the camera set by agent.toml `camera`; "
            "faces are counted on the PC and no image is kept or sent.",
            enum=["off", "report", "cover"],
        ),
    )
    faces_allowed: int = field(
        default=1,
        metadata=doc(
            "Faces the camera may see without counting as an onlooker (the worker is one).", minimum=0
        ),
    )
    frame_rate: int = field(
        default=2,
        metadata=doc(
            "Camera frames examined per second (10 per second while a possible onlooker is being confirmed).",
            minimum=1,
            maximum=10,
        ),
    )
    confirm_ms: int = field(
        default=200,
        metadata=doc(
            "Milliseconds more faces than allowed must be seen, frame after frame, before they count (at most one "
            "frame interval plus this plus ~0.1 s passes between a second face and the cover).",
            minimum=0,
            maximum=5000,
        ),
    )
    clear_after: float = field(
        default=2.0,
        metadata=doc(
            "How long no more than the allowed faces must be seen before covers are lifted.", duration=True
        ),
    )


# Built-in app families a [[customer_apps]] rule may name; agent/decide/match.py holds their executables.
APP_FAMILIES = ("browsers", "spreadsheets")


@dataclass(frozen=True)
class CustomerApp:
    name: str = field(
        metadata=doc(
            "Rule name; the only thing reported about a matched window.",
            example="顧客台帳 (Excel)",
            minLength=1,
        )
    )
    processes: tuple[str, ...] = field(
        default=(),
        metadata=doc(
            "Process names or globs (case-insensitive, '.exe' optional). Empty matches any process.",
            example=["chrome", "msedge.exe", "firefox*"],
        ),
    )
    families: tuple[str, ...] = field(
        default=(),
        metadata=doc(
            "Built-in app families whose real executable names on every OS count as listed in processes "
            "(browsers: Chrome, Chromium, Edge, Firefox, Brave, Vivaldi, Opera, Safari; spreadsheets: "
            "Excel, LibreOffice Calc, Numbers).",
            example=["browsers"],
            items_enum=list(APP_FAMILIES),
        ),
    )
    title: re.Pattern[str] | None = field(
        default=None,
        metadata=doc(
            "Regular expression searched in the window title (Unicode, case-insensitive).",
            example="顧客台帳|customer list",
            regex=True,
        ),
    )


@dataclass(frozen=True)
class ShareSignature:
    app: str = field(
        metadata=doc(
            "Name of the sharing/recording app reported in events.", example="AcmeRecorder", minLength=1
        )
    )
    processes: tuple[str, ...] = field(
        default=(), metadata=doc("Process names or globs that must be running.", example=["acmerec*"])
    )
    title: re.Pattern[str] | None = field(
        default=None, metadata=doc("Regular expression matching an indicator window's title.", regex=True)
    )
    wm_class: re.Pattern[str] | None = field(
        default=None, metadata=doc("Regular expression matching an indicator window's class.", regex=True)
    )


@dataclass(frozen=True)
class ScreenShare:
    protect: bool = field(default=True, metadata=doc("Cover customer-data windows while sharing/recording."))
    signatures: tuple[ShareSignature, ...] = field(
        default=(), metadata=doc("Extra detection signatures added to the built-in ones.")
    )


@dataclass(frozen=True)
class DnsCanary:
    name: str = field(
        metadata=doc(
            "Host name only resolvable through the corporate DNS.", example="canary.corp.example", minLength=1
        )
    )
    expect: tuple[str, ...] = field(
        default=(), metadata=doc("IP addresses it must resolve to (any one).", example=["10.0.0.53"])
    )


@dataclass(frozen=True)
class Vpn:
    mode: Mode = field(default="block", metadata=doc("Enforcement mode of the VPN check.", enum=list(MODES)))
    required_for_customer_apps: bool = field(
        default=True, metadata=doc("Customer-data windows may only be shown while the VPN is up.")
    )
    interfaces: tuple[str, ...] = field(
        default=("tun*", "tap*", "wg*", "ppp*", "utun*"),
        metadata=doc("Interface name globs that count as VPN."),
    )
    adapter_descriptions: tuple[str, ...] = field(
        default=(),
        metadata=doc(
            "Windows adapter description globs that count as VPN.", example=["WireGuard*", "TAP-Windows*"]
        ),
    )
    routes: tuple[str, ...] = field(
        default=(),
        metadata=doc(
            "CIDRs, IP addresses or host names whose route must go through the VPN interface.",
            example=["10.0.0.0/8", "crm.corp.example"],
            cidr=True,
        ),
    )
    full_tunnel: bool = field(default=False, metadata=doc("The default route must go through the VPN."))
    dns_canary: DnsCanary | None = field(default=None, metadata=doc("Optional DNS canary check."))


@dataclass(frozen=True)
class Wifi:
    untrusted: Literal["allow", "require_vpn", "block"] = field(
        default="require_vpn",
        metadata=doc("What an open or WEP Wi-Fi network means.", enum=["allow", "require_vpn", "block"]),
    )
    mode: Mode = field(default="warn", metadata=doc("Enforcement mode of the Wi-Fi check.", enum=list(MODES)))


@dataclass(frozen=True)
class TlsEndpoint:
    url: str = field(
        metadata=doc(
            "https:// URL of an endpoint that must offer good TLS.",
            pattern="^https://",
            pattern_hint='write the full https:// URL, e.g. "https://acme.my.salesforce.com/"',
            example="https://acme.my.salesforce.com/",
        )
    )
    min_version: Literal["1.2", "1.3"] = field(
        default="1.2", metadata=doc("Lowest acceptable TLS version.", enum=["1.2", "1.3"])
    )
    pins: tuple[str, ...] = field(
        default=(),
        metadata=doc(
            "SPKI SHA-256 pins (base64); any one must match a certificate in the chain.",
            example=["47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="],
        ),
    )
    ca: str | None = field(
        default=None,
        metadata=doc("PEM CA bundle path for inspecting proxies.", example="/etc/mamori/proxy-ca.pem"),
    )
    mode: Mode = field(default="block", metadata=doc("Enforcement mode of this probe.", enum=list(MODES)))


@dataclass(frozen=True)
class Plaintext:
    forbidden_ports: tuple[int, ...] = field(
        default=(21, 23, 80, 110, 143),
        metadata=doc(
            "Remote ports customer-app processes must not connect to.", items_minimum=1, items_maximum=65535
        ),
    )
    mode: Mode = field(default="warn", metadata=doc("Enforcement mode of the check.", enum=list(MODES)))


@dataclass(frozen=True)
class Network:
    vpn: Vpn = field(default_factory=Vpn, metadata=doc("VPN requirements."))
    wifi: Wifi = field(default_factory=Wifi, metadata=doc("Untrusted Wi-Fi handling."))
    tls: tuple[TlsEndpoint, ...] = field(default=(), metadata=doc("Endpoints whose TLS is probed."))
    plaintext: Plaintext = field(default_factory=Plaintext, metadata=doc("Plaintext connection check."))


@dataclass(frozen=True)
class DeviceCheck:
    mode: Mode = field(default="warn", metadata=doc("Enforcement mode of the check.", enum=list(MODES)))


@dataclass(frozen=True)
class ScreenLockCheck:
    mode: Mode = field(default="warn", metadata=doc("Enforcement mode of the check.", enum=list(MODES)))
    max_timeout: float = field(
        default=900.0, metadata=doc("Longest allowed OS screen-lock timeout.", duration=True)
    )


@dataclass(frozen=True)
class Device:
    disk_encryption: DeviceCheck = field(default_factory=DeviceCheck, metadata=doc("Full-disk encryption."))
    firewall: DeviceCheck = field(default_factory=DeviceCheck, metadata=doc("Host firewall enabled."))
    screen_lock: ScreenLockCheck = field(
        default_factory=ScreenLockCheck, metadata=doc("OS screen-lock timeout.")
    )


@dataclass(frozen=True)
class Enforcement:
    grace: float = field(
        default=600.0, metadata=doc("How long a 'block' check only warns before it blocks.", duration=True)
    )
    on_check_error: Literal["block", "allow"] = field(
        default="allow",
        metadata=doc("Whether a check that cannot be evaluated blocks.", enum=["block", "allow"]),
    )
    recheck: float = field(
        default=60.0, metadata=doc("Periodic re-evaluation interval.", duration=True, min_seconds=5)
    )


@dataclass(frozen=True)
class Reporting:
    heartbeat: float = field(
        default=300.0, metadata=doc("Heartbeat interval.", duration=True, min_seconds=10)
    )
    window_titles: Literal["none", "hashed"] = field(
        default="none",
        metadata=doc("Report no titles, or a keyed hash of matched titles.", enum=["none", "hashed"]),
    )
    outbox_max_events: int = field(
        default=100_000,
        metadata=doc("Most events kept locally while the server is unreachable.", minimum=100),
    )
    outbox_max_bytes: int = field(
        default=64 * 1024 * 1024, metadata=doc("Most bytes kept locally in the outbox.", minimum=65536)
    )


@dataclass(frozen=True)
class Acknowledgement:
    required: bool = field(default=False, metadata=doc("Each worker must acknowledge each new version."))
    text: LocalText = field(default_factory=LocalText, metadata=doc("The text shown, in ja and en."))
    cover_until_acknowledged: bool = field(
        default=True, metadata=doc("Cover customer-data windows until the worker acknowledges.")
    )


@dataclass(frozen=True)
class Worker:
    allow_pause: bool = field(default=False, metadata=doc("The worker may pause protection from the tray."))
    pause_max: float = field(default=900.0, metadata=doc("Longest pause.", duration=True))
    allow_quit: bool = field(default=False, metadata=doc("The tray offers Quit."))


MESSAGE_KEY_PATTERN = r"^[a-z0-9_]+(\.[a-z0-9_]+)*$"


@dataclass(frozen=True)
class Messages:
    ja: dict[str, str] = field(
        default_factory=dict,
        metadata=doc(
            "Message key -> Japanese text.",
            key_pattern=MESSAGE_KEY_PATTERN,
            example={"remedy.vpn": "会社の VPN に接続してください。"},
        ),
    )
    en: dict[str, str] = field(
        default_factory=dict,
        metadata=doc(
            "Message key -> English text.",
            key_pattern=MESSAGE_KEY_PATTERN,
            example={"remedy.vpn": "Connect to the company VPN."},
        ),
    )


@dataclass(frozen=True)
class Policy:
    schema: Literal[1] = field(metadata=doc("Policy format version; must be 1.", enum=[1]))
    id: str = field(
        metadata=doc(
            "Stable policy identifier.",
            pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$",
            pattern_hint="use 1-64 lowercase letters, digits, '.', '_' or '-', e.g. \"acme-standard\"",
            example="acme-standard",
        )
    )
    version: int = field(
        metadata=doc(
            "Policy version; each published version must be greater.",
            minimum=1,
            maximum=2**53 - 1,  # exact in JSON and in a 64-bit database column
        )
    )
    expires: datetime | None = field(
        default=None, metadata=doc("After this instant agents reject the policy (RFC 3339 with offset).")
    )
    title: LocalText = field(
        default_factory=LocalText,
        metadata=doc("The policy's name as workers read it, in ja and en (default: the id)."),
    )
    presence: Presence = field(default_factory=Presence, metadata=doc("Away detection and protection."))
    customer_apps: tuple[CustomerApp, ...] = field(
        default=(), metadata=doc("Rules that say which windows hold customer data.")
    )
    screen_share: ScreenShare = field(default_factory=ScreenShare, metadata=doc("Screen-share guard."))
    onlooker: Onlooker = field(
        default_factory=Onlooker, metadata=doc("On-device onlooker guard (camera, opt-in).")
    )
    network: Network = field(default_factory=Network, metadata=doc("Network posture."))
    device: Device = field(default_factory=Device, metadata=doc("Device posture."))
    enforcement: Enforcement = field(
        default_factory=Enforcement, metadata=doc("Warn-then-block enforcement.")
    )
    reporting: Reporting = field(default_factory=Reporting, metadata=doc("What the agent reports and when."))
    acknowledgement: Acknowledgement = field(
        default_factory=Acknowledgement, metadata=doc("Policy acknowledgement by each worker.")
    )
    worker: Worker = field(default_factory=Worker, metadata=doc("What the worker may do from the tray."))
    messages: Messages = field(default_factory=Messages, metadata=doc("Overrides of user-facing texts."))
