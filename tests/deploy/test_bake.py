"""What `mamori package` refuses before it builds anything: one line each, naming the option to fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.cli import main
from tests.harness.policies import policy_keys, policy_toml


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["package", "pkg", *argv])
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.fixture
def pub(tmp_path: Path) -> Path:
    return policy_keys(tmp_path / "keys").public_path


def test_missing_trusted_key(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, err = _run(
        capsys, "--server", "https://m.example", "--enroll-secret", "mes_12345678", "-o", str(tmp_path)
    )
    assert code == 2 and err.count("\n") == 0
    assert "no --trusted-key given" in err and "mamori policy keygen" in err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--server", "ftp://m.example"], "--server"),
        (["--server", "http://m.example"], "--insecure-http"),
        (["--server", "https://m.example", "--enroll-secret", "has space 123"], "--enroll-secret"),
        (["--group", "sales;rm -rf"], "--group"),
        (["--revision", "two"], "--revision"),
    ],
)
def test_bad_values(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, pub: Path, args: list[str], needle: str
) -> None:
    base = {"--server": "https://m.example", "--enroll-secret": "mes_12345678"}
    pairs = dict(zip(args[::2], args[1::2], strict=True))
    argv = [x for k, v in {**base, **pairs}.items() for x in (k, v)]
    code, err = _run(capsys, *argv, "--trusted-key", str(pub), "-o", str(tmp_path / "o"))
    assert code == 2 and err.count("\n") == 0 and needle in err, err
    assert not (tmp_path / "o").exists()


def test_policy_the_agents_would_reject(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, pub: Path
) -> None:
    other = policy_keys(tmp_path / "other")
    bundle = tmp_path / "p.dsse.json"
    bundle.write_bytes(other.sign(policy_toml()))
    code, err = _run(
        capsys, "--server", "https://m.example", "--enroll-secret", "mes_12345678", "--trusted-key", str(pub),
        "--policy", str(bundle), "-o", str(tmp_path / "o"),
    )  # fmt: skip
    assert code == 2 and "agents would reject it" in err and "--trusted-key" in err


def test_server_ca_must_be_pem(capsys: pytest.CaptureFixture[str], tmp_path: Path, pub: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not a certificate")
    code, err = _run(
        capsys, "--server", "https://m.example", "--enroll-secret", "mes_12345678", "--trusted-key", str(pub),
        "--server-ca", str(ca), "-o", str(tmp_path / "o"),
    )  # fmt: skip
    assert code == 2 and "--server-ca" in err and "BEGIN CERTIFICATE" in err
