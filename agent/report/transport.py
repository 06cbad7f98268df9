"""Every connection of the agent to its server, and what its TLS trusts.

The running agent speaks HTTP through :class:`HttpClient` (the standard library's ``http.client``): ``requests``
and urllib3 cost ~11 MB of resident memory, more than the agent's whole budget allows (docs/performance.md,
"Agent memory"). One-shot commands (``mamori agent enroll``, doctor) still use :func:`http_session`
(``requests``); both trust exactly the same :func:`trust_context`.

``requests`` lets ``REQUESTS_CA_BUNDLE`` and ``CURL_CA_BUNDLE`` replace the CA a session was given
(``Session.merge_environment_settings``), and corporate PCs often set them for other tools: agent.toml's
``server_ca`` was then silently ignored and every upload failed. Here the trust is an ``ssl.SSLContext`` built
once from ``server_ca`` (or the operating system's store when none is set) and pinned on the adapter, so no
environment variable and no per-request ``verify`` can change it. Proxies from the environment still apply
(``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY``, ``NO_PROXY``; on Windows and macOS the system's settings too,
through ``urllib.request.getproxies``, which is what ``requests`` asks).

The TLS failures are told apart for one-line messages: a server that does not speak TLS at all (a plain-HTTP
port) is not an untrusted certificate, and the fixes differ.
"""

from __future__ import annotations

import base64
import json
import os
import select
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote, urlsplit

from core import __version__

if TYPE_CHECKING:
    import http.client
    import ssl
    from email.message import Message

    import requests


def trust_context(server_ca: Path | None) -> ssl.SSLContext:
    """server_ca alone when set; else the OS trust store (OpenSSL's default paths; the Windows/macOS store)."""
    import ssl  # here, not at import: an agent that reports to no server never loads it (~5 MB)

    context = ssl.create_default_context(cafile=str(server_ca) if server_ca is not None else None)
    if server_ca is None:
        context.load_default_certs()
    return context


class TransportError(Exception):
    """A request got no HTTP answer (the analogue of ``requests.RequestException``); ``url`` is what was asked."""

    def __init__(self, url: str, problem: str) -> None:
        self.url = url
        self.problem = problem
        super().__init__(f"{url}: {problem}")


class ConnectFailed(TransportError):
    """The server (or the proxy) could not be reached: name resolution, refused, reset, proxy refusal."""


class Timeout(TransportError):
    """No connection or no answer in time."""


class TlsError(TransportError):
    """The TLS handshake failed; the ``ssl`` error is ``__cause__`` (read it with :func:`tls_problem`)."""


def request_errors() -> tuple[type[Exception], ...]:
    """What a request through :class:`HttpClient` (or a ``requests`` session, which tests pass) raises when it
    gets no answer. ``requests`` is named only when something has already imported it."""
    found: tuple[type[Exception], ...] = (TransportError,)
    loaded = sys.modules.get("requests")
    return (*found, loaded.RequestException) if loaded is not None else found


@dataclass(frozen=True)
class Response:
    """An HTTP answer, read whole (the agent's answers are small: JSON, a policy bundle of <= 1 MiB)."""

    status_code: int
    headers: Message  # case-insensitive ``get``, as requests' headers
    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)


MAX_RESPONSE_BYTES = 8 * 1024 * 1024
Timeouts = float | tuple[float, float]  # one for both, or (connect, read) as in requests


class HttpClient:
    """GET and POST over ``http.client`` with ``server_ca``'s pinned trust and the environment's proxies.

    One kept-alive connection per server (and proxy), reused while the server keeps it open; a request that
    finds a reused connection closed by the server is sent once more on a fresh one (the agent's requests are
    idempotent: events carry their uid, checkins and policy pulls are repeatable). Thread-safe: requests are
    serialised, which the one upload thread never notices.
    """

    def __init__(self, server_ca: Path | None) -> None:
        self.server_ca = server_ca
        self._context: ssl.SSLContext | None = None
        self._lock = threading.Lock()
        self._connections: dict[tuple[str, str, int, str], http.client.HTTPConnection] = {}

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            for connection in self._connections.values():
                connection.close()
            self._connections.clear()

    def get(
        self, url: str, *, headers: Mapping[str, str] | None = None, timeout: Timeouts = 30.0
    ) -> Response:
        return self.request("GET", url, headers=headers, timeout=timeout)

    def post(
        self,
        url: str,
        *,
        data: bytes | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: Timeouts = 30.0,
    ) -> Response:
        head = dict(headers or {})
        if json is not None:
            import json as json_module

            data = json_module.dumps(json).encode("utf-8")
            head.setdefault("Content-Type", "application/json")
        return self.request("POST", url, body=data or b"", headers=head, timeout=timeout)

    def request(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: Timeouts = 30.0,
    ) -> Response:
        """Send one request and read the whole answer. Raises TransportError (ConnectFailed, Timeout, TlsError)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConnectFailed(url, "not an http:// or https:// URL")
        connect_timeout, read_timeout = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        proxy = proxy_for(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        key = (parts.scheme, parts.hostname, port, proxy or "")
        target = (
            url
            if proxy and parts.scheme == "http"
            else (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        )
        head = {"User-Agent": f"mamori-agent/{__version__}", "Accept-Encoding": "identity"}
        if proxy and parts.scheme == "http":
            head.update(_proxy_auth(proxy))
        head.update(headers or {})
        with self._lock:
            for attempt in (1, 2):
                connection = self._connections.pop(key, None)
                reused = connection is not None and not _dropped(connection)
                if connection is not None and not reused:
                    connection.close()
                if connection is None or not reused:
                    connection = self._connect(
                        url,
                        scheme=parts.scheme,
                        host=parts.hostname,
                        port=port,
                        proxy=proxy,
                        timeout=connect_timeout,
                    )
                try:
                    if connection.sock is not None:
                        connection.sock.settimeout(read_timeout)
                    connection.request(method, target, body=body, headers=head)
                    answer = connection.getresponse()
                    content = answer.read(MAX_RESPONSE_BYTES + 1)
                except (OSError, _http_exception()) as err:
                    connection.close()
                    if reused and attempt == 1 and _closed_by_server(err):
                        continue  # the server closed the kept-alive connection: once more, on a new one
                    raise _failure(err, url, "request", read_timeout) from err
                if len(content) > MAX_RESPONSE_BYTES:
                    connection.close()
                    raise ConnectFailed(url, f"answer larger than {MAX_RESPONSE_BYTES} bytes")
                if answer.will_close:
                    connection.close()
                else:
                    self._connections[key] = connection
                return Response(answer.status, answer.headers, content)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _connect(
        self, url: str, *, scheme: str, host: str, port: int, proxy: str | None, timeout: float
    ) -> http.client.HTTPConnection:
        import http.client

        connection: http.client.HTTPConnection
        if proxy is not None:
            proxy_parts = urlsplit(proxy)
            if proxy_parts.scheme != "http" or not proxy_parts.hostname:
                raise ConnectFailed(
                    url,
                    f"proxy {_without_credentials(proxy)} is not an http:// proxy URL; set HTTPS_PROXY to one",
                )
            proxy_host, proxy_port = proxy_parts.hostname, proxy_parts.port or 80
        if scheme == "https":
            context = self._trust()
            if proxy is not None:
                connection = http.client.HTTPSConnection(
                    proxy_host, proxy_port, timeout=timeout, context=context
                )
                connection.set_tunnel(host, port, headers=_proxy_auth(proxy))
            else:
                connection = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
        elif proxy is not None:
            connection = http.client.HTTPConnection(proxy_host, proxy_port, timeout=timeout)
        else:
            connection = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            connection.connect()
        except OSError as err:
            connection.close()
            raise _failure(err, url, "connect", timeout) from err
        return connection

    def _trust(self) -> ssl.SSLContext:
        if self._context is None:
            self._context = trust_context(self.server_ca)
        return self._context


def _closed_by_server(err: BaseException) -> bool:
    import http.client

    return isinstance(err, (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected))


def _failure(
    err: BaseException, url: str, phase: Literal["connect", "request"], timeout: float
) -> TransportError:
    """The one classification of what connecting (``phase="connect"``) or sending a request and reading its
    answer (``"request"``) raised: the error to raise ``from err``."""
    import ssl

    if phase == "request" and _closed_by_server(err):
        return ConnectFailed(url, f"connection closed by the server ({type(err).__name__})")
    if isinstance(err, TimeoutError):
        waited = "no connection" if phase == "connect" else "no answer"
        return Timeout(url, f"{waited} within {timeout:g} s")
    if isinstance(err, ssl.SSLError):
        return TlsError(url, f"TLS failed: {err}")
    if isinstance(err, OSError):
        if phase == "connect":
            # http.client reports a proxy's refusal of CONNECT as OSError("Tunnel connection failed: 407 ...")
            return ConnectFailed(url, f"cannot connect: {err.strerror or err}")
        return ConnectFailed(url, f"{type(err).__name__}: {err.strerror or err}")
    return ConnectFailed(url, f"bad HTTP answer ({type(err).__name__})")  # a malformed answer


def _http_exception() -> type[Exception]:
    import http.client

    return http.client.HTTPException


def _dropped(connection: http.client.HTTPConnection) -> bool:
    """Whether the server closed a kept-alive connection (readable with nothing to read), as urllib3 checks."""
    sock = connection.sock
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _proxy_auth(proxy: str) -> dict[str, str]:
    parts = urlsplit(proxy)
    if parts.username is None:
        return {}
    pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
    return {"Proxy-Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}


def _without_credentials(proxy: str) -> str:
    parts = urlsplit(proxy)
    return proxy if parts.username is None else proxy.replace(parts.netloc, parts.netloc.rsplit("@", 1)[1], 1)


_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


def proxy_for(url: str) -> str | None:
    """The proxy URL for ``url``, or None: what ``requests`` would use (urllib.request.getproxies and
    proxy_bypass, which read HTTPS_PROXY / HTTP_PROXY / ALL_PROXY / NO_PROXY, and on Windows and macOS the
    system's proxy settings). On Linux, with no proxy variable set, urllib.request (~2 MB) is not even loaded."""
    if sys.platform.startswith("linux") and not any(
        name.lower() in _PROXY_VARIABLES and value for name, value in os.environ.items()
    ):
        return None
    import urllib.request

    parts = urlsplit(url)
    host = parts.hostname or ""
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy:
        return None
    netloc = f"{host}:{parts.port}" if parts.port else host
    if urllib.request.proxy_bypass(netloc) or urllib.request.proxy_bypass(host):
        return None
    return proxy if "://" in proxy else "http://" + proxy


def http_session(server_ca: Path | None, session: requests.Session | None = None) -> requests.Session:
    """A ``requests`` session (``session`` if given: tests pass theirs) whose HTTPS trusts exactly ``server_ca``,
    or the OS store when it is None. For one-shot commands; the running agent uses :class:`HttpClient`."""
    from agent.report.pinned_requests import pinned_session

    return pinned_session(trust_context(server_ca), session)


def tls_problem(err: BaseException) -> str:
    """ "no_tls" (the port speaks plain HTTP or something else), "untrusted" (certificate not trusted or
    wrong name), "expired", or "other", from an SSLError chain."""
    text = " ".join(str(e) for e in _chain(err)).upper()
    if "WRONG_VERSION_NUMBER" in text or "RECORD_LAYER_FAILURE" in text or "UNKNOWN_PROTOCOL" in text:
        return "no_tls"
    if "PACKET LENGTH TOO LONG" in text or "HTTP_REQUEST" in text:
        return "no_tls"
    if "CERTIFICATE HAS EXPIRED" in text:
        return "expired"
    if "CERTIFICATE_VERIFY_FAILED" in text or "HOSTNAME MISMATCH" in text or "SELF-SIGNED" in text:
        return "untrusted"
    return "other"


def tls_advice(problem: str, server_ca: Path | None) -> str:
    """The one-line cause and fix for a ``tls_problem`` code (English: admins read it)."""
    if problem == "no_tls":
        return (
            "the server does not speak TLS on this port (is it plain HTTP?); put TLS in front of it "
            "(a reverse proxy) or use its https:// port"
        )
    if problem == "expired":
        return "the server's certificate has expired; renew it on the server"
    if problem == "untrusted":
        if server_ca is not None:
            return (
                f"the server's certificate is not signed by server_ca ({server_ca}) or does not name this "
                "host; point server_ca at the CA that issued it"
            )
        return (
            "the server's certificate is not trusted by this PC; set server_ca in agent.toml to the CA "
            "that issued it"
        )
    return "TLS handshake failed; check the URL, the server's certificate and server_ca in agent.toml"


def _chain(err: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = err
    while current is not None and current not in seen:
        seen.append(current)
        for arg in getattr(current, "args", ()):
            if isinstance(arg, BaseException) and arg not in seen:
                seen.append(arg)
                inner = getattr(arg, "reason", None)
                if isinstance(inner, BaseException):
                    seen.append(inner)
        current = current.__cause__ or current.__context__
    return seen
