"""Signing with a key that never leaves a PKCS#11 token (an HSM, a smart card, SoftHSM2 in tests).

``mamori policy sign FILE --key 'pkcs11:token=mamori;object=policy-signing?module-path=/usr/lib/…/libsofthsm2.so'``
names the key with an RFC 7512 URI: ``token`` (label), ``object`` (key label) or ``id`` (hex, ``%01``), and in the
query ``module-path`` (the token's PKCS#11 library) and ``pin-source=file:/path`` (else $MAMORI_PKCS11_PIN, else a
prompt). The signing itself runs OpenSC's ``pkcs11-tool`` (mechanism EDDSA, Ed25519 keys); the PIN reaches it
through its environment, never the command line. Each signature is checked against the token's public key
before it is used, so a wrong object is an error here and not a bundle every agent rejects.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from policy.errors import KeyFileError

PIN_ENV = "MAMORI_PKCS11_PIN"
_TOOL_PIN_ENV = "MAMORI_PKCS11_TOOL_PIN"  # what pkcs11-tool reads (--pin env:…)
_EC_POINT = re.compile(r"EC_POINT:\s*0420([0-9a-fA-F]{64})\b")


def is_pkcs11_uri(value: str) -> bool:
    return value.startswith("pkcs11:")


@dataclass(frozen=True)
class Pkcs11Uri:
    module: str
    token: str | None
    label: str | None
    key_id: str | None  # hex
    pin_file: str | None

    @classmethod
    def parse(cls, uri: str) -> Pkcs11Uri:
        body = uri[len("pkcs11:") :]
        path, _, query = body.partition("?")
        attrs = _pairs(path, ";")
        params = _pairs(query, "&")
        module = params.get("module-path")
        if not module:
            raise KeyFileError(uri, "names no module-path; add ?module-path=/path/to/the/token's/pkcs11.so")
        if "pin-value" in params:
            raise KeyFileError(
                uri, "pin-value is not accepted (others could read it); use pin-source=file:/path"
            )
        pin_source = params.get("pin-source")
        if pin_source is not None and not pin_source.startswith("file:"):
            raise KeyFileError(
                uri, "pin-source must be file:/path (a PIN on the command line is never accepted)"
            )
        key_id = attrs.get("id")
        if attrs.get("object") is None and key_id is None:
            raise KeyFileError(uri, "names no key; add object=LABEL or id=%01")
        return cls(
            module=module,
            token=attrs.get("token"),
            label=attrs.get("object"),
            key_id=key_id.encode("latin-1").hex() if key_id is not None else None,
            pin_file=pin_source[len("file:") :] if pin_source else None,
        )


def _pairs(text: str, sep: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in filter(None, text.split(sep)):
        name, _, value = part.partition("=")
        out[unquote(name)] = unquote(value, encoding="latin-1")
    return out


class Pkcs11Signer:
    """An Ed25519 key on a PKCS#11 token, usable wherever policy.signing takes a private key."""

    def __init__(self, uri: str, pin: str | None = None) -> None:
        self.uri = uri
        self.ref = Pkcs11Uri.parse(uri)
        self._tool = shutil.which("pkcs11-tool")
        if self._tool is None:
            raise KeyFileError(uri, "pkcs11-tool not found; install OpenSC (apt-get install opensc)")
        if not Path(self.ref.module).exists():
            raise KeyFileError(uri, f"module-path {self.ref.module} does not exist")
        self._pin = pin
        self._public: Ed25519PublicKey | None = None

    def _select(self) -> list[str]:
        args = ["--module", self.ref.module]
        if self.ref.token:
            args += ["--token-label", self.ref.token]
        if self.ref.key_id:
            args += ["--id", self.ref.key_id]
        elif self.ref.label:
            args += ["--label", self.ref.label]
        return args

    def _run(self, args: list[str], env: dict[str, str] | None = None) -> str:
        assert self._tool is not None
        result = subprocess.run(
            [self._tool, *self._select(), *args], capture_output=True, text=True, check=False, env=env
        )
        if result.returncode != 0:
            why = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
            raise KeyFileError(self.uri, f"pkcs11-tool failed: {why[0]}")
        return result.stdout

    def public_key(self) -> Ed25519PublicKey:
        if self._public is None:
            listing = self._run(["--list-objects", "--type", "pubkey"])
            match = None
            for block in listing.split("Public Key Object")[1:]:
                label = re.search(r"^\s*label:\s*(.*?)\s*$", block, re.MULTILINE)
                key_id = re.search(r"^\s*ID:\s*([0-9a-fA-F]+)\s*$", block, re.MULTILINE)
                if self.ref.key_id is not None:
                    wanted = key_id is not None and key_id.group(1).lower() == self.ref.key_id
                else:
                    wanted = label is not None and label.group(1) == self.ref.label
                if wanted:
                    match = _EC_POINT.search(block)
                    break
            if match is None:
                raise KeyFileError(self.uri, "no Ed25519 public key with that label/id on the token")
            self._public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(match.group(1)))
        return self._public

    def _pin_value(self) -> str:
        if self._pin is None:
            if self.ref.pin_file:
                try:
                    self._pin = Path(self.ref.pin_file).read_text(encoding="utf-8").splitlines()[0]
                except (OSError, IndexError) as err:
                    raise KeyFileError(self.uri, f"cannot read the PIN from {self.ref.pin_file}") from err
            elif os.environ.get(PIN_ENV):
                self._pin = os.environ[PIN_ENV]
            else:
                import getpass

                self._pin = getpass.getpass(f"PIN for {self.ref.token or 'the token'}: ")
        return self._pin

    def sign(self, message: bytes) -> bytes:
        public = self.public_key()
        with tempfile.TemporaryDirectory(prefix="mamori-p11-") as tmp:
            data, out = Path(tmp) / "message", Path(tmp) / "signature"
            data.write_bytes(message)
            env = {**os.environ, _TOOL_PIN_ENV: self._pin_value()}
            self._run(
                ["--login", "--pin", f"env:{_TOOL_PIN_ENV}", "--sign", "--mechanism", "EDDSA",
                 "-i", str(data), "-o", str(out)],
                env=env,
            )  # fmt: skip
            signature = out.read_bytes()
        try:
            public.verify(signature, message)
        except InvalidSignature as err:
            raise KeyFileError(self.uri, "the token's signature does not verify with its public key") from err
        return signature
