"""What the agent's TLS trusts (issue 12, item 7) and how its TLS failures read (item 6), over real local HTTPS and
plain-HTTP servers: agent.toml's server_ca wins over REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE for uploads, policy
pulls and enrollment alike."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.client import BadStatusLine, RemoteDisconnected
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from agent.config import AgentConfig
from agent.report.enrollment import EnrollmentError, enroll
from agent.report.transport import (
    ConnectFailed,
    HttpClient,
    Timeout,
    TlsError,
    TransportError,
    _failure,
    http_session,
    tls_problem,
)
from tests.harness.live_server import free_port
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


# ---- the agent's own client (HttpClient, http.client): the same trust, the environment's proxies ------------


class _Proxy:
    """A real forward proxy on loopback (CONNECT tunnels for https, absolute URIs for http) that records the
    request line and headers of everything it relays."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, str]]] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client: socket.socket) -> None:
        reader = client.makefile("rb")
        line = reader.readline().decode("latin-1").strip()
        headers: dict[str, str] = {}
        raw_headers = b""
        while (header := reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = header.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
            raw_headers += header
        self.seen.append((line, headers))
        method, target, _version = line.split(" ", 2)
        if method == "CONNECT":
            host, port = target.rsplit(":", 1)
            upstream = socket.create_connection((host, int(port)))
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            pending = reader.peek(0) if hasattr(reader, "peek") else b""
            if pending:
                upstream.sendall(reader.read(len(pending)))
        else:
            parts = urlsplit(target)
            upstream = socket.create_connection((parts.hostname or "", parts.port or 80))
            body = reader.read(int(headers.get("content-length", "0")))
            upstream.sendall(
                f"{method} {parts.path or '/'} HTTP/1.1\r\n".encode() + raw_headers + b"\r\n" + body
            )
        threading.Thread(target=_pipe, args=(upstream, client), daemon=True).start()
        _pipe(client, upstream)

    def close(self) -> None:
        self.listener.close()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def proxy() -> Iterator[_Proxy]:
    server = _Proxy()
    yield server
    server.close()


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


def test_the_client_trusts_server_ca_whatever_the_environment(
    pki: tuple[TestCA, TestCA], https: _Server, hostile_env: None, no_proxy_env: None
) -> None:
    with HttpClient(pki[0].path) as client:
        answer = client.get(https.url + "/healthz", timeout=5)
        assert answer.status_code == 200 and answer.json() == {"status": "ok"}
        assert answer.headers.get("content-type") == "application/json"  # case-insensitive, as requests'


def test_the_client_refuses_a_certificate_server_ca_did_not_issue(
    pki: tuple[TestCA, TestCA], hostile_env: None, no_proxy_env: None
) -> None:
    leaf = pki[1].issue("proxy")  # issued by the CA the environment variables name
    server = _Server(leaf.cert, leaf.key)
    try:
        with HttpClient(pki[0].path) as client, pytest.raises(TlsError) as refused:
            client.get(server.url + "/healthz", timeout=5)
        assert tls_problem(refused.value) == "untrusted"
    finally:
        server.close()


def test_without_server_ca_the_client_trusts_the_os_store_not_the_environment(
    https: _Server, pki: tuple[TestCA, TestCA], monkeypatch: pytest.MonkeyPatch, no_proxy_env: None
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pki[0].path))
    monkeypatch.setenv("SSL_CERT_FILE", str(pki[1].path))  # OpenSSL's own variable: not the server's CA
    with HttpClient(None) as client, pytest.raises(TlsError) as refused:
        client.get(https.url + "/healthz", timeout=5)
    assert tls_problem(refused.value) == "untrusted"


def test_a_plain_http_port_is_told_apart_from_an_untrusted_certificate(no_proxy_env: None) -> None:
    server = _Server()
    try:
        with HttpClient(None) as client, pytest.raises(TlsError) as refused:
            client.get(f"https://localhost:{server.port}/healthz", timeout=5)
        assert tls_problem(refused.value) == "no_tls"
    finally:
        server.close()


def test_nothing_listening_and_no_answer_are_transport_errors(no_proxy_env: None) -> None:
    with HttpClient(None) as client:
        with pytest.raises(ConnectFailed):
            client.get(f"http://127.0.0.1:{free_port()}/healthz", timeout=5)
        silent = socket.create_server(("127.0.0.1", 0))  # accepts (backlog), never answers
        try:
            began = time.monotonic()
            with pytest.raises(Timeout):
                client.get(f"http://127.0.0.1:{silent.getsockname()[1]}/", timeout=(5.0, 0.5))
            assert time.monotonic() - began < 4.0  # the read timeout, not the connect timeout
        finally:
            silent.close()
    assert issubclass(Timeout, TransportError) and issubclass(TlsError, TransportError)


def test_https_goes_through_the_environment_proxy_with_the_pinned_trust(
    pki: tuple[TestCA, TestCA],
    https: _Server,
    proxy: _Proxy,
    monkeypatch: pytest.MonkeyPatch,
    no_proxy_env: None,
) -> None:
    user_proxy = proxy.url.replace("http://", "http://taro:p%40ss@")
    monkeypatch.setenv("HTTPS_PROXY", user_proxy)
    with HttpClient(pki[0].path) as client:
        assert client.post(https.url + "/v1/enroll", json={"a": 1}, timeout=5).json()["device_id"] == "d1"
    line, headers = proxy.seen[0]
    assert line.startswith(f"CONNECT localhost:{https.port} HTTP/1.")
    assert headers["proxy-authorization"] == "Basic " + base64.b64encode(b"taro:p@ss").decode()
    # through the tunnel, TLS still trusts server_ca only
    leaf = pki[1].issue("proxy")
    other = _Server(leaf.cert, leaf.key)
    try:
        with HttpClient(pki[0].path) as client, pytest.raises(TlsError):
            client.get(other.url + "/healthz", timeout=5)
    finally:
        other.close()


def test_plain_http_through_the_proxy_and_no_proxy_bypasses_it(
    proxy: _Proxy, monkeypatch: pytest.MonkeyPatch, no_proxy_env: None
) -> None:
    server = _Server()
    try:
        monkeypatch.setenv("http_proxy", proxy.url)
        with HttpClient(None) as client:
            assert client.get(server.url + "/healthz", timeout=5).json() == {"status": "ok"}
        assert proxy.seen[0][0] == f"GET {server.url}/healthz HTTP/1.1"  # absolute URI to a proxy
        monkeypatch.setenv("NO_PROXY", "localhost")
        with HttpClient(None) as client:
            assert client.get(server.url + "/healthz", timeout=5).status_code == 200
        assert len(proxy.seen) == 1  # the second request went straight to the server
    finally:
        server.close()


def test_a_kept_alive_connection_is_reused_and_replaced_when_the_server_closed_it(no_proxy_env: None) -> None:
    server = _Server()
    connections: list[object] = []
    original = server.httpd.process_request

    def counting(request: Any, address: Any) -> None:
        connections.append(address)
        original(request, address)

    server.httpd.process_request = counting  # type: ignore[method-assign,assignment]
    _Handler.protocol_version = "HTTP/1.1"  # keep-alive, as a real server
    try:
        with HttpClient(None) as client:
            for _ in range(3):
                assert client.get(server.url + "/healthz", timeout=5).status_code == 200
            assert len(connections) == 1
            # the server drops idle connections (a restart, an idle timeout): the next request still succeeds
            for connection in client._connections.values():
                assert connection.sock is not None
                connection.sock.shutdown(socket.SHUT_RDWR)
            assert client.get(server.url + "/healthz", timeout=5).status_code == 200
            assert len(connections) == 2
    finally:
        _Handler.protocol_version = "HTTP/1.0"
        server.close()


def test_the_running_agent_imports_neither_requests_nor_ssl_until_it_reports(tmp_path: Path) -> None:
    # agent.app builds the running agent; an agent with no server (drop only) must load neither, and one that
    # reports loads ssl for its server but never requests.
    server = _Server()
    code = (
        "import sys\n"
        "import agent.app\n"
        "from agent.report.service import LazySession\n"
        "loaded = lambda: sorted({m.split('.')[0] for m in sys.modules} & {'ssl', 'requests', 'urllib3', 'http'})\n"
        "print(loaded())\n"
        f"assert LazySession(None).get({server.url + '/healthz'!r}, timeout=5).status_code == 200\n"
        "print(loaded())\n"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=Path(__file__).resolve().parents[3],
        )
    finally:
        server.close()
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["[]", "['http', 'ssl']"]


@pytest.mark.parametrize(
    ("err", "phase", "kind", "message"),
    [
        (TimeoutError(), "connect", Timeout, "no connection within 2.5 s"),
        (TimeoutError(), "request", Timeout, "no answer within 2.5 s"),
        (ssl.SSLError(1, "bad record"), "connect", TlsError, "TLS failed: bad record"),
        (ssl.SSLError(1, "bad record"), "request", TlsError, "TLS failed: bad record"),
        (
            ConnectionRefusedError(111, "Connection refused"),
            "connect",
            ConnectFailed,
            "cannot connect: Connection refused",
        ),
        (ConnectionResetError(104, "reset"), "connect", ConnectFailed, "cannot connect: reset"),
        (
            ConnectionResetError(104, "reset"),
            "request",
            ConnectFailed,
            "connection closed by the server (ConnectionResetError)",
        ),
        (
            RemoteDisconnected("gone"),
            "request",
            ConnectFailed,
            "connection closed by the server (RemoteDisconnected)",
        ),
        (OSError(113, "No route to host"), "request", ConnectFailed, "OSError: No route to host"),
        (BadStatusLine("junk"), "request", ConnectFailed, "bad HTTP answer (BadStatusLine)"),
    ],
)
def test_connect_and_request_failures_are_classified_in_one_place(
    err: BaseException, phase: Any, kind: type[Exception], message: str
) -> None:
    failure = _failure(err, "http://server.test/x", phase, 2.5)
    assert type(failure) is kind
    assert failure.url == "http://server.test/x"
    assert failure.problem == message
