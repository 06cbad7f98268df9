"""Pure: turn the runtime's status dictionary into what the tray shows (state, tooltip, status lines, actions).

The runtime's ``status()`` is a plain dict so that it can cross the control socket unchanged
(``mamori agent status --json``). This module reads it tolerantly: a missing key means "unknown", never a crash,
because the tray must keep showing *something* while parts of the agent start or fail. Keys read::

    presence:      {"stage": "active"|"warn"|"protect"|"lock", "seconds_left": float}   (or just the stage)
    cover_reasons: ["away"|"step_away"|"share"|"posture"|"ack", ...]
    paused_until:  ISO 8601 string or null         (or "paused": bool)
    checks:        [{"id", "status": "pass"|"fail"|"error"|"skip", "mode", "enforcement": "none"|"warn"|"block"}]
                   (or posture: {"checks": [...]})
    capabilities:  {"window_list": bool, "cover": bool, "lock": bool, "idle": bool, ...}
    degraded:      ["capability", ...]              (reported degraded; added to the missing capabilities)
    notifications: {"available": bool}              (agent.ui.wiring; false adds "notifications")
    policy:        {"id", "version", "ack_required": bool, "acknowledged": bool, "title"?} or null
    ack:           {"pending": bool, ...} (agent.ui.ack.AckFlow.status)
    worker:        {"allow_pause": bool, "pause_max": seconds, "allow_quit": bool}
    onlooker:      {"running": bool, "mode": "report"|"cover", ...} (agent.onlooker.guard.OnlookerGuard.status)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agent.ui.icons import TrayState

Translate = Callable[..., str]

# The cover states of ``status.cover_state`` (agent/protection.py, honest_cover_state), each with its text.
COVER_STATES = (
    "covered", "screen", "nothing_to_cover", "no_rules", "locked", "lock_instead", "unprotected", "not_drawn",
)  # fmt: skip
# Capabilities whose absence makes protection weaker (shown as "degraded").
ESSENTIAL_CAPABILITIES = ("idle", "window_list", "cover", "lock")


@dataclass(frozen=True)
class Permissions:
    allow_pause: bool = False
    pause_max_minutes: int = 0
    allow_quit: bool = False


@dataclass(frozen=True)
class StatusView:
    state: TrayState
    tooltip: str
    lines: tuple[str, ...]  # presence, policy, checks, capabilities: one line each, in the worker's language
    permissions: Permissions
    paused: bool
    ack_needed: bool
    policy_id: str | None
    policy_version: int | None


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _stage(status: Mapping[str, Any]) -> tuple[str, float | None]:
    presence = status.get("presence")
    if isinstance(presence, str):
        return presence, None
    p = _mapping(presence)
    left = p.get("seconds_left")
    return str(p.get("stage", "unknown")), float(left) if isinstance(left, int | float) else None


def _checks(status: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    checks = status.get("checks")
    if checks is None:
        checks = _mapping(status.get("posture")).get("checks")
    if not isinstance(checks, Sequence) or isinstance(checks, str):
        return []
    return [c for c in checks if isinstance(c, Mapping)]


def _failing(check: Mapping[str, Any]) -> bool:
    return check.get("status") in ("fail", "error")


def missing_capabilities(status: Mapping[str, Any]) -> list[str]:
    """Essential capabilities this machine lacks plus those the agent reported degraded, without duplicates."""
    out: list[str] = []
    caps = status.get("capabilities")
    if isinstance(caps, Mapping):
        out += [
            name for name, ok in caps.items() if not ok and name in (*ESSENTIAL_CAPABILITIES, "tray_menu")
        ]
    degraded = status.get("degraded")
    if isinstance(degraded, Sequence) and not isinstance(degraded, str):
        out += [str(d) for d in degraded if str(d) not in out]
    if _mapping(status.get("notifications")).get("available") is False and "notifications" not in out:
        out.append("notifications")
    return out


def is_paused(status: Mapping[str, Any], now: datetime | None = None) -> bool:
    until = status.get("paused_until")
    if isinstance(until, str) and until:
        if now is None:
            return True
        try:
            return datetime.fromisoformat(until) > now
        except ValueError:
            return True
    return bool(status.get("paused", False))


def tray_state(status: Mapping[str, Any], now: datetime | None = None) -> TrayState:
    """One state for the icon. Priority: paused > blocked > covered > warning > degraded > protected.

    Posture checks that have not finished their first run count as a warning: nothing has been checked yet.

    Paused wins because it is the state the worker chose and must not forget; blocked beats covered because
    it needs the worker to act (connect the VPN), while covered only needs them to come back.
    """
    if is_paused(status, now):
        return TrayState.PAUSED
    checks = _checks(status)
    if any(_failing(c) and c.get("enforcement") == "block" for c in checks):
        return TrayState.BLOCKED
    stage, _ = _stage(status)
    reasons = status.get("cover_reasons") or []
    cover = _mapping(status.get("cover_state")).get("state")
    if cover in ("lock_instead", "unprotected", "not_drawn"):
        return TrayState.DEGRADED  # nothing is covered here: the icon must not say "covered"
    # A rule that matches no open window covers nothing: the icon says what the screen shows, not "covered".
    nothing_drawn = cover in ("nothing_to_cover", "no_rules")
    if not nothing_drawn and (
        stage in ("protect", "lock") or (isinstance(reasons, Sequence) and len(reasons) > 0)
    ):
        return TrayState.COVERED
    if stage == "warn" or any(_failing(c) and c.get("enforcement") == "warn" for c in checks):
        return TrayState.WARNING
    if _posture(status).get("pending"):
        return TrayState.WARNING  # the checks have not finished their first run: not yet "protected"
    if missing_capabilities(status):
        return TrayState.DEGRADED
    return TrayState.PROTECTED


def _local_time(iso: str) -> str:
    """HH:MM on the worker's clock: the runtime reports UTC, a worker in Tokyo reads local time."""
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%H:%M")
    except ValueError:
        return "?"


def permissions(status: Mapping[str, Any]) -> Permissions:
    worker = _mapping(status.get("worker"))
    pause_max = worker.get("pause_max", 0)
    minutes = int(pause_max // 60) if isinstance(pause_max, int | float) else 0
    return Permissions(
        allow_pause=bool(worker.get("allow_pause", False)) and minutes > 0,
        pause_max_minutes=minutes,
        allow_quit=bool(worker.get("allow_quit", False)),
    )


def _lookup(t: Translate, keys: Sequence[str]) -> str | None:
    for key in keys:
        try:
            return t(key)
        except KeyError:
            continue
    return None


def _check_keys(prefix: str, check_id: str) -> list[str]:
    """``prefix.<id>``, then of its last part (device.disk_encryption -> disk_encryption), then of its family
    (tls.0, vpn.routes -> tls, vpn)."""
    base = check_id.split(":", maxsplit=1)[0]
    parts = base.split(".")
    return [f"{prefix}.{base}", f"{prefix}.{parts[-1]}", f"{prefix}.{parts[0]}"]


def check_name(t: Translate, check_id: str) -> str:
    """A check's display name, with the endpoint it probed: "tls:vpn.example.com:443" ->
    "Encrypted connections (TLS) vpn.example.com:443"; an unknown id is shown as it is."""
    name = _lookup(t, _check_keys("check", check_id))
    if name is None:
        return check_id
    _, _, endpoint = check_id.partition(":")
    return f"{name} {endpoint}" if endpoint else name


def remedy(t: Translate, check_id: str) -> str:
    return _lookup(t, [*(_check_keys("remedy", check_id)), "remedy.generic"]) or ""


def _posture(status: Mapping[str, Any]) -> Mapping[str, Any]:
    return _mapping(status.get("posture"))


def build_view(t: Translate, status: Mapping[str, Any], now: datetime | None = None) -> StatusView:
    state = tray_state(status, now)
    lines: list[str] = []
    stage, left = _stage(status)
    if is_paused(status, now):
        until = status.get("paused_until")
        when = _local_time(until) if isinstance(until, str) else "?"
        lines.append(t("status.paused_until", until=when))
    if stage == "warn" and left is not None:
        lines.append(t("status.presence.warn_countdown", seconds=max(0, round(left))))
    elif stage in ("active", "warn", "protect", "lock"):
        lines.append(t(f"status.presence.{stage}"))
    else:
        lines.append(t("status.presence.unknown"))
    reasons = status.get("cover_reasons") or []
    if isinstance(reasons, Sequence) and not isinstance(reasons, str) and reasons:
        names = []
        # The runtime lists "away" and "step_away" for a step-away; the worker needs only the specific one.
        shown = [r for r in reasons if not (r == "away" and "step_away" in reasons)]
        for r in shown:
            try:
                names.append(t(f"reason.{r}"))
            except KeyError:
                names.append(str(r))
        lines.append(t("status.cover_reason", reasons=", ".join(names)))
        # What is really covered (issue 11): a reason whose rules match nothing covers nothing.
        cover_state = _mapping(status.get("cover_state"))
        state_name = cover_state.get("state")
        if state_name in COVER_STATES:
            count = _mapping(status.get("covered")).get("count", 0)
            lines.append(t(f"status.covered.{state_name}", count=count))
    policy = _mapping(status.get("policy"))
    ack = _mapping(status.get("ack"))  # AckFlow.status(), when the runtime registers it
    ack_needed = bool(ack.get("pending")) or (
        bool(policy.get("ack_required")) and not bool(policy.get("acknowledged", False))
    )
    if policy.get("id"):
        name = policy.get("title") or policy["id"]  # the policy's display title when the tray knows it
        lines.append(t("status.policy", id=name, version=policy.get("version", "?")))
        if ack_needed:
            lines.append(t("status.policy_ack_needed"))
    else:
        lines.append(t("status.policy_none"))
    checks = _checks(status)
    if not checks:
        lines.append(t("status.no_checks"))
    posture = _posture(status)
    block_at = posture.get("block_at")
    if isinstance(block_at, str) and block_at and not posture.get("block"):
        # A grace period: say which check will cover the windows, and when (the state alone said "soon").
        failing = [str(w) for w in posture.get("warnings") or [] if isinstance(w, str)]
        failing = failing or [str(c.get("id")) for c in checks if _failing(c) and c.get("mode") == "block"]
        grace_names = ", ".join(dict.fromkeys(check_name(t, f) for f in failing)) or "?"
        lines.append(t("status.posture.grace", names=grace_names, time=_local_time(block_at)))
    for c in checks:
        result = str(c.get("status", "error"))
        if result not in ("pass", "fail", "error", "skip"):
            result = "error"
        check_id = str(c.get("id", "?"))
        lines.append(t(f"status.check.{result}", name=check_name(t, check_id)))
        if result in ("fail", "error") and c.get("mode") != "off":
            lines.append(t("status.check.fix", fix=remedy(t, check_id)))
    reporting = _mapping(status.get("reporting"))
    if reporting.get("auth_failed"):  # the server refuses the device token (revoked on the server)
        lines.append(t("status.reporting.revoked", pending=reporting.get("pending", "?")))
    onlooker = _mapping(status.get("onlooker"))
    if onlooker.get("running"):  # the camera is on: the worker always sees it, and why (docs/onlooker.md)
        key = "status.onlooker.cover" if onlooker.get("mode") == "cover" else "status.onlooker.report"
        lines.append(t(key))
    for cap in missing_capabilities(status):
        try:
            name = t(f"doctor.cap.{cap}")
        except KeyError:
            name = cap
        lines.append(t("status.capability.missing", name=name))
    version = policy.get("version")
    # One line once: two probes of one endpoint, or a check listed by two providers, must not repeat.
    lines = list(dict.fromkeys(lines))
    return StatusView(
        state=state,
        tooltip=f"{t('product.name')}: {t(f'tray.state.{state.value}')}",
        lines=tuple(lines),
        permissions=permissions(status),
        paused=is_paused(status, now),
        ack_needed=ack_needed,
        policy_id=str(policy["id"]) if policy.get("id") else None,
        policy_version=int(version) if isinstance(version, int) else None,
    )
