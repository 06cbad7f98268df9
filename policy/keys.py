"""Ed25519 policy-signing keys: identifiers, PEM files, the trusted-key list.

File formats (docs/policy-signing.md):
- private key: PEM "PRIVATE KEY" (PKCS#8), written 0600 by ``mamori policy keygen``; or "ENCRYPTED PRIVATE KEY"
  (PKCS#8 with a passphrase: ``keygen --passphrase-file``, or ``openssl pkcs8 -topk8 -v2 aes-256-cbc``);
- public key: PEM "PUBLIC KEY" (X.509 SubjectPublicKeyInfo), the form ``openssl pkey -pubout`` prints.

A key is identified by its keyid: the lowercase hex SHA-256 of the raw 32-byte Ed25519 public key (SPEC.md).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from policy.errors import KeyExistsError, KeyFileError

if TYPE_CHECKING:
    # Imported where used: reading key files and checking signatures must not load cryptography (the running
    # agent checks signatures in a child process, policy/verify_child.py; docs/performance.md).
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

PRIVATE_KEY_NAME = "policy-signing.key"
PUBLIC_KEY_NAME = "policy-signing.pub"
MAX_KEY_FILE_BYTES = 16 * 1024


@dataclass(frozen=True)
class TrustedKey:
    """A public key the verifier accepts signatures from."""

    keyid: str
    public_key: Ed25519PublicKey
    source: str = ""

    @classmethod
    def from_public_key(cls, public_key: Ed25519PublicKey, source: str = "") -> TrustedKey:
        return cls(keyid_of(public_key), public_key, source)


def keyid_of(public_key: Ed25519PublicKey) -> str:
    from cryptography.hazmat.primitives import serialization

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def public_key_pem(public_key: Ed25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def private_key_pem(private_key: Ed25519PrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def parse_public_key(data: bytes, source: str = "<public key>") -> TrustedKey:
    """PEM SubjectPublicKeyInfo bytes -> TrustedKey. Raises KeyFileError."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as err:
        raise KeyFileError(source, "not a PEM public key (expected '-----BEGIN PUBLIC KEY-----')") from err
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(source, f"is a {type(key).__name__}, not an Ed25519 public key")
    return TrustedKey.from_public_key(key, source)


def is_encrypted_private_key(data: bytes) -> bool:
    return b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in data


def parse_private_key(
    data: bytes, source: str = "<private key>", passphrase: bytes | None = None
) -> Ed25519PrivateKey:
    """PEM PKCS#8 bytes (encrypted when ``passphrase`` is given) -> Ed25519 private key. Raises KeyFileError."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    encrypted = is_encrypted_private_key(data)
    if encrypted and passphrase is None:
        raise KeyFileError(
            source, "is encrypted; pass its passphrase with --passphrase-file FILE or $MAMORI_KEY_PASSPHRASE"
        )
    try:
        key = serialization.load_pem_private_key(data, password=passphrase if encrypted else None)
    except TypeError as err:
        raise KeyFileError(source, "is encrypted; pass its passphrase with --passphrase-file FILE") from err
    except (ValueError, UnsupportedAlgorithm) as err:
        if encrypted:
            raise KeyFileError(source, "wrong passphrase (or a damaged key file)") from err
        raise KeyFileError(source, "not a PEM private key (expected '-----BEGIN PRIVATE KEY-----')") from err
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(source, f"is a {type(key).__name__}, not an Ed25519 private key")
    return key


def _read(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_KEY_FILE_BYTES + 1)
    except FileNotFoundError as err:
        raise KeyFileError(str(path), "no such key file") from err
    except OSError as err:
        raise KeyFileError(str(path), f"cannot read key file: {err.strerror or err}") from err
    if len(data) > MAX_KEY_FILE_BYTES:
        raise KeyFileError(str(path), "too large to be a key file")
    return data


def load_trusted_keys(paths: Iterable[str | os.PathLike[str]]) -> list[TrustedKey]:
    """Read public key files (several allowed, for rotation). Duplicates are kept once. Raises KeyFileError."""
    keys: list[TrustedKey] = []
    seen: set[str] = set()
    for raw_path in paths:
        path = Path(raw_path)
        key = parse_public_key(_read(path), str(path))
        if key.keyid not in seen:
            seen.add(key.keyid)
            keys.append(key)
    return keys


def load_private_key(path: str | os.PathLike[str], passphrase: bytes | None = None) -> Ed25519PrivateKey:
    return parse_private_key(_read(Path(path)), str(path), passphrase)


def read_key_file(path: str | os.PathLike[str]) -> bytes:
    """A key file's bytes (size-limited), for callers that decide on a passphrase first."""
    return _read(Path(path))


def generate_keypair(directory: str | os.PathLike[str], passphrase: bytes | None = None) -> tuple[Path, Path]:
    """Write DIR/policy-signing.key (0600, never overwritten; encrypted with ``passphrase`` when given) and
    DIR/policy-signing.pub; return both paths."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    folder = Path(directory)
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as err:
        raise KeyFileError(str(folder), f"cannot create directory: {err.strerror or err}") from err
    private_path = folder / PRIVATE_KEY_NAME
    public_path = folder / PUBLIC_KEY_NAME
    for existing in (private_path, public_path):
        if existing.exists():
            raise KeyExistsError(str(existing))
    private_key = Ed25519PrivateKey.generate()
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    try:
        # O_EXCL + mode 0600 at creation: the key is never readable by others, not even briefly.
        fd = os.open(private_path, flags, 0o600)
    except FileExistsError as err:
        raise KeyExistsError(str(private_path)) from err
    except OSError as err:
        raise KeyFileError(str(private_path), f"cannot create key file: {err.strerror or err}") from err
    with os.fdopen(fd, "wb") as handle:
        if passphrase:
            handle.write(
                private_key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.BestAvailableEncryption(passphrase),
                )
            )
        else:
            handle.write(private_key_pem(private_key))
    try:
        fd = os.open(public_path, flags, 0o644)
    except OSError as err:
        # Half a key pair would make every retry fail on "already exists": take the private half back.
        private_path.unlink(missing_ok=True)
        if isinstance(err, FileExistsError):
            raise KeyExistsError(str(public_path)) from err
        raise KeyFileError(str(public_path), f"cannot create key file: {err.strerror or err}") from err
    with os.fdopen(fd, "wb") as handle:
        handle.write(public_key_pem(private_key.public_key()))
    return private_path, public_path
