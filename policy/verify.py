"""The pure policy verifier (STYLE.md, python-tuf's TrustedMetadataSet): bytes + trusted keys + now -> result.

No I/O, no clock: the caller passes ``now``. Order of checks, each with its own error class:
size and envelope shape (MalformedBundleError, BundleTooLargeError) -> payloadType (PayloadTypeError) ->
signature (UnknownKeyError, BadSignatureError) -> only then parse the payload (PolicySchemaError) ->
expiry (ExpiredPolicyError). :func:`check_update` adds the version rules (RollbackError, EqualVersionError).

The trusted keys are either parsed keys (``Sequence[TrustedKey]``, checked here with cryptography) or a
:class:`SignatureVerifier` that checks the signature elsewhere: the running agent's verifier runs this same
:func:`verify_signature` in a short-lived child process (policy/verify_child.py) so that the agent never loads
cryptography (docs/performance.md, "Agent memory"). Everything after the signature runs here either way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from policy.dsse import PAYLOAD_TYPE, pae, parse_envelope
from policy.errors import (
    BadSignatureError,
    EqualVersionError,
    ExpiredPolicyError,
    PayloadTypeError,
    PolicySchemaError,
    PolicyValidationError,
    RollbackError,
    UnknownKeyError,
)

if TYPE_CHECKING:
    from policy.keys import TrustedKey
    from policy.model import Policy


@dataclass(frozen=True)
class VerifiedPolicy:
    """A policy whose signature, type, schema and expiry have been checked."""

    policy: Policy
    payload: bytes  # the exact signed TOML bytes
    keyid: str  # the trusted key whose signature verified
    sha256: str  # hex SHA-256 of payload
    bundle: bytes  # the envelope as received

    @property
    def id(self) -> str:
        return self.policy.id

    @property
    def version(self) -> int:
        return self.policy.version

    @property
    def expires(self) -> datetime | None:
        return self.policy.expires

    def is_expired(self, now: datetime) -> bool:
        """Whether ``expires`` has passed at ``now`` (for a last-known-good policy read back from the store)."""
        return self.policy.expires is not None and self.policy.expires <= now


class SignatureVerifier(Protocol):
    """Checks a bundle's signature against trusted keys it holds, as :func:`verify_signature` does."""

    def verify_signature(self, bundle: bytes) -> tuple[bytes, str]: ...


Trusted = Sequence["TrustedKey"] | SignatureVerifier


def check_signature(bundle: bytes, trusted: Trusted) -> tuple[bytes, str]:
    """:func:`verify_signature` with parsed keys, else the verifier's own (same errors, same order)."""
    if isinstance(trusted, Sequence):
        return verify_signature(bundle, trusted)
    return trusted.verify_signature(bundle)


def verify_signature(bundle: bytes, trusted: Sequence[TrustedKey]) -> tuple[bytes, str]:
    """Check envelope, payloadType and signature; return (payload, keyid). Does not parse the payload."""
    from cryptography.exceptions import InvalidSignature

    envelope = parse_envelope(bundle)
    if envelope.payload_type != PAYLOAD_TYPE:
        raise PayloadTypeError(f"payloadType is {envelope.payload_type[:80]!r}; expected {PAYLOAD_TYPE!r}")
    by_id = {key.keyid: key for key in trusted}
    message = pae(envelope.payload_type, envelope.payload)
    candidates = [s for s in envelope.signatures if s.keyid in by_id]
    if not candidates:
        named = ", ".join(s.keyid[:16] for s in envelope.signatures)
        if not by_id:
            raise UnknownKeyError("no trusted keys are configured; pass --pub or set trusted_keys")
        raise UnknownKeyError(
            f"signed by key(s) {named} which are not trusted; trusted: {', '.join(k[:16] for k in by_id)}"
        )
    for signature in candidates:
        try:
            by_id[signature.keyid].public_key.verify(signature.sig, message)
        except InvalidSignature:
            continue
        return envelope.payload, signature.keyid
    raise BadSignatureError(
        f"signature by key {candidates[0].keyid[:16]} does not match the payload (tampered or corrupted bundle)"
    )


def verify_bundle(bundle: bytes, trusted: Trusted, now: datetime) -> VerifiedPolicy:
    """Verify a signed bundle completely. Raises a BundleRejectedError subclass naming the reason."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    payload, keyid = check_signature(bundle, trusted)
    from policy.load import load_policy  # here: the signature child (verify_child.py) needs no policy parser

    try:
        policy = load_policy(payload, "payload")
    except PolicyValidationError as err:
        raise PolicySchemaError(err.problems) from err
    if policy.expires is not None and policy.expires <= now:  # == VerifiedPolicy.is_expired
        raise ExpiredPolicyError(
            f"policy {policy.id} version {policy.version} expired at {policy.expires.isoformat()}; "
            "sign a new version with a later expires"
        )
    return VerifiedPolicy(policy, payload, keyid, hashlib.sha256(payload).hexdigest(), bundle)


def check_update(current: VerifiedPolicy | None, candidate: VerifiedPolicy) -> None:
    """Version rules: the candidate must be newer than the trusted policy. Raises RollbackError/EqualVersionError."""
    if current is None:
        return
    if candidate.version < current.version:
        raise RollbackError(
            f"version {candidate.version} is older than the trusted version {current.version}; "
            f"publish it as version {current.version + 1} or higher"
        )
    if candidate.version == current.version:
        if candidate.sha256 != current.sha256:
            raise RollbackError(
                f"version {candidate.version} is already trusted with different content; "
                f"publish the change as version {current.version + 1}"
            )
        raise EqualVersionError(f"version {candidate.version} is already the trusted policy")
