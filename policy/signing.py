"""Signing a policy: DSSE envelope with Ed25519 over the exact policy bytes (SPEC.md, "Policy").

Signing happens offline on the administrator's machine; the server and the agent never hold a private key.
"""

from __future__ import annotations

from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from policy.dsse import MAX_BUNDLE_BYTES, PAYLOAD_TYPE, Envelope, Signature, encode_envelope, pae
from policy.errors import BundleTooLargeError
from policy.keys import generate_keypair, keyid_of

__all__ = ["PAYLOAD_TYPE", "Signer", "generate_keypair", "sign_policy"]


class Signer(Protocol):
    """An Ed25519 private key: a key file's (cryptography's Ed25519PrivateKey) or a token's (policy.pkcs11)."""

    def sign(self, data: bytes) -> bytes: ...

    def public_key(self) -> Ed25519PublicKey: ...


def sign_policy(
    payload: bytes,
    private_key: Signer | list[Signer],
    *,
    payload_type: str = PAYLOAD_TYPE,
) -> bytes:
    """Return the DSSE bundle (JSON bytes) signing ``payload`` exactly as given.

    Several keys give several signatures (useful during a key rotation: old and new agents both accept it).
    ``payload_type`` exists for tests of the verifier; real policies use the default.
    """
    keys: list[Signer] = private_key if isinstance(private_key, list) else [private_key]
    message = pae(payload_type, payload)
    signatures = tuple(Signature(keyid_of(k.public_key()), k.sign(message)) for k in keys)
    bundle = encode_envelope(Envelope(payload, payload_type, signatures))
    if len(bundle) > MAX_BUNDLE_BYTES:
        raise BundleTooLargeError(
            f"the signed bundle would be {len(bundle)} bytes; the limit is {MAX_BUNDLE_BYTES} bytes"
        )
    return bundle
