"""The one HTTP session every connection of the agent to its server goes through, and what its TLS trusts.

``requests`` lets ``REQUESTS_CA_BUNDLE`` and ``CURL_CA_BUNDLE`` replace the CA a session was given
(``Session.merge_environment_settings``), and corporate PCs often set them for other tools: agent.toml's
``server_ca`` was then silently ignored and every upload failed. Here the trust is an ``ssl.SSLContext`` built
once from ``server_ca`` (or the operating system's store when none is set) and pinned on the adapter, so no
environment variable and no per-request ``verify`` can change it. Proxies from the environment still apply.

The TLS failures are told apart for one-line messages: a server that does not speak TLS at all (a plain-HTTP
port) is not an untrusted certificate, and the fixes differ.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter


def trust_context(server_ca: Path | None) -> ssl.SSLContext:
    """server_ca alone when set; else the OS trust store (OpenSSL's default paths; the Windows/macOS store)."""
    context = ssl.create_default_context(cafile=str(server_ca) if server_ca is not None else None)
    if server_ca is None:
        context.load_default_certs()
    return context


class PinnedTrustAdapter(HTTPAdapter):
    """An HTTPAdapter whose TLS trust is one fixed SSLContext, whatever ``verify`` the request carries."""

    def __init__(self, context: ssl.SSLContext, **kwargs: Any) -> None:
        self._context = context
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self._context
        super().init_poolmanager(*args, **kwargs)

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        kwargs["ssl_context"] = self._context
        return super().proxy_manager_for(proxy, **kwargs)

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: bool | str, cert: Any = None
    ) -> Any:
        host_params, typed = super().build_connection_pool_key_attributes(request, True, cert)
        pool_kwargs: dict[str, Any] = dict(typed)
        for key in ("ca_certs", "ca_cert_dir"):
            pool_kwargs.pop(key, None)
        pool_kwargs["ssl_context"] = self._context
        pool_kwargs["cert_reqs"] = "CERT_REQUIRED"
        return host_params, pool_kwargs

    def cert_verify(self, conn: Any, url: str, verify: bool | str, cert: Any) -> None:
        super().cert_verify(conn, url, True, cert)  # type: ignore[no-untyped-call]
        # urllib3 would load these files into the shared context: the pinned context is the only trust.
        conn.ca_certs = None
        conn.ca_cert_dir = None
        conn.cert_reqs = "CERT_REQUIRED"


def http_session(server_ca: Path | None, session: requests.Session | None = None) -> requests.Session:
    """A session (``session`` if given: tests pass theirs) whose HTTPS trusts exactly ``server_ca``, or the
    OS store when it is None."""
    session = session if session is not None else requests.Session()
    session.mount("https://", PinnedTrustAdapter(trust_context(server_ca)))
    session.verify = True
    return session


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
