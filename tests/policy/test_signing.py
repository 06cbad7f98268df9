"""Keys, keyids and the DSSE envelope (SPEC.md "Policy"; DSSE protocol v1.0)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from policy.dsse import PAYLOAD_TYPE, pae, parse_envelope
from policy.errors import KeyExistsError, KeyFileError
from policy.keys import (
    PRIVATE_KEY_NAME,
    PUBLIC_KEY_NAME,
    TrustedKey,
    generate_keypair,
    keyid_of,
    load_private_key,
    load_trusted_keys,
)
from policy.signing import sign_policy
from policy.verify import verify_bundle
from tests.policy.conftest import NOW, policy_bytes


def test_pae_matches_the_dsse_spec_example() -> None:
    # The worked example of the DSSE protocol document.
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_pae_counts_bytes_not_characters() -> None:
    assert pae("t", "顧客".encode()) == b"DSSEv1 1 t 6 " + "顧客".encode()


def test_keyid_is_sha256_of_the_raw_public_key(signing_key: Ed25519PrivateKey) -> None:
    raw = signing_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert len(raw) == 32
    assert keyid_of(signing_key.public_key()) == hashlib.sha256(raw).hexdigest()


def test_envelope_signs_the_exact_bytes(signing_key: Ed25519PrivateKey) -> None:
    payload = policy_bytes(extra="# コメント\r\n")  # CRLF and a comment must survive byte for byte
    bundle = sign_policy(payload, signing_key)
    doc = json.loads(bundle)
    assert set(doc) == {"payload", "payloadType", "signatures"}
    assert base64.b64decode(doc["payload"]) == payload
    assert doc["payloadType"] == PAYLOAD_TYPE == "application/vnd.mamori.policy+toml"
    [signature] = doc["signatures"]
    assert signature["keyid"] == keyid_of(signing_key.public_key())
    # the signature is over PAE(type, payload), verifiable with nothing but the public key
    signing_key.public_key().verify(base64.b64decode(signature["sig"]), pae(PAYLOAD_TYPE, payload))
    assert not bundle.endswith(b"\n")


def test_two_keys_sign_for_rotation(signing_key: Ed25519PrivateKey, other_key: Ed25519PrivateKey) -> None:
    bundle = sign_policy(policy_bytes(), [signing_key, other_key])
    assert len(parse_envelope(bundle).signatures) == 2
    # an agent that trusts only the new key accepts it, and so does one that trusts only the old key
    for key in (signing_key, other_key):
        verified = verify_bundle(bundle, [TrustedKey.from_public_key(key.public_key())], NOW)
        assert verified.keyid == keyid_of(key.public_key())


def test_keygen_writes_private_0600_and_public_pem(tmp_path: Path) -> None:
    private_path, public_path = generate_keypair(tmp_path / "keys")
    assert private_path.name == PRIVATE_KEY_NAME
    assert public_path.name == PUBLIC_KEY_NAME
    if sys.platform != "win32":
        assert stat.S_IMODE(os.stat(private_path).st_mode) == 0o600
    assert public_path.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    assert private_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    private_key = load_private_key(private_path)
    [trusted] = load_trusted_keys([public_path])
    assert trusted.keyid == keyid_of(private_key.public_key())


def test_keygen_refuses_to_overwrite(tmp_path: Path) -> None:
    private_path, _ = generate_keypair(tmp_path)
    before = private_path.read_bytes()
    with pytest.raises(KeyExistsError, match="refusing to overwrite"):
        generate_keypair(tmp_path)
    assert private_path.read_bytes() == before


def test_keygen_refuses_when_only_the_public_key_exists(tmp_path: Path) -> None:
    (tmp_path / PUBLIC_KEY_NAME).write_text("x")
    with pytest.raises(KeyExistsError):
        generate_keypair(tmp_path)
    assert not (tmp_path / PRIVATE_KEY_NAME).exists()


def test_public_key_file_errors_are_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pub"
    with pytest.raises(KeyFileError, match="no such key file"):
        load_trusted_keys([missing])
    garbage = tmp_path / "garbage.pub"
    garbage.write_bytes(b"\x00\xff not a key")
    with pytest.raises(KeyFileError, match="not a PEM public key"):
        load_trusted_keys([garbage])


def test_a_private_key_is_not_accepted_as_trusted_key(tmp_path: Path) -> None:
    private_path, _ = generate_keypair(tmp_path)
    with pytest.raises(KeyFileError, match="not a PEM public key"):
        load_trusted_keys([private_path])


def test_non_ed25519_public_key_is_refused(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    path = tmp_path / "ec.pub"
    path.write_bytes(pem)
    with pytest.raises(KeyFileError, match="not an Ed25519 public key"):
        load_trusted_keys([path])


def test_duplicate_trusted_keys_are_kept_once(tmp_path: Path) -> None:
    _, public_path = generate_keypair(tmp_path)
    assert len(load_trusted_keys([public_path, public_path])) == 1


def test_keygen_that_cannot_write_the_public_key_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from policy.errors import KeyFileError

    # Before the fix the OSError escaped as a traceback and the orphaned private key blocked every retry.
    real_open = os.open

    def failing_open(path, flags, mode=0o777):  # type: ignore[no-untyped-def]
        if str(path).endswith(".pub"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", failing_open)
    with pytest.raises(KeyFileError, match="cannot create key file: Permission denied"):
        generate_keypair(tmp_path / "k")
    assert list((tmp_path / "k").iterdir()) == []
    monkeypatch.undo()
    generate_keypair(tmp_path / "k")
