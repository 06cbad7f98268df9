"""TLS probe against real local servers with certificates made in the test (issue 5, done-when 3)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.posture.tls import check_tls, probe_tls
from policy.model import TlsEndpoint
from tests.harness.pki import TestCA, spki_pin
from tests.harness.tlsserver import TlsServer


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    return TestCA(tmp_path)


@pytest.fixture
def servers() -> Iterator[list[TlsServer]]:
    started: list[TlsServer] = []
    yield started
    for s in started:
        s.close()


def serve(servers: list[TlsServer], cert: Path, key: Path, **kw: object) -> int:
    server = TlsServer(cert, key, **kw)  # type: ignore[arg-type]
    servers.append(server)
    return int(server.port)


def endpoint(port: int, ca: TestCA, **kw: object) -> TlsEndpoint:
    return TlsEndpoint(url=f"https://localhost:{port}/health", ca=str(ca.path), **kw)  # type: ignore[arg-type]


def test_valid_certificate_passes(ca: TestCA, servers: list[TlsServer]) -> None:
    leaf = ca.issue("good")
    port = serve(servers, leaf.cert, leaf.key)
    result = check_tls(endpoint(port, ca))
    assert result.status == "pass", result.detail.en
    assert result.id == f"tls:localhost:{port}"
    assert "TLS 1.3" in result.detail.en
    assert result.remediation is None


def test_valid_certificate_with_matching_pin_passes(ca: TestCA, servers: list[TlsServer]) -> None:
    leaf = ca.issue("pinned")
    port = serve(servers, leaf.cert, leaf.key)
    assert check_tls(endpoint(port, ca, pins=(spki_pin(leaf.private_key),))).status == "pass"
    # a pin of the CA key matches too: pins may name any certificate of the verified chain
    assert check_tls(endpoint(port, ca, pins=(spki_pin(ca.key),))).status == "pass"


FAILURES = {
    "expired": "has expired",
    "wrong_host": "different host name",
    "self_signed": "self-signed",
    "old_version": "old TLS version",
    "pin_mismatch": "does not match the policy's pins",
}


def make_case(case: str, ca: TestCA, servers: list[TlsServer]) -> TlsEndpoint:
    now = datetime.now(UTC)
    if case == "expired":
        leaf = ca.issue("expired", not_before=now - timedelta(days=30), not_after=now - timedelta(days=1))
        return endpoint(serve(servers, leaf.cert, leaf.key), ca)
    if case == "wrong_host":
        leaf = ca.issue("wrong", hosts=("crm.other.example",))
        return endpoint(serve(servers, leaf.cert, leaf.key), ca)
    if case == "self_signed":
        leaf = ca.issue("selfsigned", self_signed=True)
        return endpoint(serve(servers, leaf.cert, leaf.key), ca)
    if case == "old_version":
        leaf = ca.issue("tls12")
        port = serve(servers, leaf.cert, leaf.key, max_version=ssl.TLSVersion.TLSv1_2)
        return endpoint(port, ca, min_version="1.3")
    if case == "pin_mismatch":
        leaf = ca.issue("pinmismatch")
        other = ca.issue("unrelated")
        return endpoint(serve(servers, leaf.cert, leaf.key), ca, pins=(spki_pin(other.private_key),))
    raise AssertionError(case)


@pytest.mark.parametrize("case", sorted(FAILURES))
def test_each_failure_fails_with_its_own_detail(case: str, ca: TestCA, servers: list[TlsServer]) -> None:
    result = check_tls(make_case(case, ca, servers))
    assert result.status == "fail", result.detail.en
    assert FAILURES[case] in result.detail.en
    assert result.detail.ja and result.detail.ja != result.detail.en
    assert result.remediation_key == "posture.remedy.tls"
    others = [text for name, text in FAILURES.items() if name != case]
    assert not any(text in result.detail.en for text in others)


def test_failure_details_are_distinct(ca: TestCA, servers: list[TlsServer]) -> None:
    codes = {case: probe_tls(make_case(case, ca, servers)).code for case in FAILURES}
    assert codes == {case: case for case in FAILURES}


def test_below_min_version_names_the_offered_version(ca: TestCA, servers: list[TlsServer]) -> None:
    outcome = probe_tls(make_case("old_version", ca, servers))
    assert outcome.params["offered"] == "TLS 1.2"


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_tls11_only_server_fails_min_12_if_openssl_allows(ca: TestCA, servers: list[TlsServer]) -> None:
    leaf = ca.issue("tls11")
    try:
        port = serve(
            servers,
            leaf.cert,
            leaf.key,
            min_version=ssl.TLSVersion.TLSv1_1,
            max_version=ssl.TLSVersion.TLSv1_1,
            ciphers="DEFAULT:@SECLEVEL=0",
        )
    except (ssl.SSLError, ValueError) as err:
        pytest.skip(f"this OpenSSL cannot serve TLS 1.1: {err}")
    result = check_tls(endpoint(port, ca, min_version="1.2"))
    assert result.status == "fail"
    assert "old TLS version (TLS 1.1;" in result.detail.en


def test_unreachable_endpoint_is_an_error_not_a_pass(ca: TestCA, servers: list[TlsServer]) -> None:
    leaf = ca.issue("gone")
    port = serve(servers, leaf.cert, leaf.key)
    servers.pop().close()
    result = check_tls(endpoint(port, ca))
    assert result.status == "error"
    assert result.remediation_key == "posture.remedy.check_error"


def test_without_the_custom_ca_a_private_chain_is_untrusted(ca: TestCA, servers: list[TlsServer]) -> None:
    leaf = ca.issue("private")
    port = serve(servers, leaf.cert, leaf.key)
    outcome = probe_tls(TlsEndpoint(url=f"https://localhost:{port}"))
    assert outcome.code == "untrusted"
