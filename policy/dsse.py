"""The DSSE envelope (https://github.com/secure-systems-lab/dsse, protocol v1.0): encoding and strict parsing.

Envelope: ``{"payload": b64, "payloadType": str, "signatures": [{"keyid": str, "sig": b64}]}``.
Signatures are over PAE(payloadType, payload), never over the JSON, so the JSON may be re-indented in transit.
Parsing accepts what the DSSE spec says verifiers MUST accept: standard or URL-safe base64 (padded or not) and
unknown fields, which are ignored (an envelope from another DSSE signer, e.g. a KMS or a PKCS#11 tool). It stays
strict where it matters: one alphabet per value, zero padding bits, no duplicate fields, a keyid and a sig on
every signature, and the signature is checked over the decoded bytes only. We always write standard, padded
base64. Pure: bytes in, values out.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from policy.errors import BundleTooLargeError, MalformedBundleError

PAYLOAD_TYPE = "application/vnd.mamori.policy+toml"
MAX_BUNDLE_BYTES = 1024 * 1024  # 1 MiB: a policy is a few KiB; anything near this is not ours
MAX_SIGNATURES = 16


@dataclass(frozen=True)
class Signature:
    keyid: str
    sig: bytes


@dataclass(frozen=True)
class Envelope:
    payload: bytes
    payload_type: str
    signatures: tuple[Signature, ...]


def pae(payload_type: str, payload: bytes) -> bytes:
    """Pre-Authentication Encoding: "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body (LEN in ASCII decimal)."""
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(type_bytes), type_bytes, len(payload), payload)


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def encode_envelope(envelope: Envelope) -> bytes:
    """Compact JSON, no trailing newline: every byte of a bundle is significant (see tests/policy)."""
    doc = {
        "payload": b64encode(envelope.payload),
        "payloadType": envelope.payload_type,
        "signatures": [{"keyid": s.keyid, "sig": b64encode(s.sig)} for s in envelope.signatures],
    }
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise MalformedBundleError(f"field {key!r} appears twice in the envelope")
        out[key] = value
    return out


_URLSAFE = str.maketrans("-_", "+/")


def _b64decode(value: object, what: str) -> bytes:
    """Standard or URL-safe base64 (DSSE), padded or unpadded; refuses mixed alphabets and non-zero pad bits."""
    if not isinstance(value, str):
        raise MalformedBundleError(f"{what} must be a base64 string")
    urlsafe = "-" in value or "_" in value
    if urlsafe and ("+" in value or "/" in value):
        raise MalformedBundleError(f"{what} mixes the standard and URL-safe base64 alphabets")
    bare = value.rstrip("=")
    if value != bare and len(value) % 4:
        raise MalformedBundleError(f"{what} is not valid base64 (wrong padding)")
    standard = bare.translate(_URLSAFE) if urlsafe else bare
    try:
        decoded = base64.b64decode((standard + "=" * (-len(standard) % 4)).encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as err:
        raise MalformedBundleError(f"{what} is not valid base64") from err
    # Non-zero padding bits would give a second spelling of the same bytes; refuse it.
    if b64encode(decoded).rstrip("=") != standard:
        raise MalformedBundleError(f"{what} is not canonical base64")
    return decoded


def parse_envelope(bundle: bytes) -> Envelope:
    """Bytes -> Envelope. Raises BundleTooLargeError or MalformedBundleError; checks no signature."""
    if len(bundle) > MAX_BUNDLE_BYTES:
        raise BundleTooLargeError(f"bundle is {len(bundle)} bytes; the limit is {MAX_BUNDLE_BYTES} bytes")
    try:
        text = bundle.decode("utf-8")
        doc = json.loads(text, object_pairs_hook=_reject_duplicates)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise MalformedBundleError(
            "not a DSSE JSON envelope (truncated or corrupted?); re-sign with `mamori policy sign`"
        ) from err
    if not isinstance(doc, dict):
        raise MalformedBundleError("envelope must be a JSON object")
    expected = {"payload", "payloadType", "signatures"}
    missing = sorted(expected - doc.keys())
    if missing:
        raise MalformedBundleError(f"envelope lacks {', '.join(missing)}")
    payload_type = doc["payloadType"]
    if not isinstance(payload_type, str):
        raise MalformedBundleError("payloadType must be a string")
    payload = _b64decode(doc["payload"], "payload")
    raw_signatures = doc["signatures"]
    if not isinstance(raw_signatures, list) or not raw_signatures:
        raise MalformedBundleError("signatures must be a non-empty array")
    if len(raw_signatures) > MAX_SIGNATURES:
        raise MalformedBundleError(f"more than {MAX_SIGNATURES} signatures")
    signatures: list[Signature] = []
    for index, item in enumerate(raw_signatures):
        if not isinstance(item, dict) or not {"keyid", "sig"} <= set(item):
            raise MalformedBundleError(f"signatures[{index}] must be an object with keyid and sig")
        keyid = item["keyid"]
        if not isinstance(keyid, str):
            raise MalformedBundleError(f"signatures[{index}].keyid must be a string")
        signatures.append(Signature(keyid, _b64decode(item["sig"], f"signatures[{index}].sig")))
    return Envelope(payload, payload_type, tuple(signatures))
