"""Alerts (server.toml ``[alerts]``; docs/server-api.md, "Alerts"): rules raised as events and check-ins
arrive and by a periodic sweep, delivered to signed webhooks and by e-mail from a durable queue.

Rules (each on or off, thresholds in server.toml):

* ``check_failing``: a posture check starts failing on a device (at once, one alert per device and check for
  each time it starts failing; a check that keeps failing across agent restarts raises no second one);
* ``block_long``: a check has blocked the customer apps for ``block_minutes`` (sweep);
* ``lock_failed``: the agent could not lock the session (at once);
* ``sequence_gap``: events are missing from a device's sequence (the gaps ingest records; sweep);
* ``device_silent``: a device not heard from for ``silent_minutes`` and not stopped cleanly (sweep);
* ``agent_stopped``: the agent stopped (its last check-in) while its policy does not allow quitting (at once).

Raising is keyed by cause (server/alert_store.py), so several server processes raise each alert once. Each
raised alert is queued for every channel in the same transaction; :class:`AlertService`, one thread per server
process like the forwarding service (whose delivery, backoff and dead-letter bookkeeping it reuses), sends it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import smtplib
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import orjson

from core.clock import Clock
from core.errors import MamoriError
from core.records import Kind
from server import alert_store, forward_store
from server.alert_store import Finding, NewAlert
from server.forward_store import Due
from server.forwarders import ForwarderConfig, ForwardingService, Outcome, Sender, webhook_signature
from server.forwarders import _default_retryable as default_retryable
from server.storage import AfterInsert, EventRow, Storage, ms

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from server.context import ServerContext
    from server.models import CheckinRequest
    from server.settings import Settings

logger = logging.getLogger(__name__)

RULES = ("check_failing", "block_long", "lock_failed", "sequence_gap", "device_silent", "agent_stopped")
CHANNEL_PREFIX = "alert:"  # outbox rows of alert channels, beside the forwarders' own in forward_outbox
LEASE_MS = 60_000  # a claimed alert is not sent by another process for this long (longer than one attempt)


class AlertConfigError(MamoriError):
    """The [alerts] table of server.toml is invalid."""


@dataclass(frozen=True)
class WebhookConfig:
    url: str
    secret: str
    name: str
    ca: str | None = None


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    sender: str  # server.toml "from"
    to: tuple[str, ...]
    port: int = 587
    starttls: bool = True
    username: str | None = None
    password_file: Path | None = None
    ca: str | None = None


@dataclass(frozen=True)
class AlertSettings:
    check_failing: bool = True
    lock_failed: bool = True
    sequence_gap: bool = True
    agent_stopped: bool = True
    block_minutes: float = 15.0  # 0 turns block_long off
    silent_minutes: float = 60.0  # 0 turns device_silent off
    sweep_seconds: float = (
        2.0  # how often the time-based rules are evaluated (alerts within 5 s of the cause)
    )
    max_attempts: int = 10_000  # per alert and channel; then a dead letter (backoff capped at max_backoff)
    max_backoff: float = 60.0
    timeout: float = 10.0
    webhooks: tuple[WebhookConfig, ...] = ()
    smtp: SmtpConfig | None = None

    def enabled(self, rule: str) -> bool:
        if rule == "block_long":
            return self.block_minutes > 0
        if rule == "device_silent":
            return self.silent_minutes > 0
        return bool(getattr(self, rule))

    def channels(self) -> list[str]:
        names = [CHANNEL_PREFIX + w.name for w in self.webhooks]
        return names + ([CHANNEL_PREFIX + "smtp"] if self.smtp is not None else [])

    def fingerprint(self) -> dict[str, Any]:
        """What an audit entry records of the settings (never a secret or a password)."""
        return {
            "rules": {r: self.enabled(r) for r in RULES},
            "block_minutes": self.block_minutes,
            "silent_minutes": self.silent_minutes,
            "webhooks": [
                {
                    "name": w.name,
                    "url": w.url,
                    "secret_sha256": hashlib.sha256(w.secret.encode()).hexdigest()[:16],
                }
                for w in self.webhooks
            ],
            "smtp": None
            if self.smtp is None
            else {
                "host": self.smtp.host,
                "port": self.smtp.port,
                "from": self.smtp.sender,
                "to": list(self.smtp.to),
            },
        }


def alert_settings(settings: Settings) -> AlertSettings:
    return settings.alerts


_BOOLS = ("check_failing", "lock_failed", "sequence_gap", "agent_stopped")
_NUMBERS = ("block_minutes", "silent_minutes", "sweep_seconds", "max_backoff", "timeout")
_SMTP_KEYS = frozenset({"host", "port", "starttls", "username", "password_file", "from", "to", "ca"})


def parse_alerts(raw: Any, where: str, base: Path) -> AlertSettings:
    """``[alerts]`` of server.toml -> settings; every problem is one line naming the key and the fix."""
    if not isinstance(raw, dict):
        raise AlertConfigError(f"{where}: alerts must be a table ([alerts])")
    known = set(_BOOLS) | set(_NUMBERS) | {"max_attempts", "webhooks", "smtp"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise AlertConfigError(f"{where}: unknown key(s) in [alerts]: {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for key in _BOOLS:
        if key in raw:
            if not isinstance(raw[key], bool):
                raise AlertConfigError(f"{where}: alerts.{key} must be true or false")
            values[key] = raw[key]
    for key in _NUMBERS:
        if key in raw:
            value = raw[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise AlertConfigError(f"{where}: alerts.{key} must be a number, 0 or more")
            values[key] = float(value)
    for key in ("sweep_seconds", "timeout"):
        if key in values and values[key] <= 0:
            raise AlertConfigError(f"{where}: alerts.{key} must be more than 0")
    if "max_attempts" in raw:
        value = raw["max_attempts"]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise AlertConfigError(f"{where}: alerts.max_attempts must be a whole number, 1 or more")
        values["max_attempts"] = value
    values["webhooks"] = _parse_webhooks(raw.get("webhooks", []), where, base)
    if "smtp" in raw:
        values["smtp"] = _parse_smtp(raw["smtp"], where, base)
    return AlertSettings(**values)


def _file(value: Any, key: str, where: str, base: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise AlertConfigError(f"{where}: {key} must be a path string")
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _parse_webhooks(raw: Any, where: str, base: Path) -> tuple[WebhookConfig, ...]:
    if not isinstance(raw, list):
        raise AlertConfigError(f"{where}: alerts.webhooks must be an array of tables ([[alerts.webhooks]])")
    out: list[WebhookConfig] = []
    for i, entry in enumerate(raw):
        at = f"{where}: alerts.webhooks[{i}]"
        if not isinstance(entry, dict):
            raise AlertConfigError(f"{at}: must be a table")
        unknown = sorted(set(entry) - {"url", "secret", "name", "ca"})
        if unknown:
            raise AlertConfigError(f"{at}: unknown key(s) {', '.join(unknown)}")
        url = entry.get("url")
        if (
            not isinstance(url, str)
            or urlsplit(url).scheme not in ("http", "https")
            or not urlsplit(url).netloc
        ):
            raise AlertConfigError(f"{at}.url: must be an http:// or https:// URL")
        secret = entry.get("secret")
        if not isinstance(secret, str) or len(secret) < 16:
            raise AlertConfigError(
                f"{at}.secret: required, at least 16 characters (the receiver checks the HMAC)"
            )
        name = entry.get("name", f"webhook-{i + 1}")
        if not isinstance(name, str) or not name or len(name) > 48 or not name.replace("-", "").isalnum():
            raise AlertConfigError(f"{at}.name: letters, digits and '-', at most 48 characters")
        ca = str(_file(entry["ca"], f"alerts.webhooks[{i}].ca", where, base)) if "ca" in entry else None
        out.append(WebhookConfig(url=url, secret=secret, name=name, ca=ca))
    names = [w.name for w in out]
    if len(set(names)) != len(names):
        raise AlertConfigError(f"{where}: alerts.webhooks need distinct names (name = ...)")
    return tuple(out)


def _parse_smtp(raw: Any, where: str, base: Path) -> SmtpConfig:
    at = f"{where}: alerts.smtp"
    if not isinstance(raw, dict):
        raise AlertConfigError(f"{at}: must be a table ([alerts.smtp])")
    unknown = sorted(set(raw) - _SMTP_KEYS)
    if unknown:
        raise AlertConfigError(f"{at}: unknown key(s) {', '.join(unknown)}")
    for key in ("host", "from"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise AlertConfigError(f"{at}.{key}: required")
    to = raw.get("to")
    if isinstance(to, str):
        to = [to]
    if not isinstance(to, list) or not to or not all(isinstance(a, str) and "@" in a for a in to):
        raise AlertConfigError(f"{at}.to: one address or an array of addresses")
    port = raw.get("port", 587)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise AlertConfigError(f"{at}.port: a TCP port number")
    starttls = raw.get("starttls", True)
    if not isinstance(starttls, bool):
        raise AlertConfigError(f"{at}.starttls: true or false")
    username = raw.get("username")
    if username is not None and (not isinstance(username, str) or not username):
        raise AlertConfigError(f"{at}.username: a string")
    password_file = (
        _file(raw["password_file"], "alerts.smtp.password_file", where, base)
        if "password_file" in raw
        else None
    )
    if password_file is not None and not password_file.is_file():
        raise AlertConfigError(
            f"{at}.password_file: {password_file} not found; write the SMTP password there"
        )
    if username and password_file is None:
        raise AlertConfigError(f"{at}.password_file: required with username (a file holding the password)")
    if username and not starttls:
        raise AlertConfigError(
            f"{at}: username without starttls would send the password in clear; set starttls = true"
        )
    ca = str(_file(raw["ca"], "alerts.smtp.ca", where, base)) if "ca" in raw else None
    return SmtpConfig(
        host=raw["host"],
        sender=raw["from"],
        to=tuple(to),
        port=port,
        starttls=starttls,
        username=username,
        password_file=password_file,
        ca=ca,
    )


# --- rules on arrival (pure decisions + one transaction) ---------------------------------------------------

_ARRIVAL_KINDS = frozenset({Kind.POSTURE_FINDING.value, Kind.LOCK_FAILED.value})


def _finding(row: EventRow, data: Mapping[str, Any]) -> Finding | None:
    check = data.get("check_id")
    if not isinstance(check, str):
        return None
    failing = data.get("status") in ("fail", "error") and data.get("mode") not in ("off", None)
    return Finding(check, failing, failing and data.get("enforcement") == "block", row.time, row.uid)


def arrival_rules(settings: Settings) -> AfterInsert:
    """The arrival rules (check_failing, the block state, lock_failed) as a ``Storage.after_insert`` hook: run on
    the newly stored events in the ingest transaction, so an alert commits with its cause or not at all, and a
    resent batch (its events stored already) costs nothing. ``facts``: uid -> ``unmapped`` of the events ingest
    parsed already (server/ingest.py); the others are parsed here."""
    config = alert_settings(settings)

    def hook(
        conn: Connection, device_id: str, rows: list[EventRow], now: int, facts: Mapping[str, Any] | None
    ) -> None:
        relevant = [r for r in rows if r.event_code in _ARRIVAL_KINDS]
        if relevant:
            evaluate(conn, config, device_id, relevant, facts=facts, now=now)

    return hook


def evaluate(
    conn: Connection,
    config: AlertSettings,
    device_id: str,
    rows: Sequence[EventRow],
    *,
    facts: Mapping[str, Any] | None,
    now: int,
) -> list[str]:
    """Raise the arrival rules' alerts for stored ``rows`` in the caller's transaction; their ids."""
    track = config.check_failing or config.enabled("block_long")
    findings: list[Finding] = []
    found: list[NewAlert] = []
    for row in sorted(rows, key=lambda r: r.sequence):
        if row.event_code not in _ARRIVAL_KINDS:
            continue
        data = facts.get(row.uid) if facts is not None else None
        if data is None:
            data = orjson.loads(row.body).get("unmapped") or {}
        if row.event_code == Kind.POSTURE_FINDING.value and track:
            finding = _finding(row, data)
            if finding is not None:
                findings.append(finding)
        elif row.event_code == Kind.LOCK_FAILED.value and config.lock_failed:
            detail = {"method": data.get("method"), "reason": data.get("reason"), "event_uid": row.uid}
            found.append(NewAlert(f"lock_failed:{row.uid}", "lock_failed", device_id, row.time, detail))
    for f in alert_store.record_findings(conn, device_id, findings):
        if config.check_failing:
            detail = {"check_id": f.check_id, "blocking": f.blocking, "event_uid": f.event_uid}
            found.append(
                NewAlert(
                    f"check_failing:{f.event_uid}", "check_failing", device_id, f.time, detail, f.check_id
                )
            )
    return alert_store.raise_many(conn, found, config.channels(), now)


def on_checkin(context: ServerContext, device_id: str, body: CheckinRequest) -> None:
    """agent_stopped: a stop notice from an agent whose policy forbids quitting (``quit_allowed`` false; an
    agent that does not say raises nothing)."""
    config = alert_settings(context.settings)
    if not (body.stopping and body.quit_allowed is False and config.agent_stopped):
        return
    now = context.now_ms()
    sequence = body.last_sequence if body.last_sequence is not None else now
    detail = {
        "last_sequence": body.last_sequence,
        "policy_id": body.policy_id,
        "policy_version": body.policy_version,
    }
    alert = NewAlert(f"agent_stopped:{device_id}:{sequence}", "agent_stopped", device_id, now, detail)
    alert_store.raise_all(context.storage, [alert], config.channels(), now)


# --- rules by sweep ------------------------------------------------------------------------------------------


class Sweep:
    """The time-based rules (block_long, device_silent, sequence_gap), run every ``sweep_seconds``."""

    GAP_LOOKBACK_MS = 3_600_000  # gaps recorded in the hour before start are looked at once more

    def __init__(self, storage: Storage, config: AlertSettings, started_ms: int) -> None:
        self.storage = storage
        self.config = config
        self.started_ms = started_ms
        self._gaps_since = started_ms - self.GAP_LOOKBACK_MS
        self._gaps_seen: set[tuple[str, int, int, int]] = set()

    def run(self, now: int) -> int:
        config, found = self.config, []
        if config.enabled("block_long"):
            for device, check, since in alert_store.long_blocks(
                self.storage, now - int(config.block_minutes * 60_000)
            ):
                detail = {"check_id": check, "blocked_since": since, "minutes": config.block_minutes}
                found.append(
                    NewAlert(
                        f"block_long:{device}:{check}:{since}", "block_long", device, since, detail, check
                    )
                )
        # A silence counts from when this server was up: after an outage of the server itself every device
        # would look silent at once.
        silent_ms = int(config.silent_minutes * 60_000)
        if config.enabled("device_silent") and now - self.started_ms >= silent_ms:
            for device, last_seen in alert_store.silent_devices(self.storage, now - silent_ms):
                detail = {"last_seen": last_seen, "minutes": config.silent_minutes}
                found.append(
                    NewAlert(
                        f"device_silent:{device}:{last_seen}", "device_silent", device, last_seen, detail
                    )
                )
        if config.sequence_gap:
            found.extend(self._gaps())
        return len(alert_store.raise_all(self.storage, found, config.channels(), now))

    def _gaps(self) -> list[NewAlert]:
        out = []
        latest = self._gaps_since
        seen_now: set[tuple[str, int, int, int]] = set()
        for gap in alert_store.recent_gaps(self.storage, self._gaps_since):
            device, first, last, detected = gap
            latest = max(latest, detected)
            seen_now.add(gap)
            if gap in self._gaps_seen:
                continue
            if alert_store.gap_alerted(self.storage, device, first, last):
                continue  # a part of a gap a late event split, alerted as the whole
            detail = {"first": first, "last": last, "missing": last - first + 1}
            out.append(NewAlert(f"sequence_gap:{device}:{first}", "sequence_gap", device, detected, detail))
        self._gaps_since = latest
        self._gaps_seen = {g for g in seen_now if g[3] == latest}
        return out


# --- words (ja and en) ---------------------------------------------------------------------------------------

TITLES: dict[str, dict[str, str]] = {
    "ja": {
        "check_failing": "チェック不適合",
        "block_long": "ブロックが継続",
        "lock_failed": "画面ロック失敗",
        "sequence_gap": "イベントの欠落",
        "device_silent": "端末から応答なし",
        "agent_stopped": "許可のないエージェント停止",
    },
    "en": {
        "check_failing": "Check failing",
        "block_long": "Block still in place",
        "lock_failed": "Screen lock failed",
        "sequence_gap": "Events missing",
        "device_silent": "Device silent",
        "agent_stopped": "Agent stopped without permission",
    },
}

_JST = ZoneInfo("Asia/Tokyo")


def when_text(at_ms: int, lang: str) -> str:
    """Japanese Standard Time for ja, UTC for en."""
    moment = datetime.fromtimestamp(at_ms / 1000, UTC)
    if lang == "ja":
        return moment.astimezone(_JST).strftime("%Y-%m-%d %H:%M:%S JST")
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _minutes(value: Any) -> str:
    number = float(value or 0)
    return str(int(number)) if number == int(number) else f"{number:g}"


def describe(alert: Mapping[str, Any], lang: str) -> str:
    """One sentence saying what happened (``alert`` as :meth:`Alert.as_json`)."""
    d = alert.get("detail") or {}
    device = alert.get("hostname") or alert.get("device_id") or "?"
    check = alert.get("check_id") or d.get("check_id") or "?"
    rule = alert.get("rule")
    if lang == "ja":
        if rule == "check_failing":
            return f"{device} でチェック「{check}」が不適合になりました。"
        if rule == "block_long":
            return f"{device} でチェック「{check}」による業務アプリのブロックが {_minutes(d.get('minutes'))} 分以上続いています。"
        if rule == "lock_failed":
            return f"{device} で画面をロックできませんでした（方式: {d.get('method')}、理由: {d.get('reason')}）。"
        if rule == "sequence_gap":
            return f"{device} のイベントが {d.get('missing')} 件欠けています（通番 {d.get('first')}〜{d.get('last')}）。"
        if rule == "device_silent":
            return (
                f"{device} から {_minutes(d.get('minutes'))} 分以上連絡がありません"
                f"（最終連絡 {when_text(int(d.get('last_seen') or 0), 'ja')}）。"
            )
        if rule == "agent_stopped":
            return f"{device} のエージェントが停止しました。ポリシーでは終了が許可されていません。"
        return f"{device}: {rule}"
    if rule == "check_failing":
        return f"Check {check} started failing on {device}."
    if rule == "block_long":
        return f"Check {check} has blocked the customer apps on {device} for over {_minutes(d.get('minutes'))} minutes."
    if rule == "lock_failed":
        return f"The screen on {device} could not be locked (method {d.get('method')}, reason {d.get('reason')})."
    if rule == "sequence_gap":
        return f"{d.get('missing')} events are missing from {device} (sequence {d.get('first')} to {d.get('last')})."
    if rule == "device_silent":
        return (
            f"{device} has not been heard from for over {_minutes(d.get('minutes'))} minutes "
            f"(last seen {when_text(int(d.get('last_seen') or 0), 'en')})."
        )
    if rule == "agent_stopped":
        return f"The agent on {device} stopped, though its policy does not allow quitting."
    return f"{device}: {rule}"


def webhook_body(alert: Mapping[str, Any]) -> bytes:
    doc = {
        "type": "mamori.alert",
        "alert": dict(alert),
        "title": {
            lang: TITLES[lang].get(str(alert.get("rule")), str(alert.get("rule"))) for lang in ("ja", "en")
        },
        "text": {lang: describe(alert, lang) for lang in ("ja", "en")},
    }
    return json.dumps(doc, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")


def mail_message(alert: Mapping[str, Any], config: SmtpConfig) -> EmailMessage:
    """One alert as a mail: subject and body in Japanese, then English."""
    rule = str(alert.get("rule"))
    device = alert.get("hostname") or alert.get("device_id") or "?"
    message = EmailMessage()
    message["Subject"] = f"[Mamori] {TITLES['ja'].get(rule, rule)} / {TITLES['en'].get(rule, rule)}: {device}"
    message["From"] = config.sender
    message["To"] = ", ".join(config.to)
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(idstring=str(alert.get("id")), domain="mamori.alert")
    message["X-Mamori-Alert-Id"] = str(alert.get("id"))
    raised = int(alert.get("cause_at") or 0)
    message.set_content(
        f"{describe(alert, 'ja')}\n発生: {when_text(raised, 'ja')}\n端末 ID: {alert.get('device_id')}\n"
        f"アラート ID: {alert.get('id')}\n管理コンソールの「アラート」で確認してください。\n\n"
        f"----\n\n"
        f"{describe(alert, 'en')}\nWhen: {when_text(raised, 'en')}\nDevice id: {alert.get('device_id')}\n"
        f"Alert id: {alert.get('id')}\nAcknowledge it under Alerts in the console.\n"
    )
    return message


# --- senders (forwarders' Sender: one attempt, an Outcome, never raising for receiver trouble) ---------------


class AlertWebhookSender(Sender):
    """POST one alert as JSON, signed like the forwarders' webhook (``X-Mamori-Signature``)."""

    def __init__(self, config: ForwarderConfig, webhook: WebhookConfig) -> None:
        super().__init__(config)
        self.webhook = webhook

    def send(self, batch: Sequence[Due]) -> Outcome:
        (due,) = batch
        alert = json.loads(due.body)
        body = webhook_body(alert)
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-Mamori-Event": "alert",
            "X-Mamori-Alert-Id": due.uid,
            "X-Mamori-Timestamp": timestamp,
            "X-Mamori-Signature": webhook_signature(self.webhook.secret, timestamp, body),
        }
        result = self.post(self.webhook.url, body, headers)
        return self.http_outcome(batch, result, default_retryable)


class SmtpSender(Sender):
    """One alert, one mail. A 5xx answer for the message is a dead letter; anything else is tried again."""

    def __init__(self, config: ForwarderConfig, smtp: SmtpConfig) -> None:
        super().__init__(config)
        self.smtp = smtp

    def send(self, batch: Sequence[Due]) -> Outcome:
        (due,) = batch
        message = mail_message(json.loads(due.body), self.smtp)
        try:
            with smtplib.SMTP(self.smtp.host, self.smtp.port, timeout=self.config.timeout) as client:
                if self.smtp.starttls:
                    client.starttls(context=ssl.create_default_context(cafile=self.smtp.ca))
                if self.smtp.username and self.smtp.password_file is not None:
                    password = self.smtp.password_file.read_text(encoding="utf-8").strip()
                    client.login(self.smtp.username, password)
                client.send_message(message)
        except smtplib.SMTPRecipientsRefused as err:
            codes = [code for code, _ in err.recipients.values()]
            if all(500 <= c < 600 for c in codes):
                return Outcome(
                    dead={due.uid: f"SMTP {codes[0]} for every recipient"}, error="recipients refused"
                )
            return Outcome(retry=[due.uid], error="SMTP recipients refused for now")
        except smtplib.SMTPResponseException as err:
            if 500 <= err.smtp_code < 600 and not isinstance(err, smtplib.SMTPAuthenticationError):
                return Outcome(dead={due.uid: f"SMTP {err.smtp_code}"}, error=f"SMTP {err.smtp_code}")
            return Outcome(retry=[due.uid], error=f"SMTP {err.smtp_code}")
        except (OSError, smtplib.SMTPException, ssl.SSLError) as err:
            return Outcome(retry=[due.uid], error=type(err).__name__)
        return Outcome(delivered=[due.uid])


# --- the service -----------------------------------------------------------------------------------------------


class AlertService(ForwardingService):
    """One thread per server process: the sweep every ``sweep_seconds`` and delivery of every channel's due
    alerts, one alert at a time, with the forwarders' backoff and dead-letter handling (``_deliver``)."""

    def __init__(
        self,
        storage: Storage,
        config: AlertSettings,
        clock: Clock,
        *,
        senders: dict[str, Sender] | None = None,
        interval: float = 0.2,
    ) -> None:
        def channel(name: str, kind: str, options: dict[str, Any]) -> ForwarderConfig:
            return ForwarderConfig(
                name=CHANNEL_PREFIX + name,
                type=kind,
                options=options,
                batch=1,
                timeout=config.timeout,
                max_backoff=config.max_backoff,
            )

        configs: list[ForwarderConfig] = []
        built: dict[str, Sender] = dict(senders or {})
        for hook in config.webhooks:
            fc = channel(hook.name, "webhook", {"ca": hook.ca} if hook.ca else {})
            configs.append(fc)
            built.setdefault(fc.name, AlertWebhookSender(fc, hook))
        if config.smtp is not None:
            fc = channel("smtp", "smtp", {})
            configs.append(fc)
            built.setdefault(fc.name, SmtpSender(fc, config.smtp))
        super().__init__(storage, configs, clock, senders=built, interval=interval)
        self.config = config
        self.sweep = Sweep(storage, config, ms(clock.now()))
        self._next_sweep = 0.0
        self._quiet_until = 0.0

    def start(self) -> None:
        import threading

        import sqlalchemy as sa

        now = ms(self.clock.now())
        self.sweep = Sweep(self.storage, self.config, now)
        try:
            audit_settings(self.storage, self.config, now)
        except sa.exc.SQLAlchemyError as err:  # an unmigrated database (readyz says so)
            logger.warning("alert settings not recorded in the audit log: %s", type(err).__name__)
        self._thread = threading.Thread(target=self._run, name="mamori-alerts", daemon=True)
        self._thread.start()

    def step(self) -> bool:
        import sqlalchemy as sa

        try:
            return self._step()
        except sa.exc.SQLAlchemyError as err:
            # The database is away or not migrated (readyz says so): say it once a minute, not every step.
            if time.monotonic() >= self._quiet_until:
                self._quiet_until = time.monotonic() + 60.0
                logger.warning(
                    "alerts: database unavailable (%s); raising and sending wait", type(err).__name__
                )
            return False

    def _step(self) -> bool:
        now = ms(self.clock.now())
        if time.monotonic() >= self._next_sweep:
            self._next_sweep = time.monotonic() + self.config.sweep_seconds
            self.sweep.run(now)
            for state in self.states:
                alert_store.give_up(self.storage, state.config.name, self.config.max_attempts)
        worked = False
        for state in self.states:
            if state.paused_until > time.monotonic():
                continue
            batch = alert_store.claim(self.storage, state.config.name, now, LEASE_MS, 1)
            if batch:
                worked = True
                self._deliver(state, batch)
        return worked


def delivery_status(storage: Storage, config: AlertSettings) -> list[dict[str, Any]]:
    """Each channel's queue and dead letters, from the database (the same in every server process)."""
    counts = forward_store.counts(storage)
    out = []
    for name in config.channels():
        c = counts.get(name, forward_store.Counts(0, 0))
        out.append(
            {
                "channel": name.removeprefix(CHANNEL_PREFIX),
                "type": "smtp" if name == CHANNEL_PREFIX + "smtp" else "webhook",
                "queued": c.queued,
                "dead_letters": c.dead,
            }
        )
    return out


def audit_settings(storage: Storage, config: AlertSettings, now_ms: int) -> bool:
    """Record the alert settings in the audit log when they differ from the last recorded (server.toml is where
    they change). Returns whether an entry was written."""
    from server import audit

    detail = config.fingerprint()
    previous = audit.entries(storage, action="alerts.settings")
    if previous and previous[-1].detail == json.loads(json.dumps(detail)):
        return False
    audit.record(
        storage, actor="server.toml", action="alerts.settings", target="alerts", detail=detail, now_ms=now_ms
    )
    return True


__all__ = [
    "RULES",
    "AlertConfigError",
    "AlertService",
    "AlertSettings",
    "SmtpConfig",
    "WebhookConfig",
    "alert_settings",
    "arrival_rules",
    "audit_settings",
    "delivery_status",
    "describe",
    "evaluate",
    "mail_message",
    "on_checkin",
    "parse_alerts",
    "webhook_body",
    "when_text",
]


def alert_service(storage: Storage, settings: Settings, clock: Clock) -> AlertService:
    """The alert service of ``create_app`` (server/app.py)."""
    return AlertService(storage, alert_settings(settings), clock)
