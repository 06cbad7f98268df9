"""A ``requests`` session whose TLS trusts one fixed ``ssl.SSLContext`` (agent/report/transport.py says why),
for the one-shot commands that still speak HTTP through ``requests`` (``mamori agent enroll``, doctor). Its own
module so that the running agent, which uses transport.HttpClient, never imports ``requests``."""

from __future__ import annotations

import ssl
from typing import Any

import requests
from requests.adapters import HTTPAdapter


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


def pinned_session(context: ssl.SSLContext, session: requests.Session | None = None) -> requests.Session:
    session = session if session is not None else requests.Session()
    session.mount("https://", PinnedTrustAdapter(context))
    session.verify = True
    return session
