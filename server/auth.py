"""Credentials: random bearer tokens and enrollment secrets; the server stores only their SHA-256.

The values are 256-bit random strings, so a fast hash is enough (no password stretching needed); comparing
hashes by database lookup reveals nothing about a token's prefix.
"""

from __future__ import annotations

import hashlib
import secrets

DEVICE_PREFIX = "mdt_"
ADMIN_PREFIX = "mat_"
SECRET_PREFIX = "mes_"  # noqa: S105 - a prefix, not a secret


def new_token(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def new_device_id() -> str:
    return "d" + secrets.token_hex(12)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer ...`` header, else None."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    value = value.strip()
    return value if 0 < len(value) <= 512 else None
