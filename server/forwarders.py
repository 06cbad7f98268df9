"""SIEM forwarders (server.toml ``[[forwarders]]``; SPEC.md, Server API): each stored event delivered at least
once to Splunk HEC, OTLP/HTTP logs (JSON), syslog over TLS (RFC 5424 with RFC 5425 octet counting),
Elasticsearch/OpenSearch bulk, or a signed webhook, from its own durable outbox (server/forward_store.py).

What leaves is the stored record as received, which passed the record contract on ingest (privacy allow-list,
OCSF conformance); the Elastic path adds ECS fields computed from the record only. Each forwarder:

* takes its due events oldest first, in batches; a 2xx (and, for bulk, every item's status) is delivery;
* retries with full-jitter exponential backoff (and ``Retry-After``) while the receiver is down or busy, so a
  receiver that is away for minutes loses nothing; a permanent refusal of one event (HTTP 400 for that item)
  makes it a dead letter, counted in ``GET /v1/admin/forwarders``, and never blocks the ones behind it;
* is bounded: above ``max_queued`` queued events ingest answers 503 + Retry-After (back-pressure: the agents
  keep the events in their own outboxes) instead of dropping any.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import hmac
import json
import logging
import random
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from core.clock import Clock
from core.errors import MamoriError
from server import forward_store
from server.forward_store import Due
from server.storage import Storage, ms

logger = logging.getLogger(__name__)

TYPES = ("splunk_hec", "otlp_http", "syslog_tls", "elasticsearch", "webhook")
# Keys each type takes besides name/type/batch/limits (server.toml); "url" is required for the HTTP types.
_TYPE_KEYS: dict[str, frozenset[str]] = {
    "splunk_hec": frozenset(
        {"url", "token", "index", "sourcetype", "ca", "indexer_ack", "channel", "ack_timeout"}
    ),
    "otlp_http": frozenset({"url", "headers", "ca"}),
    "syslog_tls": frozenset({"host", "port", "ca", "server_name", "facility"}),
    "elasticsearch": frozenset({"url", "index", "api_key", "ca"}),
    "webhook": frozenset({"url", "secret", "ca"}),
}
_COMMON_KEYS = frozenset({"name", "type", "batch", "max_queued", "timeout", "max_backoff"})


class ForwarderConfigError(MamoriError):
    """A [[forwarders]] entry of server.toml is invalid."""


@dataclass(frozen=True)
class ForwarderConfig:
    name: str
    type: str
    options: dict[str, Any] = field(default_factory=dict)
    batch: int = 500
    max_queued: int = 1_000_000
    timeout: float = 10.0
    max_backoff: float = 30.0  # seconds: the longest wait between attempts while the receiver is away

    def option(self, key: str, default: Any = None) -> Any:
        return self.options.get(key, default)


def parse_forwarders(raw: Any, where: str, base: Path) -> tuple[ForwarderConfig, ...]:
    """``[[forwarders]]`` of server.toml -> configs; every problem is one line naming the entry and the key."""
    if not isinstance(raw, list):
        raise ForwarderConfigError(f"{where}: forwarders must be an array of tables ([[forwarders]])")
    out: list[ForwarderConfig] = []
    for i, entry in enumerate(raw):
        at = f"{where}: forwarders[{i}]"
        if not isinstance(entry, dict):
            raise ForwarderConfigError(f"{at}: must be a table")
        kind = entry.get("type")
        if kind not in TYPES:
            raise ForwarderConfigError(f"{at}.type: must be one of {', '.join(TYPES)}")
        name = entry.get("name", kind)
        if not isinstance(name, str) or not name or len(name) > 64:
            raise ForwarderConfigError(f"{at}.name: must be a short unique name")
        unknown = sorted(set(entry) - _COMMON_KEYS - _TYPE_KEYS[kind])
        if unknown:
            raise ForwarderConfigError(f"{at}: unknown key(s) {', '.join(unknown)} for type {kind}")
        options = {k: v for k, v in entry.items() if k in _TYPE_KEYS[kind]}
        required = ("host",) if kind == "syslog_tls" else ("url",)
        for key in required:
            if not isinstance(options.get(key), str) or not options[key]:
                raise ForwarderConfigError(f"{at}.{key}: required for type {kind}")
        if "url" in options and urlsplit(options["url"]).scheme not in ("http", "https"):
            raise ForwarderConfigError(f"{at}.url: must be an http:// or https:// URL")
        if "indexer_ack" in options and not isinstance(options["indexer_ack"], bool):
            raise ForwarderConfigError(f"{at}.indexer_ack: true or false")
        if "ack_timeout" in options and (
            isinstance(options["ack_timeout"], bool)
            or not isinstance(options["ack_timeout"], int | float)
            or options["ack_timeout"] <= 0
        ):
            raise ForwarderConfigError(f"{at}.ack_timeout: seconds, a positive number")
        if "channel" in options:
            try:
                options["channel"] = str(uuid.UUID(str(options["channel"])))
            except ValueError as err:
                raise ForwarderConfigError(f"{at}.channel: a GUID, as Splunk's HEC channels are") from err
        if isinstance(options.get("ca"), str):
            ca = Path(options["ca"]).expanduser()
            options["ca"] = str(ca if ca.is_absolute() else base / ca)
        numbers: dict[str, Any] = {}
        for key, kind_of in (("batch", int), ("max_queued", int), ("timeout", float), ("max_backoff", float)):
            if key in entry:
                value = entry[key]
                if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                    raise ForwarderConfigError(f"{at}.{key}: must be a positive number")
                numbers[key] = kind_of(value)
        out.append(ForwarderConfig(name=name, type=kind, options=options, **numbers))
    names = [f.name for f in out]
    if len(set(names)) != len(names):
        raise ForwarderConfigError(f"{where}: forwarders need distinct names (name = ...)")
    return tuple(out)


# --- outcome of one attempt ---------------------------------------------------------------------------------


@dataclass
class Outcome:
    delivered: list[str] = field(default_factory=list)
    retry: list[str] = field(default_factory=list)
    dead: dict[str, str] = field(default_factory=dict)  # uid -> why
    retry_after: float | None = None
    error: str = ""


def _retry_after(value: str | None) -> float | None:
    if value and value.strip().isdigit():
        return float(value.strip())
    return None


# --- formats (pure: records in, bytes out) -------------------------------------------------------------------


def _records(batch: Sequence[Due]) -> list[dict[str, Any]]:
    return [json.loads(d.body) for d in batch]


def hec_body(batch: Sequence[Due], config: ForwarderConfig) -> bytes:
    """Splunk HEC /services/collector/event: one JSON event object after another (Splunk "batched" form)."""
    parts = []
    for record in _records(batch):
        event: dict[str, Any] = {
            "time": record["time"] / 1000,
            "host": record["device"]["uid"],
            "source": "mamori",
            "sourcetype": config.option("sourcetype", "ocsf:mamori"),
            "event": record,
        }
        if config.option("index"):
            event["index"] = config.option("index")
        parts.append(json.dumps(event, ensure_ascii=False, separators=(",", ":")))
    return "\n".join(parts).encode("utf-8")


# OCSF severity_id -> OpenTelemetry SeverityNumber (INFO 9, WARN 13, ERROR 17, FATAL 21) and RFC 5424 severity.
_OTEL_SEVERITY = {0: 0, 1: 9, 2: 10, 3: 13, 4: 17, 5: 18, 6: 21}
_SYSLOG_SEVERITY = {0: 6, 1: 6, 2: 5, 3: 4, 4: 3, 5: 2, 6: 1}


def otlp_body(batch: Sequence[Due]) -> bytes:
    """OTLP/HTTP JSON ExportLogsServiceRequest (opentelemetry-proto logs/v1, JSON mapping: 64-bit integers as
    strings, enums as numbers)."""
    log_records = []
    for record in _records(batch):
        nanos = str(record["time"] * 1_000_000)
        attributes = [
            {"key": "event.name", "value": {"stringValue": record["metadata"]["event_code"]}},
            {"key": "event.id", "value": {"stringValue": record["metadata"]["uid"]}},
            {"key": "ocsf.class_uid", "value": {"intValue": str(record["class_uid"])}},
            {"key": "ocsf.type_uid", "value": {"intValue": str(record["type_uid"])}},
            {"key": "host.id", "value": {"stringValue": record["device"]["uid"]}},
        ]
        log_records.append(
            {
                "timeUnixNano": nanos,
                "observedTimeUnixNano": nanos,
                "severityNumber": _OTEL_SEVERITY.get(record["severity_id"], 0),
                "severityText": record.get("severity", ""),
                "body": {"stringValue": json.dumps(record, ensure_ascii=False, separators=(",", ":"))},
                "attributes": attributes,
            }
        )
    from core import __version__

    doc = {
        "resourceLogs": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "mamori"}}]},
                "scopeLogs": [
                    {"scope": {"name": "mamori", "version": __version__}, "logRecords": log_records}
                ],
            }
        ]
    }
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


_ECS_CATEGORY = {
    2003: ["configuration"],
    3002: ["authentication", "session"],
    4014: ["network"],
    5019: ["host"],
}


def ecs_document(record: dict[str, Any]) -> dict[str, Any]:
    """The ECS fields of the Elastic path (ecs 8.x: @timestamp, event.*, host.id, message), with the OCSF record
    under ``ocsf``. Computed from the record only."""
    when = datetime.fromtimestamp(record["time"] / 1000, UTC)
    event: dict[str, Any] = {
        "id": record["metadata"]["uid"],
        "kind": "state" if record["class_uid"] == 2003 else "event",
        "category": _ECS_CATEGORY.get(record["class_uid"], []),
        "code": record["metadata"]["event_code"],
        "action": record["metadata"]["event_code"],
        "severity": record["severity_id"],
        "module": "mamori",
        "dataset": "mamori.ocsf",
        "sequence": record["metadata"].get("sequence"),
    }
    compliance = record.get("compliance")
    if compliance:
        event["outcome"] = {"Pass": "success", "Fail": "failure"}.get(compliance.get("status"), "unknown")
    return {
        "@timestamp": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "ecs": {"version": "8.11.0"},
        "event": event,
        "host": {"id": record["device"]["uid"]},
        "message": record.get("message", ""),
        "observer": {"product": "Mamori", "vendor": "Mamori", "type": "endpoint-guard"},
        "ocsf": record,
    }


def bulk_body(batch: Sequence[Due], index: str) -> bytes:
    """Elasticsearch/OpenSearch _bulk NDJSON: ``create`` with ``_id`` = metadata.uid (a resend is a 409)."""
    lines = []
    for due_event in batch:
        record = json.loads(due_event.body)
        lines.append(json.dumps({"create": {"_index": index, "_id": record["metadata"]["uid"]}}))
        lines.append(json.dumps(ecs_document(record), ensure_ascii=False, separators=(",", ":")))
    return ("\n".join(lines) + "\n").encode("utf-8")


# RFC 5424 6.3: an SD-ID with "@" names an enterprise; 32473 is the example Private Enterprise Number (RFC 5612),
# used until the project registers its own.
SD_ID = "mamori@32473"


def _sd_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _printusascii(value: str, limit: int) -> str:
    cleaned = "".join(c for c in value if 33 <= ord(c) <= 126)[:limit]
    return cleaned or "-"


def syslog_message(record: dict[str, Any], facility: int = 13) -> bytes:
    """One RFC 5424 message: PRI VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA BOM MSG, with
    the device id as HOSTNAME (never the PC's host name), the event kind as MSGID and the record as JSON MSG."""
    pri = facility * 8 + _SYSLOG_SEVERITY.get(record["severity_id"], 6)
    when = datetime.fromtimestamp(record["time"] / 1000, UTC).isoformat(timespec="milliseconds")
    meta = record["metadata"]
    sd = (
        f'[{SD_ID} uid="{_sd_escape(meta["uid"])}" class_uid="{record["class_uid"]}" '
        f'sequence="{meta.get("sequence", 0)}"]'
    )
    header = (
        f"<{pri}>1 {when.replace('+00:00', 'Z')} {_printusascii(record['device']['uid'], 255)} mamori - "
        f"{_printusascii(meta['event_code'], 32)} {sd} "
    )
    body = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
    return header.encode("ascii") + b"\xef\xbb\xbf" + body.encode("utf-8")


def octet_counted(message: bytes) -> bytes:
    """RFC 5425 4.3: SYSLOG-FRAME = MSG-LEN SP SYSLOG-MSG."""
    return str(len(message)).encode("ascii") + b" " + message


def webhook_signature(secret: str, timestamp: str, body: bytes) -> str:
    """``X-Mamori-Signature``: sha256=HMAC-SHA256(secret, timestamp + "." + body), hex (replay window: the
    receiver checks ``X-Mamori-Timestamp``)."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


# --- senders (the one network seam: requests.Session / ssl sockets) -----------------------------------------


class Sender:
    """Delivers one batch; never raises for receiver trouble (the outcome says what to retry)."""

    def __init__(self, config: ForwarderConfig) -> None:
        self.config = config
        import requests

        self.session = requests.Session()
        ca = config.option("ca")
        if ca:
            self.session.verify = ca

    def send(self, batch: Sequence[Due]) -> Outcome:
        raise NotImplementedError

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes] | str:
        import requests

        try:
            response = self.session.post(url, data=body, headers=headers, timeout=self.config.timeout)
        except requests.RequestException as err:
            return f"{type(err).__name__}"
        return response.status_code, dict(response.headers), response.content

    def http_outcome(
        self,
        batch: Sequence[Due],
        result: tuple[int, dict[str, str], bytes] | str,
        retryable: Callable[[int], bool],
    ) -> Outcome:
        uids = [d.uid for d in batch]
        if isinstance(result, str):
            return Outcome(retry=uids, error=result)
        status, headers, _content = result
        if 200 <= status < 300:
            return Outcome(delivered=uids)
        outcome = Outcome(error=f"HTTP {status}", retry_after=_retry_after(headers.get("Retry-After")))
        if retryable(status):
            outcome.retry = uids
        elif len(batch) > 1:
            # One bad event must not block the rest: retry them one by one, the refused one turns dead alone.
            outcome.retry = uids
            outcome.error = f"HTTP {status} (splitting the batch)"
            outcome.retry_after = 0.0
        else:
            outcome.dead = {uids[0]: f"HTTP {status}"}
        return outcome


def _default_retryable(status: int) -> bool:
    return status in (401, 403, 404, 408, 429) or status >= 500


class HecSender(Sender):
    """Splunk HEC. With ``indexer_ack = true`` (the token's "indexer acknowledgement" on) a batch counts as
    delivered only once ``/services/collector/ack`` says its ``ackId`` was indexed, not when HEC took it: a
    batch HEC took but lost before indexing is sent again (at least once). The requests carry the channel
    Splunk requires for acknowledgements (``channel``, default a GUID derived from the forwarder's name, so it
    survives restarts)."""

    ACK_POLL_S = 0.5

    def send(self, batch: Sequence[Due]) -> Outcome:
        base = self.config.option("url").rstrip("/")
        headers = {
            "Authorization": f"Splunk {self.config.option('token', '')}",
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
        }
        ack = bool(self.config.option("indexer_ack", False))
        if ack:
            headers["X-Splunk-Request-Channel"] = self.channel
        result = self.post(
            base + "/services/collector/event", gzip.compress(hec_body(batch, self.config)), headers
        )
        outcome = self.http_outcome(batch, result, _default_retryable)
        if not ack or not outcome.delivered or isinstance(result, str):
            return outcome
        try:
            ack_id = int(json.loads(result[2])["ackId"])
        except (ValueError, KeyError, TypeError):
            return Outcome(
                retry=outcome.delivered,
                error="HEC answered without an ackId: turn on indexer acknowledgement for the token",
            )
        if self._acknowledged(base, ack_id, headers):
            return outcome
        timeout = float(self.config.option("ack_timeout", 30.0))
        return Outcome(
            retry=outcome.delivered, error=f"HEC indexer acknowledgement {ack_id} not seen in {timeout:g} s"
        )

    @property
    def channel(self) -> str:
        return str(
            self.config.option("channel") or uuid.uuid5(uuid.NAMESPACE_URL, f"mamori:{self.config.name}")
        )

    def _acknowledged(self, base: str, ack_id: int, headers: dict[str, str]) -> bool:
        poll = {k: v for k, v in headers.items() if k != "Content-Encoding"}
        deadline = time.monotonic() + float(self.config.option("ack_timeout", 30.0))
        body = json.dumps({"acks": [ack_id]}).encode()
        while True:
            result = self.post(base + "/services/collector/ack", body, poll)
            if not isinstance(result, str) and result[0] == 200:
                try:
                    if json.loads(result[2])["acks"].get(str(ack_id)) is True:
                        return True
                except (ValueError, KeyError, TypeError, AttributeError):
                    pass
            if time.monotonic() >= deadline:
                return False
            time.sleep(self.ACK_POLL_S)


class OtlpSender(Sender):
    def send(self, batch: Sequence[Due]) -> Outcome:
        url = self.config.option("url").rstrip("/")
        if not url.endswith("/v1/logs"):
            url += "/v1/logs"
        headers = {"Content-Type": "application/json", **dict(self.config.option("headers", {}) or {})}
        result = self.post(url, otlp_body(batch), headers)
        # OTLP/HTTP: retry only 429, 502, 503, 504; any other failure is permanent for this payload.
        outcome = self.http_outcome(batch, result, lambda s: s in (429, 502, 503, 504))
        if not isinstance(result, str) and 200 <= result[0] < 300 and result[2]:
            try:
                partial = json.loads(result[2]).get("partialSuccess") or {}
            except (ValueError, AttributeError):
                partial = {}
            rejected = int(partial.get("rejectedLogRecords") or 0)
            if rejected:
                message = str(partial.get("errorMessage", ""))[:150]
                logger.warning(
                    "forwarder %s: receiver rejected %d of %d log records: %s",
                    self.config.name,
                    rejected,
                    len(batch),
                    message,
                )
                uids = [d.uid for d in batch]
                if len(batch) > 1:
                    # partial_success does not say which records: send them one at a time, so the refused ones
                    # become dead letters of their own (the accepted ones arrive a second time: at least once).
                    return Outcome(
                        retry=uids, error=f"{rejected} records rejected (splitting)", retry_after=0.0
                    )
                return Outcome(dead={uids[0]: f"rejected by the receiver: {message}"})
        return outcome


class ElasticSender(Sender):
    def send(self, batch: Sequence[Due]) -> Outcome:
        url = self.config.option("url").rstrip("/") + "/_bulk"
        headers = {"Content-Type": "application/x-ndjson"}
        if self.config.option("api_key"):
            headers["Authorization"] = f"ApiKey {self.config.option('api_key')}"
        body = bulk_body(batch, self.config.option("index", "mamori-events"))
        result = self.post(url, body, headers)
        if isinstance(result, str) or not 200 <= result[0] < 300:
            return self.http_outcome(batch, result, _default_retryable)
        try:
            items = json.loads(result[2])["items"]
        except (ValueError, KeyError, TypeError):
            return Outcome(retry=[d.uid for d in batch], error="bulk answer without items")
        if len(items) != len(batch):
            return Outcome(retry=[d.uid for d in batch], error="bulk answer with a different item count")
        outcome = Outcome()
        for due_event, item in zip(batch, items, strict=True):
            status = int((item.get("create") or {}).get("status", 0))
            # Every item is checked: 201 created, 409 already there (a resend after a lost answer) = delivered.
            if 200 <= status < 300 or status == 409:
                outcome.delivered.append(due_event.uid)
            elif status == 429 or status >= 500 or status == 0:
                outcome.retry.append(due_event.uid)
                outcome.error = f"bulk item {status}"
            else:
                outcome.dead[due_event.uid] = f"bulk item {status}"
        return outcome


class WebhookSender(Sender):
    def send(self, batch: Sequence[Due]) -> Outcome:
        body = ("\n".join(d.body for d in batch) + "\n").encode("utf-8")
        timestamp = str(int(time.time()))
        headers = {"Content-Type": "application/x-ndjson", "X-Mamori-Timestamp": timestamp}
        secret = self.config.option("secret")
        if secret:
            headers["X-Mamori-Signature"] = webhook_signature(secret, timestamp, body)
        return self.http_outcome(
            batch, self.post(self.config.option("url"), body, headers), _default_retryable
        )


class SyslogSender(Sender):
    """RFC 5425: TLS (certificate verified against ``ca``), octet-counted RFC 5424 frames. Delivered once every
    frame is written and the session closed without error; syslog has no application-level acknowledgement
    (RELP would add one), so an event the receiver loses after TCP took it is not retried."""

    def send(self, batch: Sequence[Due]) -> Outcome:
        host = self.config.option("host")
        port = int(self.config.option("port", 6514))
        context = ssl.create_default_context(cafile=self.config.option("ca"))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        facility = int(self.config.option("facility", 13))
        frames = b"".join(octet_counted(syslog_message(json.loads(d.body), facility)) for d in batch)
        uids = [d.uid for d in batch]
        try:
            with socket.create_connection((host, port), timeout=self.config.timeout) as raw:
                tls = context.wrap_socket(raw, server_hostname=self.config.option("server_name", host))
                tls.sendall(frames)
                # The peer may close without its close_notify (rsyslog does): the frames were all sent.
                with contextlib.suppress(ssl.SSLEOFError):
                    tls.unwrap()
        except (OSError, ssl.SSLError) as err:
            return Outcome(retry=uids, error=type(err).__name__)
        return Outcome(delivered=uids)


_SENDERS: dict[str, type[Sender]] = {
    "splunk_hec": HecSender,
    "otlp_http": OtlpSender,
    "syslog_tls": SyslogSender,
    "elasticsearch": ElasticSender,
    "webhook": WebhookSender,
}


# --- the service ---------------------------------------------------------------------------------------------


@dataclass
class ForwarderState:
    config: ForwarderConfig
    sender: Sender
    failures: int = 0  # consecutive failed attempts (backoff exponent)
    paused_until: float = 0.0  # monotonic
    delivered: int = 0
    last_error: str = ""
    limit: int = 0  # batch size while isolating a refused event (1), else 0: the configured batch


class ForwardingService:
    """One thread moving captured events into the outboxes and delivering each forwarder's due events."""

    BASE_BACKOFF_S = 0.5

    def __init__(
        self,
        storage: Storage,
        configs: Sequence[ForwarderConfig],
        clock: Clock,
        *,
        senders: dict[str, Sender] | None = None,
        interval: float = 0.2,
    ) -> None:
        self.storage = storage
        self.clock = clock
        self.interval = interval
        self.states = [ForwarderState(c, (senders or {}).get(c.name) or _SENDERS[c.type](c)) for c in configs]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._queued: dict[str, int] = {}
        self.max_queued = min((c.max_queued for c in configs), default=0)

    def start(self) -> None:
        import sqlalchemy as sa

        try:
            forward_store.set_capture(self.storage, bool(self.states))
        except sa.exc.SQLAlchemyError as err:
            # An unmigrated database (readyz says so); with forwarders configured nothing may be ingested
            # uncaptured, and ingest cannot run on it anyway.
            logger.warning("forwarder capture not set up: %s", type(err).__name__)
            if self.states:
                raise
        if not self.states:
            return
        self._thread = threading.Thread(target=self._run, name="mamori-forwarders", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def over_bound(self) -> bool:
        """Back-pressure: a forwarder holds more than its ``max_queued`` events (ingest answers 503)."""
        return any(self._queued.get(s.config.name, 0) > s.config.max_queued for s in self.states)

    def status(self) -> list[dict[str, Any]]:
        counts = forward_store.counts(self.storage)
        return [
            {
                "name": s.config.name,
                "type": s.config.type,
                "queued": counts.get(s.config.name, forward_store.Counts(0, 0)).queued,
                "dead_letters": counts.get(s.config.name, forward_store.Counts(0, 0)).dead,
                "delivered_since_start": s.delivered,
                "last_error": s.last_error or None,
            }
            for s in self.states
        ]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self.step()
            except Exception:  # a database hiccup must not end forwarding; the next step tries again
                logger.exception("forwarding step failed")
                busy = False
            if not busy:
                self._stop.wait(self.interval)

    def step(self) -> bool:
        """One round: capture -> outboxes, then one batch per forwarder that is not backing off. True when
        there was work (call again at once)."""
        names = [s.config.name for s in self.states]
        moved = forward_store.distribute(self.storage, names)
        worked = moved > 0
        now = time.monotonic()
        for state in self.states:
            if state.paused_until > now:
                continue
            limit = state.limit or state.config.batch
            batch = forward_store.due(self.storage, state.config.name, ms(self.clock.now()), limit)
            if not batch:
                continue
            worked = True
            self._deliver(state, batch)
        self._queued = {k: v.queued for k, v in forward_store.counts(self.storage).items()}
        return worked

    def _deliver(self, state: ForwarderState, batch: list[Due]) -> None:
        config = state.config
        outcome = state.sender.send(batch)
        forward_store.delivered(self.storage, config.name, outcome.delivered)
        state.delivered += len(outcome.delivered)
        now_ms = ms(self.clock.now())
        if outcome.dead:
            for uid, why in outcome.dead.items():
                forward_store.failed(self.storage, config.name, [uid], next_at=now_ms, error=why, dead=True)
            logger.warning(
                "forwarder %s: %d dead letter(s): %s",
                config.name,
                len(outcome.dead),
                next(iter(outcome.dead.values())),
            )
        if outcome.dead:
            state.limit = 0  # the refused event is isolated: back to whole batches
        if outcome.retry and outcome.retry_after == 0.0 and len(batch) > 1:
            # A permanent refusal of a batch: send one event at a time until the refused one is a dead letter
            # (a broken event never blocks the queue).
            state.limit = 1
            forward_store.failed(
                self.storage, config.name, outcome.retry, next_at=now_ms, error=outcome.error, dead=False
            )
        elif outcome.retry:
            # Receiver down or busy: never a dead letter (the events wait, bounded by max_queued and
            # back-pressure), full-jitter exponential backoff or the receiver's Retry-After.
            state.failures += 1
            delay = outcome.retry_after
            if delay is None:
                cap = min(config.max_backoff, self.BASE_BACKOFF_S * 2 ** min(state.failures, 16))
                delay = random.uniform(0, cap)
            state.paused_until = time.monotonic() + delay
            state.last_error = outcome.error
            forward_store.failed(
                self.storage, config.name, outcome.retry, next_at=now_ms, error=outcome.error, dead=False
            )
            logger.info("forwarder %s: %s; retrying in %.1f s", config.name, outcome.error, delay)
        else:
            state.failures = 0
            state.last_error = ""


__all__ = [
    "TYPES",
    "ForwarderConfig",
    "ForwarderConfigError",
    "ForwardingService",
    "Outcome",
    "bulk_body",
    "ecs_document",
    "hec_body",
    "octet_counted",
    "otlp_body",
    "parse_forwarders",
    "syslog_message",
    "webhook_signature",
]
