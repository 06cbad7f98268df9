"""`mamori policy sign --key pkcs11:…` with a key generated inside a real SoftHSM2 token (OpenSC pkcs11-tool):
the bundle verifies with the token's public key, the PIN never appears on a command line, errors are one line."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.cli import main
from core.clock import FakeClock
from policy import cli as policy_cli
from policy.keys import keyid_of, public_key_pem
from policy.pkcs11 import Pkcs11Signer
from tests.policy.conftest import NOW, policy_bytes

pytestmark = pytest.mark.apps

MODULES = ("/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so")
PIN = "5678"


@dataclass(frozen=True)
class Token:
    module: str
    pin_file: Path

    def uri(self, obj: str = "policy-signing", pin: bool = True) -> str:
        query = f"module-path={self.module}" + (f"&pin-source=file:{self.pin_file}" if pin else "")
        return f"pkcs11:token=mamori;object={obj}?{query}"


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Token]:
    module = next((m for m in MODULES if Path(m).exists()), None)
    if module is None or shutil.which("softhsm2-util") is None or shutil.which("pkcs11-tool") is None:
        pytest.skip("SoftHSM2 and OpenSC are not installed (.ci/run installs softhsm2 and opensc)")
    work = tmp_path_factory.mktemp("softhsm")
    (work / "tokens").mkdir()
    conf = work / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {work / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    mp = pytest.MonkeyPatch()
    mp.setenv("SOFTHSM2_CONF", str(conf))
    try:
        subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "mamori", "--so-pin", "1234",
                        "--pin", PIN], check=True, capture_output=True)  # fmt: skip
        subprocess.run(["pkcs11-tool", "--module", module, "--token-label", "mamori", "--login", "--pin", PIN,
                        "--keypairgen", "--key-type", "EC:edwards25519", "--label", "policy-signing", "--id", "01"],
                       check=True, capture_output=True)  # fmt: skip
        pin_file = work / "pin"
        pin_file.write_text(PIN + "\n")
        yield Token(module, pin_file)
    finally:
        mp.undo()


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(policy_cli, "clock", FakeClock(NOW))


def test_sign_on_the_token_and_verify_with_its_public_key(
    token: Token, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[str]] = []
    real_run = subprocess.run

    def recording_run(argv: list[str], *args: object, **kwargs: object) -> object:
        calls.append(list(argv))
        return real_run(argv, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr("policy.pkcs11.subprocess.run", recording_run)
    signer = Pkcs11Signer(token.uri())
    pub = tmp_path / "token.pub"
    assert (
        main(["policy", "pubkey", token.uri(pin=False), "-o", str(pub)]) == 0
    )  # no PIN to read a public key
    assert pub.read_bytes() == public_key_pem(signer.public_key())
    policy = tmp_path / "p.toml"
    policy.write_bytes(policy_bytes(version=4))
    bundle = tmp_path / "p.dsse.json"
    assert main(["policy", "sign", str(policy), "--key", token.uri(), "-o", str(bundle)]) == 0
    out = capsys.readouterr().out
    assert keyid_of(signer.public_key())[:16] in out
    assert main(["policy", "verify", str(bundle), "--pub", str(pub)]) == 0
    assert "version 4" in capsys.readouterr().out
    assert calls and all(PIN not in " ".join(argv) for argv in calls)  # the PIN went through the environment


def test_wrong_pin_is_one_line(token: Token, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wrong = tmp_path / "wrong-pin"
    wrong.write_text("0000\n")
    uri = f"pkcs11:token=mamori;object=policy-signing?module-path={token.module}&pin-source=file:{wrong}"
    policy = tmp_path / "p.toml"
    policy.write_bytes(policy_bytes())
    assert main(["policy", "sign", str(policy), "--key", uri, "-o", str(tmp_path / "b.json")]) != 0
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pkcs11-tool failed" in err
    assert not (tmp_path / "b.json").exists()


@pytest.mark.parametrize(
    ("uri", "needle"),
    [
        ("pkcs11:token=mamori;object=x", "module-path"),
        ("pkcs11:token=mamori?module-path=/usr/lib/softhsm/libsofthsm2.so", "names no key"),
        ("pkcs11:token=mamori;object=x?module-path=/m.so&pin-value=1234", "pin-value is not accepted"),
        ("pkcs11:token=mamori;object=x?module-path=/m.so", "does not exist"),
        ("pkcs11:token=mamori;object=x?module-path=/m.so&pin-source=1234", "pin-source must be file:"),
    ],
)
def test_bad_uris(uri: str, needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / "p.toml"
    policy.write_bytes(policy_bytes())
    assert main(["policy", "sign", str(policy), "--key", uri, "-o", str(tmp_path / "b.json")]) != 0
    assert needle in capsys.readouterr().err


def test_an_object_that_is_not_on_the_token(token: Token, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(Exception, match="no Ed25519 public key"):
        Pkcs11Signer(token.uri(obj="no-such-key")).public_key()
