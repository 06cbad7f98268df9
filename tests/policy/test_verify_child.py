"""Signature checks in a child process (policy/verify_child.py): the same verdicts and messages as in-process,
fail closed when the child fails, one process per distinct check, and no cryptography in the parent."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from policy.errors import (
    BadSignatureError,
    BundleRejectedError,
    BundleTooLargeError,
    KeyFileError,
    MalformedBundleError,
    PayloadTypeError,
    PolicyError,
    UnknownKeyError,
)
from policy.keys import load_trusted_keys
from policy.signing import sign_policy
from policy.store import TrustedStore
from policy.verify import verify_signature
from policy.verify_child import ChildVerifier, VerdictCache, VerifierError, serve
from tests.harness.policies import PolicyKeys, policy_keys
from tests.policy.conftest import NOW, policy_bytes

CHILD = [sys.executable, "-m", "policy.verify_child"]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def keys(tmp_path: Path) -> PolicyKeys:
    return policy_keys(tmp_path / "keys")


@pytest.fixture
def other(tmp_path: Path) -> PolicyKeys:
    return policy_keys(tmp_path / "other")


def _resign(bundle: bytes, **changes: object) -> bytes:
    doc = json.loads(bundle)
    doc.update(changes)
    return json.dumps(doc).encode()


def _counting_child(tmp_path: Path) -> tuple[list[str], Path]:
    """The real child behind a wrapper that appends a line to a file per start."""
    log = tmp_path / "starts.log"
    script = tmp_path / "counting_child.py"
    script.write_text(
        "import runpy, sys\n"
        f"open({str(log)!r}, 'a').write('start\\n')\n"
        "runpy.run_module('policy.verify_child', run_name='__main__')\n"
    )
    return [sys.executable, str(script)], log


def _starts(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_a_signed_bundle_verifies_as_in_process(keys: PolicyKeys) -> None:
    bundle = keys.sign(policy_bytes(version=3))
    expected = verify_signature(bundle, load_trusted_keys([keys.public_path]))
    assert ChildVerifier.load([keys.public_path], CHILD).verify_signature(bundle) == expected


def _tamper_signature(keys: PolicyKeys, other: PolicyKeys) -> bytes:
    bundle = keys.sign(policy_bytes())
    doc = json.loads(bundle)
    doc["signatures"][0]["sig"] = base64.b64encode(b"\1" * 64).decode()
    return json.dumps(doc).encode()


Make = Callable[[PolicyKeys, PolicyKeys], bytes]
CASES: dict[str, tuple[Make, type[BundleRejectedError]]] = {
    "unknown key": (lambda k, o: o.sign(policy_bytes()), UnknownKeyError),
    "bad signature": (_tamper_signature, BadSignatureError),
    "malformed": (lambda k, o: k.sign(policy_bytes())[:-5], MalformedBundleError),
    "payload type": (
        lambda k, o: sign_policy(policy_bytes(), k.private_key, payload_type="text/plain"),
        PayloadTypeError,
    ),
    "tampered payload": (
        lambda k, o: _resign(k.sign(policy_bytes()), payload=base64.b64encode(policy_bytes(9)).decode()),
        BadSignatureError,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_rejection_has_the_in_process_class_and_message(
    case: str, keys: PolicyKeys, other: PolicyKeys
) -> None:
    make, error = CASES[case]
    bundle = make(keys, other)
    with pytest.raises(error) as in_process:
        verify_signature(bundle, load_trusted_keys([keys.public_path]))
    with pytest.raises(error) as in_child:
        ChildVerifier.load([keys.public_path], CHILD).verify_signature(bundle)
    assert type(in_child.value) is type(in_process.value)
    assert str(in_child.value) == str(in_process.value)
    assert in_child.value.reason == in_process.value.reason


def test_a_key_file_that_is_no_public_key_is_named_as_in_process(keys: PolicyKeys, tmp_path: Path) -> None:
    not_a_key = tmp_path / "policy-signing.pub"
    not_a_key.write_text("hello\n")
    with pytest.raises(KeyFileError) as in_process:
        load_trusted_keys([keys.public_path, not_a_key])
    with pytest.raises(KeyFileError) as in_child:
        ChildVerifier.load([keys.public_path, not_a_key], CHILD).verify_signature(keys.sign(policy_bytes()))
    assert str(in_child.value) == str(in_process.value)
    assert in_child.value.path == str(not_a_key)


def test_a_missing_key_file_is_said_before_any_process_starts(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="no such key file"):
        ChildVerifier.load([tmp_path / "absent.pub"], ["/nonexistent/verifier"])


def test_a_too_large_bundle_is_refused_without_a_process(keys: PolicyKeys, tmp_path: Path) -> None:
    command, log = _counting_child(tmp_path)
    with pytest.raises(BundleTooLargeError):
        ChildVerifier.load([keys.public_path], command).verify_signature(b"{" + b" " * (2 * 1024 * 1024))
    assert _starts(log) == 0


SCRIPTED_FAILURES = {
    "killed": ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", "killed by signal 9"),
    "crashed": ("raise SystemExit(3)", "failed (exit status 3)"),
    "garbage": ("print('ok')", "not a verification result"),
    # a well-formed reply with a field too many is not trusted either: exactly one of three shapes
    "extra field": ('print(\'{"keyid": "ab", "note": 1}\')', "not a verification result"),
    "unknown error": ('print(\'{"error": "Accepted", "detail": "x"}\')', "not a verification result"),
}


@pytest.mark.parametrize("case", list(SCRIPTED_FAILURES))
def test_a_failing_child_fails_closed(case: str, keys: PolicyKeys) -> None:
    code, said = SCRIPTED_FAILURES[case]
    verifier = ChildVerifier.load([keys.public_path], [sys.executable, "-c", code])
    with pytest.raises(VerifierError, match=re.escape(said)) as caught:
        verifier.verify_signature(keys.sign(policy_bytes()))
    assert not isinstance(caught.value, BundleRejectedError)  # not the bundle's fault: retried, not reported
    assert "last good policy stays in force" in str(caught.value)
    assert len(verifier.cache) == 0  # a failure is never remembered


def test_a_child_that_hangs_is_stopped(keys: PolicyKeys) -> None:
    verifier = ChildVerifier.load(
        [keys.public_path], [sys.executable, "-c", "import time; time.sleep(60)"], timeout=1.0
    )
    with pytest.raises(VerifierError, match="did not answer within 1 s"):
        verifier.verify_signature(keys.sign(policy_bytes()))


def test_a_child_that_cannot_start_fails_closed(keys: PolicyKeys, tmp_path: Path) -> None:
    verifier = ChildVerifier.load([keys.public_path], [str(tmp_path / "no-such-interpreter")])
    with pytest.raises(VerifierError, match="could not start"):
        verifier.verify_signature(keys.sign(policy_bytes()))


def test_the_store_keeps_its_policy_when_the_child_fails(keys: PolicyKeys, tmp_path: Path) -> None:
    store = TrustedStore(tmp_path / "state")
    store.apply(keys.sign(policy_bytes(version=1)), ChildVerifier.load([keys.public_path], CHILD), NOW)
    before = store.path.read_bytes()
    broken = ChildVerifier.load([keys.public_path], [sys.executable, "-c", "raise SystemExit(1)"])
    with pytest.raises(VerifierError):
        store.apply(keys.sign(policy_bytes(version=2)), broken, NOW)
    with pytest.raises(VerifierError):
        store.current(broken)  # nothing read back as trusted either
    assert store.path.read_bytes() == before
    current = store.current(ChildVerifier.load([keys.public_path], CHILD))
    assert current is not None and current.version == 1


def test_one_process_per_distinct_check(keys: PolicyKeys, other: PolicyKeys, tmp_path: Path) -> None:
    command, log = _counting_child(tmp_path)
    cache = VerdictCache()
    good, bad = keys.sign(policy_bytes(version=1)), other.sign(policy_bytes(version=1))
    for _ in range(3):  # the agent re-reads its store every minute: one process, not one a minute
        assert ChildVerifier.load([keys.public_path], command, cache=cache).verify_signature(good)[1]
        with pytest.raises(UnknownKeyError):
            ChildVerifier.load([keys.public_path], command, cache=cache).verify_signature(bad)
    assert _starts(log) == 2
    # other key bytes are another check: trusting the second key makes the same bundle verify
    both = ChildVerifier.load([keys.public_path, other.public_path], command, cache=cache)
    assert both.verify_signature(bad)[1] == load_trusted_keys([other.public_path])[0].keyid
    assert _starts(log) == 3


def test_the_child_refuses_an_unreadable_request() -> None:
    done = subprocess.run(CHILD, input=b"not json", capture_output=True, timeout=60, check=False, cwd=ROOT)
    assert done.returncode == 2
    assert b"unreadable request" in done.stderr
    with pytest.raises(ValueError, match="unreadable request"):
        serve(b'{"bundle": "@@", "keys": []}')


def test_verifier_error_is_a_policy_error() -> None:
    assert issubclass(VerifierError, PolicyError)


def test_checking_through_the_child_loads_no_cryptography_here(keys: PolicyKeys, tmp_path: Path) -> None:
    # A fresh interpreter: this test process has loaded cryptography for signing already.
    code = (
        "import sys\n"
        "from datetime import datetime, UTC\n"
        "from policy.store import TrustedStore\n"
        "from policy.verify_child import ChildVerifier\n"
        f"v = ChildVerifier.load([{str(keys.public_path)!r}], {CHILD!r})\n"
        f"store = TrustedStore({str(tmp_path / 'state')!r})\n"
        f"bundle = open({str(tmp_path / 'b.json')!r}, 'rb').read()\n"
        "assert store.apply(bundle, v, datetime.now(UTC)).accepted\n"
        "assert store.current(v).version == 4\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('cryptography', '_cffi_backend')))\n"
    )
    (tmp_path / "b.json").write_bytes(keys.sign(policy_bytes(version=4)))
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
