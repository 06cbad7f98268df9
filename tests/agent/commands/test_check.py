"""`mamori agent check` (SPEC.md: JSON shape and exit codes 0/1/2) with a signed policy applied to a trusted store.

Exit 0/1 against a real VPN are covered in tests/agent/posture/test_vpn.py; here the policy turns off everything that
depends on this machine and probes local TLS servers, so the outcome is the same on every host.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.cli import main
from agent.commands.check import render_text, verdict
from agent.posture.base import result
from tests.harness.pki import TestCA
from tests.harness.policies import policy_toml, write_agent_config
from tests.harness.tlsserver import TlsServer


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[TestCA, TlsServer]]:
    ca = TestCA(tmp_path)
    leaf = ca.issue("svc")
    srv = TlsServer(leaf.cert, leaf.key)
    yield ca, srv
    srv.close()


def apply_policy(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> Path:
    keys, state = tmp_path / "keys", tmp_path / "state"
    policy = tmp_path / "policy.toml"
    policy.write_text(text, encoding="utf-8")
    bundle = tmp_path / "bundle.json"
    assert main(["policy", "keygen", str(keys)]) == 0
    assert (
        main(["policy", "sign", str(policy), "--key", str(keys / "policy-signing.key"), "-o", str(bundle)])
        == 0
    )
    assert (
        main(
            [
                "policy",
                "apply",
                str(bundle),
                "--pub",
                str(keys / "policy-signing.pub"),
                "--state-dir",
                str(state),
            ]
        )
        == 0
    )
    capsys.readouterr()
    pub = keys / "policy-signing.pub"
    return write_agent_config(tmp_path, state_dir=state, trusted_keys=[pub], language="en")


def run_json(config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, object]]:
    code = main(["agent", "check", "--config", str(config), "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out)


def tls_policy(url: str, ca: Path) -> str:
    return policy_toml(policy_id="cli-test", tls=[{"url": url, "ca": ca, "mode": "block"}])


def test_compliant_exit_0_and_exact_json_shape(
    tmp_path: Path, server: tuple[TestCA, TlsServer], capsys: pytest.CaptureFixture[str]
) -> None:
    ca, srv = server
    config = apply_policy(tmp_path, tls_policy(f"https://localhost:{srv.port}/", ca.path), capsys)
    code, doc = run_json(config, capsys)
    assert code == 0
    assert list(doc) == ["compliant", "checks"] and doc["compliant"] is True
    checks = doc["checks"]
    assert isinstance(checks, list)
    for check in checks:
        assert list(check) == ["id", "status", "mode", "detail"]
        assert check["status"] in ("pass", "fail", "error", "skip") and isinstance(check["detail"], str)
    by_id = {c["id"]: c for c in checks}
    assert by_id[f"tls:localhost:{srv.port}"]["status"] == "pass"
    assert by_id["vpn"] == {"id": "vpn", "status": "skip", "mode": "off", "detail": "Disabled by policy"}


def test_non_compliant_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ca = TestCA(tmp_path)
    leaf = ca.issue("self", self_signed=True)
    srv = TlsServer(leaf.cert, leaf.key)
    try:
        config = apply_policy(tmp_path, tls_policy(f"https://localhost:{srv.port}/", ca.path), capsys)
        code, doc = run_json(config, capsys)
    finally:
        srv.close()
    assert code == 1 and doc["compliant"] is False


def test_could_not_evaluate_exit_2(
    tmp_path: Path, server: tuple[TestCA, TlsServer], capsys: pytest.CaptureFixture[str]
) -> None:
    ca, srv = server
    port = srv.port
    srv.close()  # nothing listens any more: the probe cannot be evaluated
    config = apply_policy(tmp_path, tls_policy(f"https://localhost:{port}/", ca.path), capsys)
    code, doc = run_json(config, capsys)
    assert code == 2 and doc["compliant"] is False


def test_no_trusted_policy_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_agent_config(tmp_path, state_dir=tmp_path / "empty")
    code = main(["agent", "check", "--config", str(config), "--json"])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert (
        captured.err.count("\n") == 1
        and "no trusted policy" in captured.err
        and "mamori policy apply" in captured.err
    )
    assert "Traceback" not in captured.err


def test_text_output_shows_remediation() -> None:
    results = [
        result(
            "vpn",
            "fail",
            "block",
            "posture.vpn.down",
            remediation_key="posture.remedy.vpn.connect",
            patterns="tun*",
        ),
        result("wifi", "pass", "warn", "posture.wifi.none"),
    ]
    text = render_text(results, "ja")
    assert "FAIL" in text and "会社のVPNに接続してください" in text and text.endswith("非準拠")
    assert verdict(results) == (False, 1)
    assert verdict([result("x", "error", "warn", "posture.error", reason="r")]) == (False, 2)
    assert verdict([result("x", "fail", "off", "posture.off")]) == (True, 0)


def test_a_hand_edited_store_is_not_trusted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """trusted.json lives in the worker's state dir: a bundle put there by hand, signed by a key agent.toml does
    not trust, must not decide the verdict."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from policy.signing import sign_policy

    config = apply_policy(tmp_path, policy_toml(policy_id="cli-test"), capsys)
    store = tmp_path / "state" / "policy" / "trusted.json"
    doc = json.loads(store.read_text(encoding="utf-8"))
    forged = policy_toml(policy_id="cli-test", version=9).encode()
    doc["bundle"] = sign_policy(forged, Ed25519PrivateKey.generate()).decode()
    doc["version"] = 9
    store.write_text(json.dumps(doc), encoding="utf-8")
    assert main(["agent", "check", "--config", str(config), "--json"]) == 2
    assert "no trusted policy" in capsys.readouterr().err


def test_check_reads_the_configured_drop_when_the_store_is_empty(
    tmp_path: Path, server: tuple[TestCA, TlsServer], capsys: pytest.CaptureFixture[str]
) -> None:
    """An MDM-drop deployment: agent.toml names policy_bundle and nothing was applied to the store yet."""
    from tests.harness.policies import policy_keys

    ca, srv = server
    keys = policy_keys(tmp_path / "keys")
    drop = tmp_path / "drop.json"
    drop.write_bytes(keys.sign(tls_policy(f"https://localhost:{srv.port}/", ca.path)))
    config = write_agent_config(
        tmp_path,
        state_dir=tmp_path / "empty",
        trusted_keys=[keys.public_path],
        policy_bundle=drop,
        language="en",
    )
    code, doc = run_json(config, capsys)
    assert code == 0 and doc["compliant"] is True
    assert not (tmp_path / "empty" / "trusted.json").exists()  # read, not applied: check changes nothing


def test_a_drop_signed_by_an_untrusted_key_is_refused_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.harness.policies import policy_keys

    trusted, other = policy_keys(tmp_path / "trusted"), policy_keys(tmp_path / "other")
    drop = tmp_path / "drop.json"
    drop.write_bytes(other.sign(policy_toml()))
    config = write_agent_config(
        tmp_path, state_dir=tmp_path / "empty", trusted_keys=[trusted.public_path], policy_bundle=drop
    )
    code = main(["agent", "check", "--config", str(config), "--json"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert str(drop) in err and "not trusted" in err and "mamori policy apply" not in err
