"""`mamori policy sign` with an encrypted private key: the passphrase from a file, the environment or a prompt,
never the command line; a missing or wrong passphrase is one line naming the fix."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from agent.cli import main
from core.clock import FakeClock
from policy import cli as policy_cli
from tests.policy.conftest import NOW, policy_bytes


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(policy_cli, "clock", FakeClock(NOW))
    monkeypatch.delenv("MAMORI_KEY_PASSPHRASE", raising=False)


@pytest.fixture
def encrypted(tmp_path: Path) -> Path:
    secret = tmp_path / "passphrase.txt"
    secret.write_text("correct horse battery staple\n")
    assert main(["policy", "keygen", str(tmp_path / "keys"), "--passphrase-file", str(secret)]) == 0
    key = tmp_path / "keys" / "policy-signing.key"
    assert b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in key.read_bytes()
    return key


def _sign(capsys: pytest.CaptureFixture[str], key: Path, tmp_path: Path, *extra: str) -> tuple[int, str]:
    policy = tmp_path / "p.toml"
    policy.write_bytes(policy_bytes())
    code = main(
        ["policy", "sign", str(policy), "--key", str(key), "-o", str(tmp_path / "p.dsse.json"), *extra]
    )
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    return code, err


def _verifies(tmp_path: Path, key: Path) -> bool:
    pub = key.with_suffix(".pub")
    return main(["policy", "verify", str(tmp_path / "p.dsse.json"), "--pub", str(pub)]) == 0


def test_sign_with_a_passphrase_file(
    capsys: pytest.CaptureFixture[str], encrypted: Path, tmp_path: Path
) -> None:
    code, _ = _sign(capsys, encrypted, tmp_path, "--passphrase-file", str(tmp_path / "passphrase.txt"))
    assert code == 0 and _verifies(tmp_path, encrypted)


def test_sign_with_the_passphrase_in_the_environment(
    capsys: pytest.CaptureFixture[str], encrypted: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAMORI_KEY_PASSPHRASE", "correct horse battery staple")
    code, _ = _sign(capsys, encrypted, tmp_path)
    assert code == 0 and _verifies(tmp_path, encrypted)


def test_missing_passphrase_names_the_fix(
    capsys: pytest.CaptureFixture[str], encrypted: Path, tmp_path: Path
) -> None:
    code, err = _sign(capsys, encrypted, tmp_path)
    assert code != 0 and err.count("\n") == 0
    assert "is encrypted" in err and "--passphrase-file" in err
    assert not (tmp_path / "p.dsse.json").exists()


def test_wrong_passphrase(capsys: pytest.CaptureFixture[str], encrypted: Path, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("Tr0ub4dor&3\n")
    code, err = _sign(capsys, encrypted, tmp_path, "--passphrase-file", str(wrong))
    assert code != 0 and "wrong passphrase" in err and err.count("\n") == 0


def test_a_key_encrypted_by_openssl_signs(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """The encrypted PKCS#8 file IT's own tools make (openssl genpkey -aes-256-cbc)."""
    key = tmp_path / "it.key"
    result = subprocess.run(
        [
            "openssl",
            "genpkey",
            "-algorithm",
            "ed25519",
            "-aes-256-cbc",
            "-pass",
            "pass:s3cret-pass",
            "-out",
            str(key),
        ],
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"openssl cannot make an encrypted Ed25519 key here: {result.stderr[-200:]!r}")
    subprocess.run(["openssl", "pkey", "-in", str(key), "-passin", "pass:s3cret-pass", "-pubout", "-out",
                    str(key.with_suffix(".pub"))], check=True, capture_output=True)  # fmt: skip
    secret = tmp_path / "pass.txt"
    secret.write_text("s3cret-pass")
    code, err = _sign(capsys, key, tmp_path, "--passphrase-file", str(secret))
    assert code == 0, err
    assert _verifies(tmp_path, key)
