"""What every installer bakes in: checked once, rendered per OS (SPEC.md, "Command line": ``mamori package``).

IT passes the server URL, an enrollment secret, the trusted public keys and optionally a signed policy and the
server's CA. Everything is checked here, before any package is written, so a typo is one line naming the fix
instead of 200 PCs that cannot verify their policy: each key must parse, the policy must verify against those
keys now (agents would reject it otherwise), the CA must be PEM certificates.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePath

from core import __version__
from core.errors import MamoriError

MAX_INPUT_BYTES = 1024 * 1024
_SECRET = re.compile(
    r"^[A-Za-z0-9_.~+/=:-]{8,512}$"
)  # shell-, XML- and TOML-safe: it is baked into all three
_GROUP = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_REVISION = re.compile(r"^[0-9]{1,6}$")


class PackageError(MamoriError):
    """An installer cannot be built from what was given (bad input or a missing build tool)."""


@dataclass(frozen=True)
class KeyFile:
    """A trusted public key as it is installed: ``<keyid prefix>.pub``, so names never collide."""

    name: str
    data: bytes
    keyid: str


@dataclass(frozen=True)
class PackageInputs:
    server: str
    enroll_secret: str
    group: str | None
    trusted_keys: tuple[KeyFile, ...]
    policy: bytes | None
    server_ca: bytes | None
    version: str = __version__
    revision: str = "1"
    insecure_http: bool = False  # a lab server on plain http:// (the enrollment is told so explicitly)


def _read(path: Path, what: str, option: str) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_INPUT_BYTES + 1)
    except OSError as err:
        raise PackageError(f"{path}: cannot read {what} ({err.strerror or err}); check {option}") from err
    if len(data) > MAX_INPUT_BYTES:
        raise PackageError(f"{path}: too large to be a {what}; check {option}")
    return data


def load_trusted_keys(paths: Sequence[Path]) -> list[KeyFile]:
    """Each ``--trusted-key`` parsed (a one-line error naming the file otherwise), duplicates dropped."""
    from policy.errors import PolicyError
    from policy.keys import parse_public_key

    keys: list[KeyFile] = []
    for path in paths:
        data = _read(path, "public key", "--trusted-key")
        try:
            key = parse_public_key(data, str(path))
        except PolicyError as err:
            raise PackageError(f"--trusted-key {err}") from err
        if all(k.keyid != key.keyid for k in keys):
            keys.append(KeyFile(f"{key.keyid[:16]}.pub", data, key.keyid))
    return keys


def load_inputs(
    *,
    server: str,
    enroll_secret: str,
    group: str | None,
    trusted_keys: Sequence[Path],
    policy: Path | None,
    server_ca: Path | None,
    now: datetime,
    revision: str = "1",
    insecure_http: bool = False,
) -> PackageInputs:
    """Check everything IT passed; raise PackageError with the option to fix."""
    from policy.errors import PolicyError
    from policy.keys import parse_public_key

    if (
        not server.startswith(("https://", "http://"))
        or len(server) > 2048
        or any(c in server for c in "\"'\\ \n")
    ):
        raise PackageError(
            f"--server {server!r}: must be the server's https:// URL, e.g. https://mamori.example.co.jp"
        )
    if server.startswith("http://") and not insecure_http:
        raise PackageError(
            f"--server {server}: plain http:// would send the device token and every event unencrypted; "
            "use the server's https:// URL (or --insecure-http for a lab)"
        )
    if not _SECRET.match(enroll_secret):
        raise PackageError(
            "--enroll-secret: must be the 8-512 character secret printed by `mamori server enroll-secret create`"
        )
    if group is not None and not _GROUP.match(group):
        raise PackageError(f"--group {group!r}: letters, digits, '.', '_' and '-' only (at most 64)")
    if not _REVISION.match(revision):
        raise PackageError(f"--revision {revision!r}: a number; raise it to re-bake the same agent version")
    if not trusted_keys:
        raise PackageError(
            "no --trusted-key given; pass the policy-signing.pub made by `mamori policy keygen` (repeatable)"
        )
    keys = load_trusted_keys(trusted_keys)
    bundle = None
    if policy is not None:
        from policy.verify import verify_bundle

        bundle = _read(policy, "policy bundle", "--policy")
        trusted = [parse_public_key(k.data, k.name) for k in keys]
        try:
            verify_bundle(bundle, trusted, now)
        except PolicyError as err:
            raise PackageError(
                f"--policy {policy}: agents would reject it ({err}); sign it with a key passed as --trusted-key"
            ) from err
    ca = None
    if server_ca is not None:
        ca = _read(server_ca, "CA bundle", "--server-ca")
        from cryptography import x509

        try:
            x509.load_pem_x509_certificates(ca)
        except ValueError as err:
            raise PackageError(
                f"--server-ca {server_ca}: not PEM certificates (expected '-----BEGIN CERTIFICATE-----')"
            ) from err
    return PackageInputs(
        server.rstrip("/"),
        enroll_secret,
        group,
        tuple(keys),
        bundle,
        ca,
        revision=revision,
        insecure_http=insecure_http,
    )


def toml_string(value: str | PurePath) -> str:
    """A TOML basic string (JSON's escaping is a subset of TOML's)."""
    return json.dumps(str(value), ensure_ascii=False)


def agent_toml(inputs: PackageInputs, config_dir: PurePath, *, header: str) -> str:
    """agent.toml for an OS whose configuration lives in ``config_dir`` (forward slashes on every OS)."""
    keys = ", ".join(toml_string(_slashes(config_dir / "keys" / k.name)) for k in inputs.trusted_keys)
    lines = [
        f"# {header}",
        "# Baked by `mamori package`; an installed copy you edit is kept on upgrade. See docs/admin-guide.md.",
        f"trusted_keys = [{keys}]",
        "# the MDM/GPO drop: replace this file with a newer signed bundle and running agents apply it",
        f"policy_bundle = {toml_string(_slashes(config_dir / 'policy.dsse.json'))}",
        f"server = {toml_string(inputs.server)}",
    ]
    if inputs.server_ca is not None:
        lines.append(f"server_ca = {toml_string(_slashes(config_dir / 'ca.pem'))}")
    lines.append("tray = true")
    return "\n".join(lines) + "\n"


def _slashes(path: PurePath) -> str:
    return path.as_posix()
