"""Property: no byte mutation of a signed bundle is ever accepted, and a rejected bundle leaves the store as it was.

A replaced, deleted or cut byte either breaks the JSON, renames a field, alters a value covered by the
signature, or misspells base64. The exceptions are by design and spell the same envelope: JSON whitespace
between tokens (what a re-indenting MDM tool does) and what DSSE says verifiers must accept (URL-safe base64,
unpadded base64, unknown fields); the test then checks that exactly the signed bytes were accepted.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policy.dsse import parse_envelope
from policy.errors import BundleRejectedError
from policy.keys import TrustedKey
from policy.signing import sign_policy
from policy.store import TrustedStore
from tests.policy.conftest import EXAMPLES, NOW

_KEY = Ed25519PrivateKey.generate()
_TRUSTED = [TrustedKey.from_public_key(_KEY.public_key())]
# A realistic payload (the standard example, ja and en text) as version 2, over a store holding version 1.
_PAYLOAD = (EXAMPLES / "standard.toml").read_bytes().replace(b"version = 1 ", b"version = 2 ", 1)
_BUNDLE = sign_policy(_PAYLOAD, _KEY)
_BASE = sign_policy((EXAMPLES / "standard.toml").read_bytes(), _KEY)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(_BUNDLE)
    kind = draw(st.sampled_from(["replace", "insert", "delete", "truncate"]))
    if kind == "truncate":
        return bytes(data[: draw(st.integers(0, len(data) - 1))])
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(data) - 1))
        if kind == "replace":
            data[pos] = (data[pos] + draw(st.integers(1, 255))) % 256  # always a different byte
        elif kind == "insert":
            data.insert(pos, draw(st.integers(0, 255)))
        else:
            del data[pos]
    return bytes(data)


def test_the_unmutated_bundle_is_accepted() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = TrustedStore(Path(tmp))
        store.apply(_BASE, _TRUSTED, NOW)
        assert store.apply(_BUNDLE, _TRUSTED, NOW).accepted


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_bundles_are_rejected_and_the_store_is_unchanged(bundle: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = TrustedStore(Path(tmp))
        store.apply(_BASE, _TRUSTED, NOW)
        before = store.path.read_bytes()
        try:
            result = store.apply(bundle, _TRUSTED, NOW)
        except BundleRejectedError:
            assert store.path.read_bytes() == before
            assert sorted(p.name for p in store.directory.iterdir()) == [".lock", "trusted.json"]
            return
        # The only changes that may pass spell the same envelope: JSON whitespace between tokens (re-indentation,
        # test_verify.test_reformatted_json_still_verifies), or what DSSE says verifiers must accept (the URL-safe
        # spelling of a base64 value, dropped padding, an unknown field). Same envelope, same bytes signed.
        assert parse_envelope(bundle) == parse_envelope(_BUNDLE), (
            f"mutated bundle was accepted: {result.status}"
        )
        assert result.policy.payload == _PAYLOAD
