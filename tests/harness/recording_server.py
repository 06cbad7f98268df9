"""A recording fake server: a real HTTP server on loopback whose answers a test scripts, and which records what
it received (decompressed NDJSON lines, headers)."""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Answer = tuple[int, dict[str, str], Any]
Script = Callable[[list[dict[str, Any]]], Answer]


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    lines: list[dict[str, Any]]
    raw: bytes


def accept_all(lines: list[dict[str, Any]]) -> Answer:
    return 200, {}, {"accepted": len(lines), "duplicate": 0, "rejected": []}


@dataclass
class RecordingServer:
    script: Script = accept_all
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                body = gzip.decompress(raw) if self.headers.get("Content-Encoding") == "gzip" else raw
                lines = (
                    [json.loads(line) for line in body.splitlines() if line.strip()]
                    if self.path == "/v1/events"
                    else []
                )
                outer.received.append(Received(self.path, dict(self.headers), lines, body))
                status, headers, doc = (
                    outer.script(lines) if self.path == "/v1/events" else (200, {}, {"status": "ok"})
                )
                payload = json.dumps(doc).encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def events(self) -> list[dict[str, Any]]:
        return [line for r in self.received if r.path == "/v1/events" for line in r.lines]
