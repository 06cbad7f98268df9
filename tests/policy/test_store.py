"""The trusted store: last-known-good on disk, atomic updates, unchanged on every rejection."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from policy.errors import (
    BadSignatureError,
    BundleRejectedError,
    ExpiredPolicyError,
    MalformedBundleError,
    PayloadTypeError,
    PolicySchemaError,
    RollbackError,
    StoreError,
    UnknownKeyError,
)
from policy.keys import TrustedKey
from policy.signing import sign_policy
from policy.store import TrustedStore
from tests.policy.conftest import NOW, policy_bytes


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def store(tmp_path: Path) -> TrustedStore:
    return TrustedStore(tmp_path / "state")


def test_empty_store_has_no_policy(store: TrustedStore) -> None:
    assert store.current() is None
    assert store.metadata() is None


def test_first_apply_is_accepted_and_persisted(
    store: TrustedStore, signing_key: Ed25519PrivateKey, trusted: list[TrustedKey]
) -> None:
    bundle = sign_policy(policy_bytes(version=3), signing_key)
    result = store.apply(bundle, trusted, NOW)
    assert result.accepted and result.previous_version is None
    # a fresh object (a restarted agent) reads the same policy back
    current = TrustedStore(store.state_dir).current()
    assert current is not None
    assert (current.version, current.bundle, current.keyid) == (3, bundle, trusted[0].keyid)
    meta = store.metadata()
    assert meta is not None
    assert meta["applied_at"] == NOW.isoformat()
    assert meta["sha256"] == current.sha256


def test_newer_version_replaces(
    store: TrustedStore, signing_key: Ed25519PrivateKey, trusted: list[TrustedKey]
) -> None:
    store.apply(sign_policy(policy_bytes(version=3), signing_key), trusted, NOW)
    result = store.apply(sign_policy(policy_bytes(version=4), signing_key), trusted, NOW)
    assert result.accepted and result.previous_version == 3
    current = store.current()
    assert current is not None and current.version == 4


def test_equal_version_is_no_change(
    store: TrustedStore, signing_key: Ed25519PrivateKey, trusted: list[TrustedKey]
) -> None:
    bundle = sign_policy(policy_bytes(version=3), signing_key)
    store.apply(bundle, trusted, NOW)
    before = _snapshot(store.state_dir)
    result = store.apply(bundle, trusted, NOW + timedelta(hours=1))
    assert result.unchanged and result.policy.version == 3
    assert _snapshot(store.state_dir) == before  # not even applied_at moves


def _swap_payload(bundle: bytes, payload: bytes) -> bytes:
    doc = json.loads(bundle)
    doc["payload"] = base64.b64encode(payload).decode()
    return json.dumps(doc, separators=(",", ":")).encode()


def _rejections(
    signing_key: Ed25519PrivateKey, other_key: Ed25519PrivateKey
) -> list[tuple[str, Callable[[], bytes], type[BundleRejectedError]]]:
    good_v5 = sign_policy(policy_bytes(version=5), signing_key)
    return [
        ("rollback", lambda: sign_policy(policy_bytes(version=4), signing_key), RollbackError),
        (
            "same version, other content",
            lambda: sign_policy(policy_bytes(version=5, extra="# x\n"), signing_key),
            RollbackError,
        ),
        (
            "expired",
            lambda: sign_policy(
                policy_bytes(version=9, extra="expires = 2026-01-01T00:00:00Z\n"), signing_key
            ),
            ExpiredPolicyError,
        ),
        ("unknown key", lambda: sign_policy(policy_bytes(version=9), other_key), UnknownKeyError),
        ("bad signature", lambda: _swap_payload(good_v5, policy_bytes(version=9)), BadSignatureError),
        ("malformed", lambda: good_v5[:-10], MalformedBundleError),
        (
            "payload type",
            lambda: sign_policy(policy_bytes(version=9), signing_key, payload_type="text/plain"),
            PayloadTypeError,
        ),
        (
            "schema",
            lambda: sign_policy(policy_bytes(version=9, extra="[presence]\nlock_after = 5\n"), signing_key),
            PolicySchemaError,
        ),
    ]


@pytest.mark.parametrize("case", range(8))
def test_every_rejection_leaves_the_store_unchanged(
    store: TrustedStore,
    signing_key: Ed25519PrivateKey,
    other_key: Ed25519PrivateKey,
    trusted: list[TrustedKey],
    case: int,
) -> None:
    store.apply(sign_policy(policy_bytes(version=5), signing_key), trusted, NOW)
    before = _snapshot(store.state_dir)
    name, make, error = _rejections(signing_key, other_key)[case]
    with pytest.raises(error):
        store.apply(make(), trusted, NOW)
    assert _snapshot(store.state_dir) == before, name
    current = store.current()
    assert current is not None and current.version == 5


def test_write_is_atomic_and_leaves_no_temp_files(
    store: TrustedStore, signing_key: Ed25519PrivateKey, trusted: list[TrustedKey]
) -> None:
    for version in range(1, 4):
        store.apply(sign_policy(policy_bytes(version=version), signing_key), trusted, NOW)
    names = sorted(p.name for p in store.directory.iterdir())
    assert names == [".lock", "trusted.json"]
    if os.name == "posix":
        assert oct(store.path.stat().st_mode & 0o777) == oct(0o600)


def test_a_failed_replace_keeps_the_old_policy(
    store: TrustedStore,
    signing_key: Ed25519PrivateKey,
    trusted: list[TrustedKey],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store.apply(sign_policy(policy_bytes(version=1), signing_key), trusted, NOW)
    before = _snapshot(store.state_dir)

    def failing_replace(src: str, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(StoreError, match="No space left"):
        store.apply(sign_policy(policy_bytes(version=2), signing_key), trusted, NOW)
    monkeypatch.undo()
    assert _snapshot(store.state_dir) == before  # the temp file was removed too
    current = store.current()
    assert current is not None and current.version == 1


def test_damaged_store_is_reported_not_trusted(
    store: TrustedStore, signing_key: Ed25519PrivateKey, trusted: list[TrustedKey]
) -> None:
    store.apply(sign_policy(policy_bytes(version=1), signing_key), trusted, NOW)
    doc = json.loads(store.path.read_bytes())
    doc["sha256"] = "0" * 64
    store.path.write_text(json.dumps(doc))
    with pytest.raises(StoreError, match="damaged"):
        store.current()
    store.path.write_bytes(b"{not json")
    with pytest.raises(StoreError, match="damaged"):
        store.current()


def test_current_can_recheck_the_signature_against_todays_keys(
    store: TrustedStore,
    signing_key: Ed25519PrivateKey,
    other_key: Ed25519PrivateKey,
    trusted: list[TrustedKey],
) -> None:
    store.apply(sign_policy(policy_bytes(version=1), signing_key), trusted, NOW)
    assert store.current(trusted) is not None
    revoked = [TrustedKey.from_public_key(other_key.public_key())]
    with pytest.raises(StoreError, match="no longer signed by a trusted key"):
        store.current(revoked)


def test_a_verified_bundle_repairs_a_damaged_store(
    store: TrustedStore, signing_key: Ed25519PrivateKey, trusted: list[TrustedKey]
) -> None:
    store.apply(sign_policy(policy_bytes(version=4), signing_key), trusted, NOW)
    store.path.write_bytes(b"\x00garbage")
    result = store.apply(sign_policy(policy_bytes(version=2), signing_key), trusted, NOW)
    assert result.accepted and result.previous_version is None
    current = store.current()
    assert current is not None and current.version == 2


def test_concurrent_applies_never_end_on_the_older_version(
    tmp_path: Path, signing_key: Ed25519PrivateKey, trusted: list[TrustedKey]
) -> None:
    import threading

    newer = sign_policy(policy_bytes(version=5), signing_key)
    older = sign_policy(policy_bytes(version=4), signing_key)
    for round_ in range(10):
        store = TrustedStore(tmp_path / f"s{round_}")
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def apply(
            bundle: bytes,
            store: TrustedStore = store,
            barrier: threading.Barrier = barrier,
            errors: list[BaseException] = errors,
        ) -> None:
            barrier.wait()
            try:
                store.apply(bundle, trusted, NOW)
            except RollbackError:
                pass  # the older one lost the race: correct
            except BaseException as err:  # pragma: no cover - reported below
                errors.append(err)

        threads = [threading.Thread(target=apply, args=(b,)) for b in (older, newer)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        current = store.current()
        assert current is not None and current.version == 5


def _forge(store: TrustedStore, payload: bytes) -> None:
    """What a worker with write access to their own state directory could do: put an unsigned policy in place,
    with self-consistent metadata (sha256) and a signature by no trusted key."""
    import hashlib

    forged = {
        "payload": base64.b64encode(payload).decode(),
        "payloadType": "application/vnd.mamori.policy+toml",
        "signatures": [{"keyid": "f" * 64, "sig": base64.b64encode(b"\0" * 64).decode()}],
    }
    doc = json.loads(store.path.read_bytes())
    doc.update(bundle=json.dumps(forged), sha256=hashlib.sha256(payload).hexdigest(), keyid="f" * 64)
    store.path.write_text(json.dumps(doc))


def test_a_forged_store_file_cannot_block_real_updates(
    store: TrustedStore, signing_key: Ed25519PrivateKey, trusted: list[TrustedKey]
) -> None:
    # Before the fix apply() compared against the forged file without its signature: version 999999 made
    # every real policy a "rollback" for good.
    store.apply(sign_policy(policy_bytes(version=1), signing_key), trusted, NOW)
    _forge(store, policy_bytes(version=999999))
    with pytest.raises(StoreError, match="no longer signed by a trusted key"):
        store.current(trusted)
    result = store.apply(sign_policy(policy_bytes(version=2), signing_key), trusted, NOW)
    assert result.accepted
    current = store.current(trusted)
    assert current is not None and current.version == 2
