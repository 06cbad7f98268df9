"""Publishing a signed policy bundle for a group (``POST /v1/admin/policies``, ``mamori server policy publish``).

The server never holds a signing key: it can only pass on what IT signed offline, verified against the org's
trusted public keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from fastapi import HTTPException

from server.models import PolicyPublished
from server.settings import Settings
from server.storage import PolicyConflictError, Storage, ms

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from policy.keys import TrustedKey


def publish_policy(
    storage: Storage,
    trusted: Sequence[TrustedKey],
    bundle: bytes,
    group: str,
    now: datetime,
    *,
    actor: str = "-",
) -> PolicyPublished:
    """Verify a signed bundle against the org's trusted keys and store it for ``group``. The server never holds a
    signing key: it can only pass on what IT signed offline."""
    import hashlib

    from policy.errors import BundleRejectedError
    from policy.verify import verify_bundle

    if not trusted:
        raise HTTPException(
            422, "the server has no trusted_keys configured; add the policy public key to server.toml"
        )
    try:
        verified = verify_bundle(bundle, trusted, now)
    except BundleRejectedError as err:
        # err.detail, not str(err): str(err) already starts "policy rejected (reason): ".
        raise HTTPException(422, f"bundle rejected ({err.reason}): {err.detail}") from err
    from server import audit

    etag = hashlib.sha256(bundle).hexdigest()
    detail = {"group": group, "policy_id": verified.id, "version": verified.version, "etag": etag}

    def audited(conn: Connection) -> None:  # in the policy's own transaction: both are stored, or neither
        audit.append(conn, actor=actor, action="policy.publish", target=group, detail=detail, now_ms=ms(now))

    try:
        storage.store_policy(
            group, verified.id, verified.version, bundle=bundle, etag=etag, now=ms(now), also=audited
        )
    except PolicyConflictError as err:
        raise HTTPException(409, str(err)) from err
    return PolicyPublished(group=group, policy_id=verified.id, version=verified.version, etag=etag)


def load_trusted(settings: Settings) -> tuple[TrustedKey, ...]:
    """The keys of server.toml ``trusted_keys`` (none configured: publishing answers 422)."""
    if not settings.trusted_keys:
        return ()
    from policy.keys import load_trusted_keys

    return tuple(load_trusted_keys(settings.trusted_keys))
