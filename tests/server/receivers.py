"""Protocol-faithful local receivers for the forwarder tests: Splunk HEC, OTLP/HTTP logs (JSON),
Elasticsearch bulk and a signed webhook on one loopback HTTP server. Each checks its wire format strictly
(a format error is recorded in ``errors`` and answered 400, so the test sees it) and records what arrived by
event uid; ``stop()`` / ``start()`` take the port down and up again (a receiver outage)."""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HEC_TOKEN = "0b6d3b2c-hec-test-token"
WEBHOOK_SECRET = "webhook-test-secret"


def signature(timestamp: str, raw: bytes) -> str:
    """What a webhook's ``X-Mamori-Signature`` must be: sha256=HMAC-SHA256(secret, timestamp "." body)."""
    mac = hmac.new(WEBHOOK_SECRET.encode(), timestamp.encode() + b"." + raw, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class Receivers:
    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.lock = threading.Lock()
        self.errors: list[str] = []
        self.hec: Counter[str] = Counter()
        self.otlp: Counter[str] = Counter()
        self.elastic: dict[str, dict[str, Any]] = {}  # _id -> document (the index deduplicates)
        self.elastic_conflicts = 0
        self.webhook: Counter[str] = Counter()
        self.refuse_uid: str | None = None  # answered as a permanent refusal (a broken event)
        self.otlp_reject_uid: str | None = None  # left out of an OTLP batch and reported in partialSuccess
        # HEC indexer acknowledgement: ackIds answer false to this many polls, then true (None: never)
        self.hec_ack_after: int | None = 0
        self.hec_pending: dict[int, list[str]] = {}  # ackId -> uids of the batch
        self.hec_ack_polls: Counter[int] = Counter()
        self.hec_channels: set[str] = set()
        self.alerts: dict[str, dict[str, Any]] = {}  # alert webhook (server/alerts.py): id -> alert
        self.alert_arrivals: dict[str, list[float]] = {}  # id -> monotonic arrival times
        self.records: dict[str, dict[str, Any]] = {}
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Receivers:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                try:
                    status, answer = owner.handle(self.path, dict(self.headers), raw)
                except (AssertionError, KeyError, ValueError, TypeError) as err:
                    with owner.lock:
                        owner.errors.append(f"{self.path}: {type(err).__name__}: {err}")
                    status, answer = 400, {"error": str(err)}
                body = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # --- the protocols ------------------------------------------------------------------------------------

    def handle(self, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, Any]:
        if path == "/services/collector/event":
            return self._hec(headers, raw)
        if path.split("?", maxsplit=1)[0] == "/services/collector/ack":
            return self._hec_ack(headers, raw)
        if path == "/v1/logs":
            return self._otlp(headers, raw)
        if path == "/_bulk":
            return self._bulk(headers, raw)
        if path == "/hook":
            return self._webhook(headers, raw)
        if path == "/alerts":
            return self._alert(headers, raw)
        return 404, {"error": "no such path"}

    def _record(self, record: dict[str, Any]) -> str:
        uid = record["metadata"]["uid"]
        assert record["metadata"]["version"] == "1.8.0"
        self.records[uid] = record
        return str(uid)

    def _hec(self, headers: dict[str, str], raw: bytes) -> tuple[int, Any]:
        assert headers["Authorization"] == f"Splunk {HEC_TOKEN}", "Authorization: Splunk <token>"
        if headers.get("Content-Encoding") == "gzip":
            raw = gzip.decompress(raw)
        # HEC's batched form: JSON event objects one after another (whitespace between them allowed).
        decoder, text, pos, uids = json.JSONDecoder(), raw.decode("utf-8"), 0, []
        while pos < len(text):
            while pos < len(text) and text[pos].isspace():
                pos += 1
            if pos >= len(text):
                break
            obj, pos = decoder.raw_decode(text, pos)
            assert set(obj) <= {"time", "host", "source", "sourcetype", "index", "event", "fields"}, (
                obj.keys()
            )
            assert isinstance(obj["time"], float | int) and obj["event"]["time"] == round(obj["time"] * 1000)
            assert obj["host"] == obj["event"]["device"]["uid"] and obj["source"] == "mamori"
            uids.append(obj["event"]["metadata"]["uid"])
            if uids[-1] == self.refuse_uid:
                return 400, {"text": "Invalid data format", "code": 6, "invalid-event-number": len(uids) - 1}
        with self.lock:
            for obj_uid in uids:
                self.hec[obj_uid] += 1
            channel = headers.get("X-Splunk-Request-Channel")
            if channel is not None:  # indexer acknowledgement: HEC answers an ackId per request
                self.hec_channels.add(str(uuid.UUID(channel)))
                ack_id = len(self.hec_pending)
                self.hec_pending[ack_id] = uids
                return 200, {"text": "Success", "code": 0, "ackId": ack_id}
        return 200, {"text": "Success", "code": 0}

    def _hec_ack(self, headers: dict[str, str], raw: bytes) -> tuple[int, Any]:
        assert headers["Authorization"] == f"Splunk {HEC_TOKEN}"
        assert str(uuid.UUID(headers["X-Splunk-Request-Channel"])) in self.hec_channels, "the same channel"
        answer = {}
        with self.lock:
            for ack_id in json.loads(raw)["acks"]:
                self.hec_ack_polls[ack_id] += 1
                after = self.hec_ack_after
                answer[str(ack_id)] = after is not None and self.hec_ack_polls[ack_id] > after
        return 200, {"acks": answer}

    def _otlp(self, headers: dict[str, str], raw: bytes) -> tuple[int, Any]:
        assert headers["Content-Type"] == "application/json"
        doc = json.loads(raw)
        assert set(doc) == {"resourceLogs"}
        (resource,) = doc["resourceLogs"]
        assert {"key": "service.name", "value": {"stringValue": "mamori"}} in resource["resource"][
            "attributes"
        ]
        (scope,) = resource["scopeLogs"]
        uids = []
        for log in scope["logRecords"]:
            record = json.loads(log["body"]["stringValue"])
            # proto3 JSON mapping: fixed64 as a decimal string; SeverityNumber as its number.
            assert log["timeUnixNano"] == str(record["time"] * 1_000_000)
            assert isinstance(log["severityNumber"], int) and 0 <= log["severityNumber"] <= 24
            attributes = {a["key"]: a["value"] for a in log["attributes"]}
            assert attributes["event.id"] == {"stringValue": record["metadata"]["uid"]}
            assert attributes["ocsf.class_uid"] == {"intValue": str(record["class_uid"])}
            uids.append(self._record(record))
        rejected = [u for u in uids if u == self.otlp_reject_uid]
        with self.lock:
            for uid in uids:
                if uid not in rejected:
                    self.otlp[uid] += 1
        if rejected:
            return 200, {
                "partialSuccess": {"rejectedLogRecords": len(rejected), "errorMessage": "bad record"}
            }
        return 200, {"partialSuccess": {}}

    def _bulk(self, headers: dict[str, str], raw: bytes) -> tuple[int, Any]:
        assert headers["Content-Type"] == "application/x-ndjson"
        text = raw.decode("utf-8")
        assert text.endswith("\n"), "bulk bodies end with a newline"
        lines = text[:-1].split("\n")
        assert len(lines) % 2 == 0
        items = []
        with self.lock:
            for action_line, doc_line in zip(lines[::2], lines[1::2], strict=True):
                action = json.loads(action_line)
                assert list(action) == ["create"], "create, never index (no overwrite)"
                meta = action["create"]
                doc = json.loads(doc_line)
                assert meta["_id"] == doc["ocsf"]["metadata"]["uid"] == doc["event"]["id"]
                assert doc["@timestamp"].endswith("Z") and doc["host"]["id"] == doc["ocsf"]["device"]["uid"]
                if meta["_id"] == self.refuse_uid:
                    items.append(
                        {
                            "create": {
                                "_id": meta["_id"],
                                "status": 400,
                                "error": {"type": "mapper_parsing_exception"},
                            }
                        }
                    )
                elif meta["_id"] in self.elastic:
                    self.elastic_conflicts += 1
                    items.append(
                        {
                            "create": {
                                "_id": meta["_id"],
                                "status": 409,
                                "error": {"type": "version_conflict_engine_exception"},
                            }
                        }
                    )
                else:
                    self.elastic[meta["_id"]] = doc
                    items.append({"create": {"_id": meta["_id"], "status": 201, "result": "created"}})
        return 200, {"took": 1, "errors": any(i["create"]["status"] >= 300 for i in items), "items": items}

    def _webhook(self, headers: dict[str, str], raw: bytes) -> tuple[int, Any]:
        timestamp = headers["X-Mamori-Timestamp"]
        expected = signature(timestamp, raw)
        assert hmac.compare_digest(headers["X-Mamori-Signature"], expected), "bad signature"
        records = [json.loads(line) for line in raw.decode("utf-8").splitlines()]
        if any(r["metadata"]["uid"] == self.refuse_uid for r in records):
            return 422, {"error": "refused"}
        with self.lock:
            for record in records:
                self.webhook[record["metadata"]["uid"]] += 1
        return 200, {}

    def _alert(self, headers: dict[str, str], raw: bytes) -> tuple[int, Any]:
        """One alert a request, JSON, signed like the webhook forwarder; a stale timestamp is refused."""
        timestamp = headers["X-Mamori-Timestamp"]
        expected = signature(timestamp, raw)
        assert hmac.compare_digest(headers["X-Mamori-Signature"], expected), "bad signature"
        assert abs(time.time() - int(timestamp)) <= 300, "stale timestamp"
        assert headers["Content-Type"] == "application/json"
        doc = json.loads(raw)
        alert = doc["alert"]
        assert doc["type"] == "mamori.alert" and headers["X-Mamori-Alert-Id"] == alert["id"]
        assert doc["text"]["ja"] and doc["text"]["en"] and doc["text"]["ja"] != doc["text"]["en"]
        with self.lock:
            self.alerts[alert["id"]] = alert
            self.alert_arrivals.setdefault(alert["id"], []).append(time.monotonic())
        return 200, {}
