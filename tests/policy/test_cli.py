"""`mamori policy ...` end to end through the real dispatcher: exit codes per SPEC.md, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import main
from core.clock import FakeClock
from policy import cli as policy_cli
from policy.schema import policy_schema
from tests.policy.conftest import EXAMPLES, NOW, policy_bytes


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(policy_cli, "clock", FakeClock(NOW))


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    assert main(["policy", "keygen", str(tmp_path / "keys")]) == 0
    return tmp_path / "keys"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def sign(capsys: pytest.CaptureFixture[str], keys: Path, policy: Path, bundle: Path) -> None:
    code, _, err = run(
        capsys, "policy", "sign", str(policy), "--key", str(keys / "policy-signing.key"), "-o", str(bundle)
    )
    assert code == 0, err


def test_keygen_prints_keyid_and_refuses_to_overwrite(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = run(capsys, "policy", "keygen", str(tmp_path))
    assert code == 0 and "keyid:" in out
    code, _, err = run(capsys, "policy", "keygen", str(tmp_path))
    assert code == 1
    assert err.count("\n") == 1 and "refusing to overwrite" in err


def test_validate_examples_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "policy", "validate", *map(str, sorted(EXAMPLES.glob("*.toml"))))
    assert code == 0, err
    assert "valid (id acme-standard, version 1)" in out


def test_validate_reports_every_problem_located_and_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    good = tmp_path / "good.toml"
    good.write_bytes(policy_bytes())
    bad = tmp_path / "bad.toml"
    bad.write_bytes(policy_bytes(extra='[presence]\ncover = "glass"\nlock_after = "soon"\n'))
    code, out, err = run(capsys, "policy", "validate", str(good), str(bad), str(tmp_path / "missing.toml"))
    assert code == 2
    assert "good.toml: valid" in out
    assert err.splitlines() == [
        f'{bad}:5:1: presence.cover: must be one of "blur", "opaque", not "glass"',
        f'{bad}:6:1: presence.lock_after: \'soon\' is not a duration; write e.g. "90s", "5m" or "1h30m"',
        f"{tmp_path / 'missing.toml'}:1:1: (top): no such policy file",
    ]


def test_sign_verify_apply_show_round_trip(
    capsys: pytest.CaptureFixture[str], keys: Path, tmp_path: Path
) -> None:
    bundle = tmp_path / "standard.dsse.json"
    sign(capsys, keys, EXAMPLES / "standard.toml", bundle)
    pub = str(keys / "policy-signing.pub")

    code, out, _ = run(capsys, "policy", "verify", str(bundle), "--pub", pub)
    assert code == 0 and "id acme-standard version 1" in out

    state = str(tmp_path / "state")
    code, out, _ = run(capsys, "policy", "apply", str(bundle), "--pub", pub, "--state-dir", state)
    assert code == 0 and out.startswith("accepted: acme-standard version 1")
    code, out, _ = run(capsys, "policy", "apply", str(bundle), "--pub", pub, "--state-dir", state)
    assert code == 0 and out.startswith("no change:")

    code, out, _ = run(capsys, "policy", "show", "--state-dir", state, "--json")
    assert code == 0
    doc = json.loads(out)
    assert (doc["id"], doc["version"], doc["expires"]) == ("acme-standard", 1, None)
    assert len(doc["keyid"]) == 64 and len(doc["sha256"]) == 64
    assert doc["summary"]["protect_after"] == "5m" and doc["summary"]["lock_after"] == "10m"
    assert "Salesforce" in doc["summary"]["customer_apps"]
    assert doc["policy"]["network"]["wifi"]["untrusted"] == "require_vpn"

    code, out, _ = run(capsys, "policy", "show", str(bundle), "--pub", pub)
    assert code == 0 and "acme-standard" in out and "verified:    True" in out


def test_show_unverified_bundle_says_so(
    capsys: pytest.CaptureFixture[str], keys: Path, tmp_path: Path
) -> None:
    bundle = tmp_path / "b.json"
    sign(capsys, keys, EXAMPLES / "strict.toml", bundle)
    code, out, _ = run(capsys, "policy", "show", str(bundle), "--json")
    assert code == 0
    assert json.loads(out)["verified"] is False
    code, out, _ = run(capsys, "policy", "show", str(bundle))
    assert "NOT checked" in out


def test_apply_rejections_exit_1_and_keep_the_store(
    capsys: pytest.CaptureFixture[str], keys: Path, tmp_path: Path
) -> None:
    pub = str(keys / "policy-signing.pub")
    state = tmp_path / "state"
    v2, v1 = tmp_path / "v2.toml", tmp_path / "v1.toml"
    v2.write_bytes(policy_bytes(version=2))
    v1.write_bytes(policy_bytes(version=1))
    sign(capsys, keys, v2, tmp_path / "v2.json")
    sign(capsys, keys, v1, tmp_path / "v1.json")
    assert (
        run(capsys, "policy", "apply", str(tmp_path / "v2.json"), "--pub", pub, "--state-dir", str(state))[0]
        == 0
    )
    before = (state / "policy" / "trusted.json").read_bytes()
    code, _, err = run(
        capsys, "policy", "apply", str(tmp_path / "v1.json"), "--pub", pub, "--state-dir", str(state)
    )
    assert code == 1
    assert err.startswith("mamori: policy rejected (rollback): version 1 is older than the trusted version 2")
    assert err.count("\n") == 1
    assert (state / "policy" / "trusted.json").read_bytes() == before


def test_verify_with_the_wrong_key_and_with_rotation(
    capsys: pytest.CaptureFixture[str], keys: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    assert run(capsys, "policy", "keygen", str(other))[0] == 0
    bundle = tmp_path / "b.json"
    sign(capsys, keys, EXAMPLES / "standard.toml", bundle)
    code, _, err = run(capsys, "policy", "verify", str(bundle), "--pub", str(other / "policy-signing.pub"))
    assert code == 1 and "(unknown_key)" in err
    code, _, _ = run(
        capsys,
        "policy",
        "verify",
        str(bundle),
        "--pub",
        str(other / "policy-signing.pub"),
        "--pub",
        str(keys / "policy-signing.pub"),
    )
    assert code == 0


def test_sign_refuses_an_invalid_policy(
    capsys: pytest.CaptureFixture[str], keys: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_bytes(policy_bytes(extra="[presence]\nlock_after = 1\n"))
    out_path = tmp_path / "b.json"
    code, _, err = run(
        capsys, "policy", "sign", str(bad), "--key", str(keys / "policy-signing.key"), "-o", str(out_path)
    )
    assert code == 2
    assert f"{bad}:5:1: presence.lock_after" in err
    assert not out_path.exists()


def test_sign_refuses_an_already_expired_policy(
    capsys: pytest.CaptureFixture[str], keys: Path, tmp_path: Path
) -> None:
    old = tmp_path / "old.toml"
    old.write_bytes(policy_bytes(extra="expires = 2026-03-01T00:00:00+09:00\n"))
    code, _, err = run(
        capsys,
        "policy",
        "sign",
        str(old),
        "--key",
        str(keys / "policy-signing.key"),
        "-o",
        str(tmp_path / "b"),
    )
    assert code == 1 and "in the past" in err


def test_schema_prints_the_published_schema(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "policy", "schema")
    assert code == 0 and json.loads(out) == policy_schema()


def test_show_of_an_empty_state_dir(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "policy", "show", "--state-dir", str(tmp_path))
    assert code == 1 and "no policy has been applied" in err


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\x00\xff\xfe garbage",
        b"{}",
        b"[1,2]",
        b'{"payload":"","payloadType":"x","signatures":[]}',
        b"{" * 100000,
    ],
    ids=["empty", "binary", "empty-object", "array", "no-signatures", "deep-nesting"],
)
def test_bad_bundles_never_produce_a_traceback(
    capsys: pytest.CaptureFixture[str], keys: Path, tmp_path: Path, content: bytes
) -> None:
    bundle = tmp_path / "bad.json"
    bundle.write_bytes(content)
    pub = str(keys / "policy-signing.pub")
    for argv in (
        ["policy", "verify", str(bundle), "--pub", pub],
        ["policy", "apply", str(bundle), "--pub", pub, "--state-dir", str(tmp_path / "s")],
        ["policy", "show", str(bundle)],
    ):
        code, _, err = run(capsys, *argv)
        assert code == 1, (argv, err)
        assert err.startswith("mamori: ") and err.count("\n") == 1, err
    assert not (tmp_path / "s" / "policy" / "trusted.json").exists()


def test_file_arguments_that_are_directories_or_missing(
    capsys: pytest.CaptureFixture[str], keys: Path, tmp_path: Path
) -> None:
    pub = str(keys / "policy-signing.pub")
    for argv in (
        ["policy", "verify", str(tmp_path), "--pub", pub],
        ["policy", "verify", str(tmp_path / "nope.json"), "--pub", pub],
        ["policy", "verify", str(tmp_path / "nope.json"), "--pub", str(tmp_path / "nope.pub")],
        ["policy", "sign", str(EXAMPLES / "standard.toml"), "--key", pub, "-o", str(tmp_path / "x")],
        ["policy", "validate", str(tmp_path)],
    ):
        code, _, err = run(capsys, *argv)
        assert code in (1, 2), argv
        assert err.strip() and "\n" not in err.strip(), err


def test_real_process_prints_one_line_without_traceback(tmp_path: Path) -> None:
    bundle = tmp_path / "b.json"
    bundle.write_bytes(b"\x00not json")
    pub = tmp_path / "k.pub"
    pub.write_bytes(b"-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n")
    proc = subprocess.run(
        [sys.executable, "-m", "agent", "policy", "verify", str(bundle), "--pub", str(pub)],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("mamori: ")


def test_show_state_dir_rechecks_with_todays_keys(
    capsys: pytest.CaptureFixture[str], keys: Path, tmp_path: Path
) -> None:
    bundle, state = tmp_path / "b.json", str(tmp_path / "state")
    sign(capsys, keys, EXAMPLES / "standard.toml", bundle)
    pub = str(keys / "policy-signing.pub")
    assert run(capsys, "policy", "apply", str(bundle), "--pub", pub, "--state-dir", state)[0] == 0
    assert run(capsys, "policy", "show", "--state-dir", state, "--pub", pub)[0] == 0
    assert run(capsys, "policy", "keygen", str(tmp_path / "new"))[0] == 0
    code, _, err = run(
        capsys, "policy", "show", "--state-dir", state, "--pub", str(tmp_path / "new" / "policy-signing.pub")
    )
    assert code == 1
    assert "no longer signed by a trusted key (unknown_key)" in err


def test_show_state_dir_claims_verified_only_when_checked(
    capsys: pytest.CaptureFixture[str], keys: Path, tmp_path: Path
) -> None:
    # Before the fix `show --state-dir` printed verified: True without checking any signature.
    bundle, state = tmp_path / "b.json", str(tmp_path / "state")
    sign(capsys, keys, EXAMPLES / "standard.toml", bundle)
    pub = str(keys / "policy-signing.pub")
    assert run(capsys, "policy", "apply", str(bundle), "--pub", pub, "--state-dir", state)[0] == 0
    code, out, _ = run(capsys, "policy", "show", "--state-dir", state, "--json")
    assert code == 0 and json.loads(out)["verified"] is False
    code, out, _ = run(capsys, "policy", "show", "--state-dir", state)
    assert "NOT checked" in out
    code, out, _ = run(capsys, "policy", "show", "--state-dir", state, "--pub", pub, "--json")
    assert code == 0 and json.loads(out)["verified"] is True
