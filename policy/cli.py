"""``mamori policy ...``: keygen, validate, sign, verify, apply, show, schema (SPEC.md, "Command line").

Wiring only: read files, call the pure functions in policy.*, print. Exit codes: 0 success; ``validate`` 2 on
an invalid policy; ``verify``/``apply`` 1 on any rejection (the store is unchanged); 2 for usage errors.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from core.clock import Clock, SystemClock
from policy.errors import InputFileError, PolicyValidationError, Problem

EXIT_OK = 0
EXIT_INVALID = 2  # a rejection exits 1 through PolicyError.exit_code
MAX_POLICY_FILE_BYTES = 512 * 1024

# Tests replace this to move time; the commands never call time functions directly (STYLE.md).
clock: Clock = SystemClock()


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("keygen", help="create an Ed25519 policy-signing key pair in DIR")
    p.add_argument("dir", metavar="DIR")
    p.add_argument(
        "--passphrase-file",
        metavar="FILE",
        help="encrypt the private key with the passphrase in FILE (first line)",
    )
    p.set_defaults(func=cmd_keygen)

    p = subparsers.add_parser("validate", help="check policy files; one FILE:LINE:COL line per problem")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(func=cmd_validate)

    p = subparsers.add_parser("sign", help="sign a policy file into a DSSE bundle")
    p.add_argument("file", metavar="FILE")
    p.add_argument(
        "--key",
        action="append",
        required=True,
        metavar="KEY",
        help="private key file, or a pkcs11: URI of a key on a token (repeatable)",
    )
    p.add_argument("-o", "--output", required=True, metavar="BUNDLE")
    p.add_argument(
        "--passphrase-file",
        metavar="FILE",
        help="passphrase of an encrypted key (first line of FILE; else $MAMORI_KEY_PASSPHRASE, else a prompt)",
    )
    p.set_defaults(func=cmd_sign)

    p = subparsers.add_parser(
        "pubkey", help="write the public key of a private key file or a pkcs11: token key"
    )
    p.add_argument("key", metavar="KEY")
    p.add_argument("-o", "--output", required=True, metavar="PUB")
    p.add_argument("--passphrase-file", metavar="FILE", help="passphrase of an encrypted key file")
    p.set_defaults(func=cmd_pubkey)

    p = subparsers.add_parser("verify", help="verify a bundle against trusted public keys")
    p.add_argument("bundle", metavar="BUNDLE")
    p.add_argument(
        "--pub", action="append", required=True, metavar="PUB", help="trusted public key (repeatable)"
    )
    p.set_defaults(func=cmd_verify)

    p = subparsers.add_parser("apply", help="make a verified, newer bundle the trusted policy")
    p.add_argument("bundle", metavar="BUNDLE")
    p.add_argument(
        "--pub", action="append", required=True, metavar="PUB", help="trusted public key (repeatable)"
    )
    p.add_argument("--state-dir", required=True, metavar="DIR")
    p.set_defaults(func=cmd_apply)

    p = subparsers.add_parser("show", help="show a bundle or the trusted policy of a state directory")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("bundle", nargs="?", metavar="BUNDLE")
    source.add_argument("--state-dir", metavar="DIR")
    p.add_argument(
        "--pub", action="append", default=[], metavar="PUB", help="check the signature with these keys"
    )
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")
    p.set_defaults(func=cmd_show)

    p = subparsers.add_parser("schema", help="print the policy JSON Schema")
    p.set_defaults(func=cmd_schema)


# --- helpers ---------------------------------------------------------------------------------------------------


def _read(path: str, limit: int, what: str) -> bytes:
    """Read at most ``limit`` + 1 bytes, so a huge file is refused without loading it."""
    try:
        with open(path, "rb") as handle:
            return handle.read(limit + 1)
    except FileNotFoundError as err:
        raise InputFileError(path, f"no such {what}") from err
    except IsADirectoryError as err:
        raise InputFileError(path, f"is a directory, not a {what}") from err
    except OSError as err:
        raise InputFileError(path, f"cannot read {what}: {err.strerror or err}") from err


def _read_bundle(path: str) -> bytes:
    from policy.dsse import MAX_BUNDLE_BYTES

    return _read(path, MAX_BUNDLE_BYTES, "bundle file")


def _short(keyid: str) -> str:
    return keyid[:16]


# --- commands ----------------------------------------------------------------------------------------------------


def _passphrase(args: argparse.Namespace, key_path: str, *, prompt: bool) -> bytes | None:
    """--passphrase-file, else $MAMORI_KEY_PASSPHRASE, else (for a terminal) a prompt; never a command-line value,
    which other users could read in the process list."""
    import os

    if args.passphrase_file:
        data = _read(args.passphrase_file, 4096, "passphrase file")
        line = data.decode("utf-8", "replace").splitlines()[0] if data.strip() else ""
        if not line:
            raise InputFileError(args.passphrase_file, "is empty; put the passphrase on its first line")
        return line.encode("utf-8")
    env = os.environ.get("MAMORI_KEY_PASSPHRASE")
    if env:
        return env.encode("utf-8")
    if prompt and sys.stdin.isatty():
        import getpass

        return getpass.getpass(f"passphrase for {key_path}: ").encode("utf-8")
    return None


def cmd_keygen(args: argparse.Namespace) -> int:
    from policy.keys import generate_keypair, load_trusted_keys

    passphrase = _passphrase(args, args.dir, prompt=False) if args.passphrase_file else None
    private_path, public_path = generate_keypair(args.dir, passphrase)
    keyid = load_trusted_keys([public_path])[0].keyid
    print(f"private key: {private_path} (keep it offline; mode 0600)")
    print(f"public key:  {public_path} (install it on agents and the server as a trusted key)")
    print(f"keyid:       {keyid}")
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    from policy.load import check_policy

    status = EXIT_OK
    for name in args.files:
        try:
            data = _read(name, MAX_POLICY_FILE_BYTES, "policy file")
        except InputFileError as err:
            print(Problem("", err.reason, 1, 1).format(name), file=sys.stderr)
            status = EXIT_INVALID
            continue
        if len(data) > MAX_POLICY_FILE_BYTES:
            problems = [Problem("", f"file is larger than {MAX_POLICY_FILE_BYTES} bytes", 1, 1)]
            policy = None
        else:
            policy, problems = check_policy(data, schema=True)
        if problems or policy is None:
            for problem in problems:
                print(problem.format(name), file=sys.stderr)
            status = EXIT_INVALID
        elif policy.expires is not None and policy.expires <= SystemClock().now():
            # Well-formed, but agents would refuse it: not "valid" (the exit status stays 0: the file parses).
            print(
                f"{name}: warning: expired at {policy.expires.isoformat()} (id {policy.id}, version "
                f"{policy.version}); agents refuse it: set a later expires before signing",
                file=sys.stderr,
            )
        else:
            print(f"{name}: valid (id {policy.id}, version {policy.version})")
    return status


def cmd_sign(args: argparse.Namespace) -> int:
    from policy.keys import keyid_of
    from policy.load import load_policy
    from policy.signing import sign_policy
    from policy.store import atomic_write

    data = _read(args.file, MAX_POLICY_FILE_BYTES, "policy file")
    if len(data) > MAX_POLICY_FILE_BYTES:
        raise InputFileError(args.file, f"larger than {MAX_POLICY_FILE_BYTES} bytes; not a policy file")
    try:
        policy = load_policy(data, args.file, schema=True)
    except PolicyValidationError as err:
        for problem in err.problems:
            print(problem.format(args.file), file=sys.stderr)
        print(f"mamori: {args.file}: not signed; fix the problems above", file=sys.stderr)
        return EXIT_INVALID
    if policy.expires is not None and policy.expires <= clock.now():
        raise InputFileError(
            args.file, f"expires {policy.expires.isoformat()} is in the past; agents would reject it"
        )
    keys = [_signing_key(args, path) for path in args.key]
    bundle = sign_policy(data, keys)
    out = Path(args.output)
    atomic_write(out, bundle, mode=0o644)
    keyids = ", ".join(_short(keyid_of(k.public_key())) for k in keys)
    print(f"signed {policy.id} version {policy.version} with key {keyids} -> {out}")
    return EXIT_OK


def _signing_key(args: argparse.Namespace, path: str) -> Any:
    """A private key file (encrypted ones with a passphrase), or a key on a PKCS#11 token (a pkcs11: URI)."""
    from policy.keys import is_encrypted_private_key, parse_private_key, read_key_file
    from policy.pkcs11 import Pkcs11Signer, is_pkcs11_uri

    if is_pkcs11_uri(path):
        return Pkcs11Signer(path)

    data = read_key_file(path)
    passphrase = _passphrase(args, path, prompt=True) if is_encrypted_private_key(data) else None
    return parse_private_key(data, path, passphrase)


def cmd_pubkey(args: argparse.Namespace) -> int:
    from policy.keys import keyid_of, public_key_pem
    from policy.store import atomic_write

    public = _signing_key(args, args.key).public_key()
    atomic_write(Path(args.output), public_key_pem(public), mode=0o644)
    print(f"public key: {args.output} (keyid {keyid_of(public)}); install it on agents and the server")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    from policy.keys import load_trusted_keys
    from policy.verify import verify_bundle

    trusted = load_trusted_keys(args.pub)
    verified = verify_bundle(_read_bundle(args.bundle), trusted, clock.now())
    expires = verified.expires.isoformat() if verified.expires else "never"
    print(
        f"OK: id {verified.id} version {verified.version} "
        f"(key {_short(verified.keyid)}, expires {expires}, sha256 {verified.sha256})"
    )
    return EXIT_OK


def cmd_apply(args: argparse.Namespace) -> int:
    from policy.keys import load_trusted_keys
    from policy.store import TrustedStore

    trusted = load_trusted_keys(args.pub)
    bundle = _read_bundle(args.bundle)
    result = TrustedStore(args.state_dir).apply(bundle, trusted, clock.now())
    if result.unchanged:
        print(f"no change: {result.policy.id} version {result.policy.version} is already the trusted policy")
    else:
        was = f"was version {result.previous_version}" if result.previous_version else "first policy"
        print(f"accepted: {result.policy.id} version {result.policy.version} ({was})")
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    from policy.render import policy_as_data, policy_summary

    doc: dict[str, Any]
    if args.state_dir is not None:
        from policy.store import TrustedStore

        store = TrustedStore(args.state_dir)
        if args.pub:
            from policy.keys import load_trusted_keys

            verified = store.current(load_trusted_keys(args.pub))  # re-check against today's keys
        else:
            verified = store.current()
        if verified is None:
            raise InputFileError(args.state_dir, "no policy has been applied in this state directory yet")
        meta = store.metadata() or {}
        doc = {
            "source": str(store.path),
            # Only a check made now counts: the file is in a directory others may write (policy-signing.md).
            "verified": bool(args.pub),
            "applied_at": meta.get("applied_at"),
        }
        policy, payload_sha, keyid = verified.policy, verified.sha256, verified.keyid
    else:
        bundle = _read_bundle(args.bundle)
        if args.pub:
            from policy.keys import load_trusted_keys
            from policy.verify import verify_bundle

            verified = verify_bundle(bundle, load_trusted_keys(args.pub), clock.now())
            policy, payload_sha, keyid = verified.policy, verified.sha256, verified.keyid
            doc = {"source": args.bundle, "verified": True}
        else:
            import hashlib

            from policy.dsse import parse_envelope
            from policy.load import load_policy

            envelope = parse_envelope(bundle)
            try:
                policy = load_policy(envelope.payload, f"{args.bundle} (payload)")
            except PolicyValidationError as err:
                from policy.errors import PolicySchemaError

                raise PolicySchemaError(err.problems) from err
            payload_sha = hashlib.sha256(envelope.payload).hexdigest()
            keyid = ",".join(s.keyid for s in envelope.signatures)
            doc = {"source": args.bundle, "verified": False}
    doc = {
        "id": policy.id,
        "version": policy.version,
        "expires": policy.expires.isoformat() if policy.expires else None,
        "keyid": keyid,
        "sha256": payload_sha,
        **doc,
        "summary": policy_summary(policy),
        "policy": policy_as_data(policy),
    }
    if args.json:
        json.dump(doc, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
        return EXIT_OK
    for key in ("id", "version", "expires", "keyid", "sha256", "source", "verified", "applied_at"):
        if key in doc:
            value = doc[key]
            print(f"{key + ':':<12} {'never' if key == 'expires' and value is None else value}")
    if not doc["verified"]:
        print("             (signature NOT checked: pass --pub to verify)")
    for key, value in doc["summary"].items():
        text = ", ".join(value) if isinstance(value, list) else value
        print(f"  {key}: {text}")
    return EXIT_OK


def cmd_schema(_args: argparse.Namespace) -> int:
    from policy.schema import schema_json

    sys.stdout.write(schema_json())
    return EXIT_OK


__all__ = ["register"]
