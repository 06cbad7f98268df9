"""The trusted policy store: the last-known-good signed policy on disk (SPEC.md, "Policy"; STYLE.md, python-tuf).

Layout: ``STATE_DIR/policy/trusted.json`` — one JSON document holding the exact bundle bytes that were
accepted plus metadata (id, version, expires, keyid, sha256, applied_at). It is replaced atomically (temp
file in the same directory, fsync, ``os.replace``), so a crash leaves either the old or the new policy, and a
rejected bundle never touches it. Decisions are made by the pure :mod:`policy.verify`; this module only reads,
locks and writes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Literal

from policy.dsse import MAX_BUNDLE_BYTES, parse_envelope
from policy.errors import (
    BadSignatureError,
    BundleRejectedError,
    EqualVersionError,
    PolicyValidationError,
    StoreError,
    UnknownKeyError,
)
from policy.load import load_policy
from policy.verify import Trusted, VerifiedPolicy, check_signature, check_update, verify_bundle

logger = logging.getLogger(__name__)

STORE_FORMAT = 1
SUBDIR = "policy"
STATE_FILE = "trusted.json"
LOCK_FILE = ".lock"


@dataclass(frozen=True)
class ApplyResult:
    status: Literal["accepted", "unchanged"]
    policy: VerifiedPolicy
    previous_version: int | None

    @property
    def accepted(self) -> bool:
        return self.status == "accepted"

    @property
    def unchanged(self) -> bool:
        return self.status == "unchanged"


class TrustedStore:
    """The trusted policy of one agent (or one CLI state directory)."""

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.state_dir = Path(state_dir)
        self.directory = self.state_dir / SUBDIR
        self.path = self.directory / STATE_FILE

    # -- reading -----------------------------------------------------------------------------------------------

    def current(self, trusted: Trusted | None = None) -> VerifiedPolicy | None:
        """The trusted policy, or None when nothing was applied yet. Raises StoreError if the file is damaged.

        With ``trusted`` the stored signature is checked again (e.g. after a key was revoked from agent.toml).
        Expiry is not checked here: the caller decides what an expired last-known-good policy means.
        """
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as err:
            raise StoreError(
                str(self.path), f"cannot read the trusted policy: {err.strerror or err}"
            ) from err
        return self._decode(raw, trusted)

    def _decode(self, raw: bytes, trusted: Trusted | None) -> VerifiedPolicy:
        damaged = "the trusted policy file is damaged; delete it and apply the current bundle again"
        try:
            doc = json.loads(raw)
            bundle = doc["bundle"].encode("utf-8")
            keyid = str(doc["keyid"])
            sha256 = str(doc["sha256"])
            if doc.get("format") != STORE_FORMAT:
                raise StoreError(str(self.path), f"unknown store format {doc.get('format')!r}")
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise StoreError(str(self.path), damaged) from err
        if len(bundle) > MAX_BUNDLE_BYTES:
            raise StoreError(str(self.path), damaged)
        if trusted is not None:
            try:
                _, keyid = check_signature(bundle, trusted)
            except (UnknownKeyError, BadSignatureError) as err:
                raise StoreError(
                    str(self.path),
                    f"the trusted policy is no longer signed by a trusted key ({err.reason}); "
                    "apply a bundle signed with a current key",
                ) from err
            except BundleRejectedError:
                raise StoreError(str(self.path), damaged) from None
        try:
            payload = parse_envelope(bundle).payload
            policy = load_policy(payload, str(self.path))
        except (PolicyValidationError, BundleRejectedError):
            raise StoreError(str(self.path), damaged) from None
        if hashlib.sha256(payload).hexdigest() != sha256:
            raise StoreError(str(self.path), damaged)
        return VerifiedPolicy(policy, payload, keyid, sha256, bundle)

    def metadata(self) -> dict[str, Any] | None:
        """What ``show --state-dir --json`` prints besides the policy summary (applied_at etc.)."""
        try:
            doc = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:
            raise StoreError(str(self.path), "the trusted policy file is damaged") from err
        if not isinstance(doc, dict):
            raise StoreError(str(self.path), "the trusted policy file is damaged")
        return {k: v for k, v in doc.items() if k != "bundle"}

    # -- updating ------------------------------------------------------------------------------------------------

    def apply(self, bundle: bytes, trusted: Trusted, now: datetime) -> ApplyResult:
        """Verify ``bundle`` and make it the trusted policy if it is newer.

        Returns ApplyResult("accepted") or ApplyResult("unchanged") for the version already trusted; raises the
        specific BundleRejectedError subclass otherwise, leaving the store untouched.
        """
        candidate = verify_bundle(bundle, trusted, now)  # before taking the lock: pure and possibly slow
        with self._locked():
            try:
                # Checked against the same keys: a stored policy no trusted key signed (a hand-edited file, or a
                # revoked key) is no known-good policy and must not hold the version line against real ones.
                current = self.current(trusted)
            except StoreError as err:
                # A damaged store holds no known-good policy; a verified bundle is the way to recover.
                logger.warning("replacing a damaged or untrusted trusted policy: %s", err)
                current = None
            try:
                check_update(current, candidate)
            except EqualVersionError:
                assert current is not None
                return ApplyResult("unchanged", current, current.version)
            self._write(candidate, now)
        logger.info(
            "policy %s version %d accepted (key %s)", candidate.id, candidate.version, candidate.keyid[:16]
        )
        return ApplyResult("accepted", candidate, current.version if current else None)

    def _write(self, policy: VerifiedPolicy, now: datetime) -> None:
        doc = {
            "format": STORE_FORMAT,
            "id": policy.id,
            "version": policy.version,
            "expires": policy.expires.isoformat() if policy.expires else None,
            "keyid": policy.keyid,
            "sha256": policy.sha256,
            "applied_at": now.astimezone(UTC).isoformat(),
            "bundle": policy.bundle.decode("utf-8"),
        }
        data = json.dumps(doc, indent=1, ensure_ascii=False).encode("utf-8")
        atomic_write(self.path, data)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise concurrent applies (agent + CLI) so a slower older bundle cannot overwrite a newer one."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            handle = (self.directory / LOCK_FILE).open("a+b")
        except OSError as err:
            raise StoreError(
                str(self.directory), f"cannot use the state directory: {err.strerror or err}"
            ) from err
        with handle, _exclusive(handle):
            yield


@contextlib.contextmanager
def _exclusive(handle: BinaryIO) -> Iterator[None]:
    """Hold an exclusive lock on ``handle``: flock where the OS has fcntl, else msvcrt's byte-range lock."""
    try:
        import fcntl
    except ImportError:  # Windows: no fcntl; msvcrt.locking locks the first byte instead
        import msvcrt

        # typeshed declares msvcrt's functions for win32 only; on other OSes this branch never runs.
        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_LOCK, 1)  # type: ignore[attr-defined]
        try:
            yield
        finally:
            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined]
        return
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory and os.replace (STYLE.md)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise StoreError(str(path.parent), f"cannot write: {err.strerror or err}") from err
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise StoreError(str(path), f"cannot write: {err.strerror or err}") from err
    # Make the rename itself durable (POSIX: fsync the directory). Where directories cannot be opened or
    # fsynced (Windows: os.open on a directory is refused) the rename is as durable as the OS makes it.
    with contextlib.suppress(OSError):
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
