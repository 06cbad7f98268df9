"""TLS posture of required endpoints (policy ``[[network.tls]]``).

Each endpoint gets a real handshake: minimum version, certificate chain (system trust plus the optional CA
bundle of an inspecting proxy), host name, and optional SPKI SHA-256 pins. Each failure has its own detail
(expired, not yet valid, wrong host, self-signed, untrusted issuer, old version, pin mismatch) so IT can tell a
captive portal or an intercepting proxy from an expired certificate. An unreachable endpoint is ``error``: the
check could not be evaluated (``[enforcement] on_check_error`` decides).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import socket
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from agent.i18n import Translator
from agent.posture.base import CheckResult, Status, result
from policy.model import TlsEndpoint

if TYPE_CHECKING:
    # ssl costs 5.1 MB of RSS: imported by the probe, so an agent whose policy names no TLS endpoint (and that
    # reports to no server) never loads it (docs/performance.md).
    import ssl

logger = logging.getLogger(__name__)

# OpenSSL X509_V_ERR_* codes (openssl/x509_vfy.h)
X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT = 2
X509_V_ERR_CERT_NOT_YET_VALID = 9
X509_V_ERR_CERT_HAS_EXPIRED = 10
X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT = 18
X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN = 19
X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY = 20
X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE = 21
X509_V_ERR_HOSTNAME_MISMATCH = 62
X509_V_ERR_IP_ADDRESS_MISMATCH = 64

_VERSION_REASONS = (
    "UNSUPPORTED_PROTOCOL",
    "TLSV1_ALERT_PROTOCOL_VERSION",
    "NO_PROTOCOLS_AVAILABLE",
    "WRONG_SSL_VERSION",
    "VERSION_TOO_LOW",
    "TLSV1_ALERT_INSUFFICIENT_SECURITY",
)


@dataclass(frozen=True)
class TlsOutcome:
    """``code`` names the outcome: ok, expired, not_yet_valid, wrong_host, self_signed, untrusted, old_version,
    pin_mismatch, unreachable, handshake."""

    code: str
    version: str = ""
    params: dict[str, str] = field(default_factory=dict)


def classify_verify_error(verify_code: int) -> str:
    return {
        X509_V_ERR_CERT_HAS_EXPIRED: "expired",
        X509_V_ERR_CERT_NOT_YET_VALID: "not_yet_valid",
        X509_V_ERR_HOSTNAME_MISMATCH: "wrong_host",
        X509_V_ERR_IP_ADDRESS_MISMATCH: "wrong_host",
        X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT: "self_signed",
        X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN: "self_signed",
    }.get(verify_code, "untrusted")


def spki_sha256(der_cert: bytes) -> str:
    """base64(SHA-256(SubjectPublicKeyInfo)) of a DER certificate: the pin format of HPKP/RFC 7469."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_der_x509_certificate(der_cert)
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


def endpoint_address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if not parts.hostname:
        raise ValueError(f"{url!r} has no host")
    return parts.hostname, parts.port or 443


def check_id(endpoint: TlsEndpoint) -> str:
    """``tls:HOST:PORT``; a very long host is shortened with a hash so the id fits event data (64 chars)."""
    host, port = endpoint_address(endpoint.url)
    cid = f"tls:{host}:{port}"
    if len(cid) <= 64:
        return cid
    digest = hashlib.sha256(host.encode()).hexdigest()[:8]
    keep = 64 - len(f"tls:-{digest}:{port}")
    return f"tls:{host[:keep]}-{digest}:{port}"


Connector = Callable[[tuple[str, int], float], socket.socket]


def _connect(address: tuple[str, int], timeout: float) -> socket.socket:
    return socket.create_connection(address, timeout=timeout)


def probe_tls(endpoint: TlsEndpoint, timeout: float = 5.0, connect: Connector = _connect) -> TlsOutcome:
    import ssl

    host, port = endpoint_address(endpoint.url)
    context = ssl.create_default_context()
    if endpoint.ca:
        try:
            context.load_verify_locations(cafile=endpoint.ca)
        except (OSError, ssl.SSLError) as err:
            return TlsOutcome("bad_ca", params={"reason": f"{endpoint.ca}: {err}"})
    context.minimum_version = (
        ssl.TLSVersion.TLSv1_3 if endpoint.min_version == "1.3" else ssl.TLSVersion.TLSv1_2
    )
    try:
        raw = connect((host, port), timeout)
    except OSError as err:
        return TlsOutcome("unreachable", params={"reason": err.strerror or type(err).__name__})
    try:
        with context.wrap_socket(raw, server_hostname=host) as tls:
            version = tls.version() or ""
            chain = _verified_chain(tls)
    except ssl.SSLCertVerificationError as err:
        return TlsOutcome(classify_verify_error(err.verify_code), params={"reason": err.verify_message or ""})
    except ssl.SSLError as err:
        if (err.reason or "").upper() in _VERSION_REASONS:
            offered = _highest_offered(host, port, timeout, connect)
            return TlsOutcome(
                "old_version", params={"offered": offered or "?", "minimum": endpoint.min_version}
            )
        return TlsOutcome("handshake", params={"reason": err.reason or str(err)})
    except OSError as err:
        return TlsOutcome("unreachable", params={"reason": err.strerror or type(err).__name__})
    finally:
        raw.close()
    if endpoint.pins:
        seen = [spki_sha256(der) for der in chain]
        if not set(seen) & set(endpoint.pins):
            return TlsOutcome("pin_mismatch", version, {"seen": seen[0] if seen else "?"})
    return TlsOutcome("ok", version)


def _verified_chain(tls: ssl.SSLSocket) -> list[bytes]:
    """DER certificates of the verified chain (leaf first): public API on 3.13+, the private one before."""
    import ssl

    public = getattr(tls, "get_verified_chain", None)
    if public is not None:
        return [bytes(c) for c in public()]
    sslobj = getattr(tls, "_sslobj", None)
    getter = getattr(sslobj, "get_verified_chain", None)
    if getter is not None:
        return [c.public_bytes(ssl._ssl.ENCODING_DER) for c in getter()]  # type: ignore[attr-defined]
    leaf = tls.getpeercert(binary_form=True)
    return [leaf] if leaf else []


def _highest_offered(host: str, port: int, timeout: float, connect: Connector) -> str:
    """Which lower version the server does speak (for the detail). OpenSSL may refuse TLS < 1.2 entirely."""
    import ssl

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with warnings.catch_warnings():  # deliberately old: we only want to name what the server speaks
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = ssl.TLSVersion.TLSv1
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    except (ValueError, ssl.SSLError):
        pass
    try:
        with connect((host, port), timeout) as raw, context.wrap_socket(raw, server_hostname=host) as tls:
            return (tls.version() or "?").replace("TLSv", "TLS ")
    except (OSError, ssl.SSLError):
        return "?"


def check_tls(
    endpoint: TlsEndpoint,
    translator: Translator | None = None,
    timeout: float = 5.0,
    connect: Connector = _connect,
) -> CheckResult:
    cid = check_id(endpoint)
    outcome = probe_tls(endpoint, timeout, connect)
    host = cid.removeprefix("tls:")
    if outcome.code == "ok":
        return result(
            cid,
            "pass",
            endpoint.mode,
            "posture.tls.ok",
            translator=translator,
            endpoint=host,
            version=outcome.version.replace("TLSv", "TLS "),
        )
    status: Status = "error" if outcome.code in ("unreachable", "bad_ca") else "fail"
    remedy = "posture.remedy.check_error" if status == "error" else "posture.remedy.tls"
    params = {"endpoint": host, "reason": "", **outcome.params}
    return result(
        cid,
        status,
        endpoint.mode,
        f"posture.tls.{outcome.code}",
        remediation_key=remedy,
        translator=translator,
        **params,
    )
