"""The pure verifier: each attack has its own test and its own error class (STYLE.md, python-tuf)."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from policy.dsse import MAX_BUNDLE_BYTES, pae
from policy.errors import (
    BadSignatureError,
    BundleRejectedError,
    BundleTooLargeError,
    EqualVersionError,
    ExpiredPolicyError,
    MalformedBundleError,
    PayloadTypeError,
    PolicySchemaError,
    RollbackError,
    UnknownKeyError,
)
from policy.keys import TrustedKey
from policy.signing import sign_policy
from policy.verify import check_update, verify_bundle
from tests.policy.conftest import NOW, policy_bytes


def _doc(bundle: bytes) -> dict[str, object]:
    doc = json.loads(bundle)
    assert isinstance(doc, dict)
    return doc


def _bundle(doc: object) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def test_valid_bundle_verifies(signing_key: Ed25519PrivateKey, trusted: list[TrustedKey]) -> None:
    payload = policy_bytes(version=7)
    verified = verify_bundle(sign_policy(payload, signing_key), trusted, NOW)
    assert (verified.id, verified.version) == ("acme-test", 7)
    assert verified.payload == payload
    assert verified.keyid == trusted[0].keyid
    assert len(verified.sha256) == 64


def test_tampered_payload_is_a_bad_signature(
    signing_key: Ed25519PrivateKey, trusted: list[TrustedKey]
) -> None:
    doc = _doc(sign_policy(policy_bytes(extra='[presence]\nlock_after = "10m"\n'), signing_key))
    tampered = base64.b64decode(str(doc["payload"])).replace(b'"10m"', b'"99m"')
    doc["payload"] = base64.b64encode(tampered).decode()
    with pytest.raises(BadSignatureError, match="does not match the payload"):
        verify_bundle(_bundle(doc), trusted, NOW)


def test_valid_signature_over_different_bytes_is_rejected(
    signing_key: Ed25519PrivateKey, trusted: list[TrustedKey]
) -> None:
    # A genuine signature by the trusted key, but over another policy, spliced into this envelope.
    wanted = _doc(sign_policy(policy_bytes(version=5, extra="[worker]\nallow_quit = true\n"), signing_key))
    genuine = _doc(sign_policy(policy_bytes(version=5), signing_key))
    wanted["signatures"] = genuine["signatures"]
    with pytest.raises(BadSignatureError):
        verify_bundle(_bundle(wanted), trusted, NOW)


def test_signature_by_an_untrusted_key_claiming_a_trusted_keyid(
    other_key: Ed25519PrivateKey, trusted: list[TrustedKey]
) -> None:
    doc = _doc(sign_policy(policy_bytes(), other_key))
    signatures = doc["signatures"]
    assert isinstance(signatures, list)
    signatures[0]["keyid"] = trusted[0].keyid  # lie about who signed
    with pytest.raises(BadSignatureError):
        verify_bundle(_bundle(doc), trusted, NOW)


def test_wrong_key_is_an_unknown_key(other_key: Ed25519PrivateKey, trusted: list[TrustedKey]) -> None:
    with pytest.raises(UnknownKeyError, match="not trusted"):
        verify_bundle(sign_policy(policy_bytes(), other_key), trusted, NOW)


def test_unknown_keyid_is_rejected_even_if_the_signature_is_good(
    signing_key: Ed25519PrivateKey, trusted: list[TrustedKey]
) -> None:
    # The signature verifies with the trusted key, but the keyid does not name it: keyids are matched exactly.
    doc = _doc(sign_policy(policy_bytes(), signing_key))
    signatures = doc["signatures"]
    assert isinstance(signatures, list)
    signatures[0]["keyid"] = "0" * 64
    with pytest.raises(UnknownKeyError):
        verify_bundle(_bundle(doc), trusted, NOW)


def test_no_trusted_keys_at_all(signing_key: Ed25519PrivateKey) -> None:
    with pytest.raises(UnknownKeyError, match="no trusted keys"):
        verify_bundle(sign_policy(policy_bytes(), signing_key), [], NOW)


def test_rotation_accepts_any_trusted_signature(
    signing_key: Ed25519PrivateKey, other_key: Ed25519PrivateKey, trusted: list[TrustedKey]
) -> None:
    both = [*trusted, TrustedKey.from_public_key(other_key.public_key())]
    assert verify_bundle(sign_policy(policy_bytes(), other_key), both, NOW).keyid == both[1].keyid
    assert verify_bundle(sign_policy(policy_bytes(), signing_key), both, NOW).keyid == both[0].keyid


def test_wrong_payload_type_even_when_correctly_signed(
    signing_key: Ed25519PrivateKey, trusted: list[TrustedKey]
) -> None:
    bundle = sign_policy(policy_bytes(), signing_key, payload_type="application/vnd.in-toto+json")
    with pytest.raises(PayloadTypeError, match=r"application/vnd\.mamori\.policy\+toml"):
        verify_bundle(bundle, trusted, NOW)


def test_payload_type_swapped_after_signing(
    signing_key: Ed25519PrivateKey, trusted: list[TrustedKey]
) -> None:
    doc = _doc(sign_policy(policy_bytes(), signing_key))
    doc["payloadType"] = "text/plain"
    with pytest.raises(PayloadTypeError):
        verify_bundle(_bundle(doc), trusted, NOW)


def test_payload_type_is_bound_by_the_signature(
    signing_key: Ed25519PrivateKey, trusted: list[TrustedKey]
) -> None:
    # PAE includes the type: the same payload signed under another type does not verify under ours.
    payload = policy_bytes()
    foreign_sig = signing_key.sign(pae("text/plain", payload))
    doc = _doc(sign_policy(payload, signing_key))
    signatures = doc["signatures"]
    assert isinstance(signatures, list)
    signatures[0]["sig"] = base64.b64encode(foreign_sig).decode()
    with pytest.raises(BadSignatureError):
        verify_bundle(_bundle(doc), trusted, NOW)


def test_truncated_bundle_is_malformed(signing_key: Ed25519PrivateKey, trusted: list[TrustedKey]) -> None:
    bundle = sign_policy(policy_bytes(), signing_key)
    for cut in (0, 1, len(bundle) // 2, len(bundle) - 1):
        with pytest.raises(MalformedBundleError):
            verify_bundle(bundle[:cut], trusted, NOW)


def test_oversized_bundle_is_refused_before_parsing(trusted: list[TrustedKey]) -> None:
    huge = b"{" + b" " * MAX_BUNDLE_BYTES + b"}"
    with pytest.raises(BundleTooLargeError, match="limit"):
        verify_bundle(huge, trusted, NOW)


def test_signing_refuses_to_make_an_oversized_bundle(signing_key: Ed25519PrivateKey) -> None:
    with pytest.raises(BundleTooLargeError):
        sign_policy(policy_bytes(extra="#" + "x" * MAX_BUNDLE_BYTES), signing_key)


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda d: [d], "JSON object"),
        (lambda d: {k: v for k, v in d.items() if k != "signatures"}, "lacks signatures"),
        (lambda d: {**d, "signatures": []}, "non-empty array"),
        (lambda d: {**d, "signatures": [{"keyid": "x"}]}, "keyid and sig"),
        (lambda d: {**d, "signatures": [{"sig": "AAAA", "extra": 1}]}, "keyid and sig"),
        (lambda d: {**d, "payload": "ab+c-d=="}, "mixes the standard and URL-safe"),
        (lambda d: {**d, "payload": "abc=="}, "wrong padding"),
        (lambda d: {**d, "payload": "not base64!"}, "not valid base64"),
        (lambda d: {**d, "payload": 5}, "base64 string"),
        (lambda d: {**d, "payloadType": None}, "payloadType must be a string"),
    ],
)
def test_malformed_envelopes(
    signing_key: Ed25519PrivateKey, trusted: list[TrustedKey], mangle: object, message: str
) -> None:
    doc = _doc(sign_policy(policy_bytes(), signing_key))
    assert callable(mangle)
    with pytest.raises(MalformedBundleError, match=message):
        verify_bundle(_bundle(mangle(doc)), trusted, NOW)


def test_non_canonical_base64_is_malformed(signing_key: Ed25519PrivateKey, trusted: list[TrustedKey]) -> None:
    # 64-byte signature -> 88 base64 chars ending "==": the last data char carries 4 unused bits.
    doc = _doc(sign_policy(policy_bytes(), signing_key))
    signatures = doc["signatures"]
    assert isinstance(signatures, list)
    sig = signatures[0]["sig"]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = sig[-3]
    twin = alphabet[alphabet.index(last) ^ 1]  # same decoded bytes, different spelling
    assert base64.b64decode(sig[:-3] + twin + "==") == base64.b64decode(sig)
    signatures[0]["sig"] = sig[:-3] + twin + "=="
    with pytest.raises(MalformedBundleError, match="canonical"):
        verify_bundle(_bundle(doc), trusted, NOW)


def test_duplicate_fields_are_malformed(signing_key: Ed25519PrivateKey, trusted: list[TrustedKey]) -> None:
    bundle = sign_policy(policy_bytes(), signing_key)
    doubled = bundle[:-1] + b',"payloadType":"application/vnd.mamori.policy+toml"}'
    with pytest.raises(MalformedBundleError, match="twice"):
        verify_bundle(doubled, trusted, NOW)


def test_reformatted_json_still_verifies(signing_key: Ed25519PrivateKey, trusted: list[TrustedKey]) -> None:
    # The signature covers PAE(type, payload), not the JSON: an MDM tool that re-indents does no harm.
    bundle = sign_policy(policy_bytes(), signing_key)
    pretty = json.dumps(json.loads(bundle), indent=4).encode() + b"\n"
    assert verify_bundle(pretty, trusted, NOW).payload == policy_bytes()


def test_signed_but_invalid_policy_is_a_schema_error(
    signing_key: Ed25519PrivateKey, trusted: list[TrustedKey]
) -> None:
    bundle = sign_policy(policy_bytes(extra='[presence]\ncover = "glass"\n'), signing_key)
    with pytest.raises(PolicySchemaError, match=r"presence\.cover") as info:
        verify_bundle(bundle, trusted, NOW)
    assert info.value.problems[0].line == 5


def test_expired_policy(signing_key: Ed25519PrivateKey, trusted: list[TrustedKey]) -> None:
    bundle = sign_policy(policy_bytes(extra="expires = 2026-04-01T17:59:59+09:00\n"), signing_key)
    with pytest.raises(ExpiredPolicyError, match="expired"):
        verify_bundle(bundle, trusted, NOW)  # NOW is 09:00 UTC = 18:00 JST
    verified = verify_bundle(bundle, trusted, NOW - timedelta(seconds=2))
    assert verified.expires is not None


def test_rollback_and_equal_version(signing_key: Ed25519PrivateKey, trusted: list[TrustedKey]) -> None:
    v5 = verify_bundle(sign_policy(policy_bytes(version=5), signing_key), trusted, NOW)
    v4 = verify_bundle(sign_policy(policy_bytes(version=4), signing_key), trusted, NOW)
    v6 = verify_bundle(sign_policy(policy_bytes(version=6), signing_key), trusted, NOW)
    other5 = verify_bundle(
        sign_policy(policy_bytes(version=5, extra="# changed\n"), signing_key), trusted, NOW
    )
    check_update(None, v4)
    check_update(v5, v6)
    with pytest.raises(RollbackError, match="older than the trusted version 5"):
        check_update(v5, v4)
    with pytest.raises(EqualVersionError):
        check_update(v5, v5)
    with pytest.raises(RollbackError, match="different content"):
        check_update(v5, other5)


def test_every_rejection_has_its_own_reason_code() -> None:
    classes: list[type[BundleRejectedError]] = [
        MalformedBundleError,
        BundleTooLargeError,
        PayloadTypeError,
        UnknownKeyError,
        BadSignatureError,
        PolicySchemaError,
        ExpiredPolicyError,
        RollbackError,
        EqualVersionError,
    ]
    assert all(issubclass(c, BundleRejectedError) for c in classes)
    assert len({c.reason for c in classes}) == len(classes)
    assert all(c.exit_code == 1 for c in classes)


def test_naive_now_is_a_programming_error(signing_key: Ed25519PrivateKey, trusted: list[TrustedKey]) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        verify_bundle(sign_policy(policy_bytes(), signing_key), trusted, NOW.replace(tzinfo=None))


def test_dsse_verifiers_accept_url_safe_base64_and_unknown_fields(
    signing_key: Ed25519PrivateKey, trusted: list[TrustedKey]
) -> None:
    """DSSE: verifiers MUST accept either base64 alphabet and ignore unknown fields (other signers add some)."""
    payload = policy_bytes(extra="# ?>>?~~\n" * 7)  # bytes whose standard base64 holds '+' and '/'
    doc = _doc(sign_policy(payload, signing_key))
    standard = str(doc["payload"])
    assert "+" in standard or "/" in standard
    signatures = doc["signatures"]
    assert isinstance(signatures, list)
    doc["payload"] = base64.urlsafe_b64encode(payload).decode().rstrip("=")  # URL-safe, unpadded
    signatures[0]["sig"] = base64.urlsafe_b64encode(base64.b64decode(signatures[0]["sig"])).decode()
    signatures[0]["comment"] = "signed on the HSM"
    doc["x-signer"] = {"tool": "kms"}
    verified = verify_bundle(_bundle(doc), trusted, NOW)
    assert verified.payload == payload


def test_unknown_fields_cannot_smuggle_a_second_payload(
    signing_key: Ed25519PrivateKey, trusted: list[TrustedKey]
) -> None:
    """Ignored fields stay ignored: a 'payload2' next to the signed payload changes nothing that is applied."""
    doc = _doc(sign_policy(policy_bytes(version=3), signing_key))
    doc["payload2"] = base64.b64encode(policy_bytes(version=99)).decode()
    assert verify_bundle(_bundle(doc), trusted, NOW).version == 3
