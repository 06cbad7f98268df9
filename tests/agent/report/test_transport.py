"""What the agent's TLS trusts (issue 12, item 7) and how its TLS failures read (item 6), over real local HTTPS and
plain-HTTP servers: agent.toml's server_ca wins over REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE for uploads, policy
pulls and enrollment alike."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from agent.config import AgentConfig
from agent.report.enrollment import EnrollmentError, enroll
from agent.report.transport import http_session
from tests.harness.pki import TestCA


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self, doc: dict[str, Any]) -> None:
        payload = json.dumps(doc).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        self._answer({"status": "ok"})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self._answer({"device_id": "d1", "token": "mdt_x", "group": "default"})


class _Server:
    def __init__(self, cert: Path | None = None, key: Path | None = None) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        scheme = "http"
        if cert is not None and key is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert, key)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://localhost:{self.httpd.server_address[1]}"
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def pki(tmp_path: Path) -> tuple[TestCA, TestCA]:
    """The server's CA, and another CA the environment variables point at (a corporate proxy's, say)."""
    return TestCA(tmp_path / "server-ca"), TestCA(tmp_path / "other-ca", "Corporate Proxy CA")


@pytest.fixture
def https(pki: tuple[TestCA, TestCA]) -> Iterator[_Server]:
    leaf = pki[0].issue("mamori")
    server = _Server(leaf.cert, leaf.key)
    yield server
    server.close()


@pytest.fixture
def hostile_env(monkeypatch: pytest.MonkeyPatch, pki: tuple[TestCA, TestCA]) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pki[1].path))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(pki[1].path))


def _mkdirs(*paths: Path) -> None:
    for path in paths:
        path.mkdir(parents=True, exist_ok=True)


@pytest.fixture(autouse=True)
def _dirs(tmp_path: Path) -> None:
    _mkdirs(tmp_path / "server-ca", tmp_path / "other-ca")


def test_server_ca_wins_over_both_environment_variables(
    tmp_path: Path, pki: tuple[TestCA, TestCA], https: _Server, hostile_env: None
) -> None:
    config = AgentConfig(state_dir=tmp_path / "agent", server_ca=pki[0].path)
    with http_session(config.server_ca) as session:
        assert session.get(https.url + "/healthz", timeout=5).json() == {"status": "ok"}
        # a per-request verify (what requests merges from the environment) cannot replace it either
        assert session.get(https.url + "/healthz", timeout=5, verify=str(pki[1].path)).status_code == 200


def test_the_environment_ca_is_not_trusted_in_place_of_server_ca(
    tmp_path: Path, pki: tuple[TestCA, TestCA], hostile_env: None
) -> None:
    """A server whose certificate the environment's CA issued is refused when server_ca names another CA."""
    leaf = pki[1].issue("proxy")
    server = _Server(leaf.cert, leaf.key)
    try:
        config = AgentConfig(state_dir=tmp_path / "agent", server_ca=pki[0].path)
        with http_session(config.server_ca) as session, pytest.raises(requests.exceptions.SSLError):
            session.get(server.url + "/healthz", timeout=5)
    finally:
        server.close()


def test_without_server_ca_the_os_store_decides_not_the_environment(
    tmp_path: Path, https: _Server, pki: tuple[TestCA, TestCA], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pki[0].path))  # would make the test CA trusted
    monkeypatch.setenv("CURL_CA_BUNDLE", str(pki[0].path))
    config = AgentConfig(state_dir=tmp_path / "agent")
    with http_session(config.server_ca) as session, pytest.raises(requests.exceptions.SSLError):
        session.get(https.url + "/healthz", timeout=5)


def test_enrollment_trusts_server_ca_whatever_the_environment(
    tmp_path: Path, pki: tuple[TestCA, TestCA], https: _Server, hostile_env: None
) -> None:
    enrollment = enroll(https.url, "secret", tmp_path / "agent", pki[0].path)
    assert enrollment.device_id == "d1"


def test_enroll_refuses_plain_http_unless_asked(tmp_path: Path) -> None:
    server = _Server()
    try:
        with pytest.raises(EnrollmentError) as refused:
            enroll(server.url, "secret", tmp_path / "agent")
        assert "--insecure-http" in str(refused.value) and "unencrypted" in str(refused.value)
        assert enroll(server.url, "secret", tmp_path / "agent", insecure_http=True).device_id == "d1"
    finally:
        server.close()


def test_a_server_that_does_not_speak_tls_is_not_called_an_untrusted_certificate(tmp_path: Path) -> None:
    server = _Server()  # plain HTTP
    try:
        with pytest.raises(EnrollmentError) as err:
            enroll(f"https://localhost:{server.port}", "secret", tmp_path / "agent")
        message = str(err.value)
        assert "does not speak TLS" in message and "server_ca" not in message
    finally:
        server.close()


def test_an_untrusted_certificate_names_server_ca(tmp_path: Path, https: _Server) -> None:
    with pytest.raises(EnrollmentError) as err:
        enroll(https.url, "secret", tmp_path / "agent")
    message = str(err.value)
    assert "not trusted" in message and "server_ca" in message and "\n" not in message


def test_a_refused_secret_says_its_fix_once(tmp_path: Path) -> None:
    """Before: "enrollment secret expired; ask IT for a new one; ask IT for a new enrollment secret"."""

    class Refusing(_Handler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            payload = json.dumps({"detail": "enrollment secret expired; ask IT for a new one"}).encode()
            self.send_response(403)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = _Server()
    server.httpd.RequestHandlerClass = Refusing
    try:
        with pytest.raises(EnrollmentError) as err:
            enroll(server.url, "secret", tmp_path / "agent", insecure_http=True)
        message = str(err.value)
        assert message == "enrollment refused: enrollment secret expired; ask IT for a new enrollment secret"
    finally:
        server.close()
