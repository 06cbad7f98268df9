"""Signature checks in a short-lived child process, so that a long-running caller never loads cryptography.

The running agent keeps ~10 MB of cryptography and libcrypto out of its resident memory this way
(docs/performance.md, "Agent memory"); one-shot commands (``mamori policy verify``, doctor) check in-process.
The check itself is :func:`policy.verify.verify_signature`, the same code either way; this module only carries
its input and its outcome across a pipe.

Wire format (one JSON document each way, UTF-8):
- request on the child's stdin: ``{"bundle": b64, "keys": [{"source": str, "pem": b64}, ...]}``;
- reply on its stdout: ``{"keyid": str}`` or ``{"error": NAME, "detail": str}`` (a bundle rejection) or
  ``{"error": "KeyFileError", "path": str, "reason": str}``; the parent raises the same error class with the
  same one-line message as an in-process check would.

Fail closed: a child that cannot start, exits non-zero, is killed, times out or answers anything else raises
:class:`VerifierError` (a PolicyError, not a rejection): nothing is trusted and the caller keeps its last good
policy, and tries again later because nothing was wrong with the bundle itself.

A check's outcome depends only on the bundle bytes and the key bytes, so :class:`VerdictCache` remembers it
(acceptances and rejections, never a VerifierError): the agent re-reads its trusted store every minute without
starting a process each time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import subprocess
import sys
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from policy.dsse import MAX_BUNDLE_BYTES, parse_envelope
from policy.errors import (
    BadSignatureError,
    BundleRejectedError,
    BundleTooLargeError,
    KeyFileError,
    MalformedBundleError,
    PayloadTypeError,
    PolicyError,
    UnknownKeyError,
)

logger = logging.getLogger(__name__)

TIMEOUT = 15.0  # seconds: a child starts and checks in 0.4-0.6 s (1.3 s seen on a busy machine)
MAX_REQUEST_BYTES = 4 * 1024 * 1024  # a bundle (<= 1 MiB) in base64 plus a few key files
MAX_REPLY_BYTES = 64 * 1024
CACHE_ENTRIES = 16

# The rejections verify_signature raises, by name: the only error names a reply may carry.
_REJECTIONS: dict[str, type[BundleRejectedError]] = {
    cls.__name__: cls
    for cls in (
        MalformedBundleError,
        BundleTooLargeError,
        PayloadTypeError,
        UnknownKeyError,
        BadSignatureError,
    )
}


class VerifierError(PolicyError):
    """The signature could not be checked (the child failed); nothing is trusted, the caller may retry."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(
            f"cannot check the policy signature: the verifier process {problem}; "
            "the last good policy stays in force (retried at the next check)"
        )


# ---- the child ------------------------------------------------------------------------------------------------


def _b64(value: object) -> bytes:
    if not isinstance(value, str):
        raise ValueError("expected a base64 string")
    return base64.b64decode(value.encode("ascii"), validate=True)


def serve(request: bytes) -> dict[str, Any]:
    """The child's work: request bytes -> reply document. Raises ValueError for a request it cannot read."""
    from policy.keys import parse_public_key
    from policy.verify import verify_signature

    try:
        doc = json.loads(request)
        bundle = _b64(doc["bundle"])
        key_files = [(str(item["source"]), _b64(item["pem"])) for item in doc["keys"]]
    except (ValueError, KeyError, TypeError, binascii.Error) as err:
        raise ValueError(f"unreadable request: {type(err).__name__}") from err
    try:
        keys, seen = [], set()
        for source, pem in key_files:  # as policy.keys.load_trusted_keys: in order, duplicates once
            key = parse_public_key(pem, source)
            if key.keyid not in seen:
                seen.add(key.keyid)
                keys.append(key)
        _, keyid = verify_signature(bundle, keys)
    except KeyFileError as err:
        return {"error": "KeyFileError", "path": err.path, "reason": err.reason}
    except BundleRejectedError as err:
        return {"error": type(err).__name__, "detail": err.detail}
    return {"keyid": keyid}


def main() -> int:
    """``python -m policy.verify_child``: one request on stdin, one reply on stdout, exit 0; 2 on a bad request."""
    request = sys.stdin.buffer.read(MAX_REQUEST_BYTES + 1)
    if len(request) > MAX_REQUEST_BYTES:
        print("policy verifier: request too large", file=sys.stderr)
        return 2
    try:
        reply = serve(request)
    except ValueError as err:
        print(f"policy verifier: {err}", file=sys.stderr)
        return 2
    sys.stdout.buffer.write(json.dumps(reply).encode("utf-8"))
    sys.stdout.flush()
    return 0


# ---- the parent -----------------------------------------------------------------------------------------------


_Verdict = tuple[str, ...]  # ("ok", keyid) | ("KeyFileError", path, reason) | (rejection name, detail)


class VerdictCache:
    """The last few outcomes, keyed by SHA-256 of the exact request (bundle and key bytes). Thread-safe."""

    def __init__(self, size: int = CACHE_ENTRIES) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, _Verdict] = OrderedDict()

    def get(self, key: str) -> _Verdict | None:
        with self._lock:
            verdict = self._entries.get(key)
            if verdict is not None:
                self._entries.move_to_end(key)
            return verdict

    def put(self, key: str, verdict: _Verdict) -> None:
        with self._lock:
            self._entries[key] = verdict
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


class ChildVerifier:
    """A :class:`policy.verify.SignatureVerifier` that runs the check in a child process (``command``)."""

    def __init__(
        self,
        keys: Sequence[tuple[str, bytes]],
        command: Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        cache: VerdictCache | None = None,
        timeout: float = TIMEOUT,
    ) -> None:
        self.keys = tuple(keys)
        self.command = list(command)
        self.env = dict(env) if env is not None else None
        self.cache = cache if cache is not None else VerdictCache()
        self.timeout = timeout

    @classmethod
    def load(
        cls,
        paths: Sequence[str | os.PathLike[str]],
        command: Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        cache: VerdictCache | None = None,
        timeout: float = TIMEOUT,
    ) -> ChildVerifier:
        """Read the trusted key files now (KeyFileError as policy.keys.load_trusted_keys says it); the child
        parses them."""
        from policy.keys import read_key_file

        keys = [(str(path), read_key_file(path)) for path in paths]
        return cls(keys, command, env, cache=cache, timeout=timeout)

    def verify_signature(self, bundle: bytes) -> tuple[bytes, str]:
        """As policy.verify.verify_signature with these keys. Raises its errors, or VerifierError."""
        if len(bundle) > MAX_BUNDLE_BYTES:
            raise BundleTooLargeError(f"bundle is {len(bundle)} bytes; the limit is {MAX_BUNDLE_BYTES} bytes")
        request = json.dumps(
            {
                "bundle": base64.b64encode(bundle).decode("ascii"),
                "keys": [{"source": s, "pem": base64.b64encode(pem).decode("ascii")} for s, pem in self.keys],
            }
        ).encode("ascii")
        digest = hashlib.sha256(request).hexdigest()
        verdict = self.cache.get(digest)
        if verdict is None:
            verdict = self._run(request)
            self.cache.put(digest, verdict)
        if verdict[0] == "ok":
            # The child parsed this same envelope with this same code; the payload is taken from it here.
            return parse_envelope(bundle).payload, verdict[1]
        if verdict[0] == "KeyFileError":
            raise KeyFileError(verdict[1], verdict[2])
        raise _REJECTIONS[verdict[0]](verdict[1])

    def _run(self, request: bytes) -> _Verdict:
        try:
            done = subprocess.run(
                self.command,
                input=request,
                capture_output=True,
                env=self.env,
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as err:  # run() has killed it
            raise VerifierError(f"did not answer within {self.timeout:g} s and was stopped") from err
        except OSError as err:
            raise VerifierError(f"could not start ({err.strerror or err})") from err
        if done.returncode != 0:
            said = done.stderr.decode("utf-8", "replace").strip().splitlines()
            logger.warning(
                "policy verifier exited with %d: %s",
                done.returncode,
                said[-1][:300] if said else "(no output)",
            )
            how = f"was killed by signal {-done.returncode}" if done.returncode < 0 else "failed"
            raise VerifierError(f"{how} (exit status {done.returncode})")
        return _verdict(done.stdout)


def _verdict(reply: bytes) -> _Verdict:
    """A reply -> verdict; anything that is not exactly one of the three reply shapes is a VerifierError."""
    try:
        if len(reply) > MAX_REPLY_BYTES:
            raise ValueError("too long")
        doc = json.loads(reply)
        if not isinstance(doc, dict):
            raise ValueError("not an object")
        if set(doc) == {"keyid"} and isinstance(doc["keyid"], str):
            return ("ok", doc["keyid"])
        error = doc.get("error")
        if error == "KeyFileError" and set(doc) == {"error", "path", "reason"}:
            return ("KeyFileError", str(doc["path"]), str(doc["reason"]))
        if error in _REJECTIONS and set(doc) == {"error", "detail"} and isinstance(doc["detail"], str):
            return (error, doc["detail"])
    except ValueError:
        pass
    raise VerifierError("gave an answer that is not a verification result")


if __name__ == "__main__":
    raise SystemExit(main())
