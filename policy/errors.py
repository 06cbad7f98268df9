"""Errors of the policy package. Each rejection reason has its own class (STYLE.md, python-tuf model).

Exit codes follow SPEC.md: ``validate`` exits 2 on an invalid policy; ``verify`` and ``apply`` exit 1 on any
rejection. Every message is one line that says what is wrong and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import MamoriError


class PolicyError(MamoriError):
    """Base of every policy failure."""

    exit_code = 1


@dataclass(frozen=True)
class Problem:
    """One validation problem, printed as FILE:LINE:COL: dotted.path: message."""

    path: str  # dotted path, e.g. "presence.warn_after" or "customer_apps[1].title"
    message: str
    line: int = 0
    col: int = 0

    def format(self, source: str) -> str:
        return f"{source}:{self.line}:{self.col}: {self.path or '(top)'}: {self.message}"


class PolicyValidationError(PolicyError):
    """The policy file is not valid; carries every problem found, not just the first."""

    exit_code = 2

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(p.format(source) for p in problems) or f"{source}: invalid policy")


# --- keys -------------------------------------------------------------------------------------------------


class KeyFileError(PolicyError):
    """A key file is missing, unreadable or not an Ed25519 key in the expected PEM format."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class KeyExistsError(PolicyError):
    """keygen refuses to overwrite an existing key."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(f"{path} already exists; refusing to overwrite a signing key (choose another DIR)")


# --- bundle rejections ----------------------------------------------------------------------------------------


class BundleRejectedError(PolicyError):
    """A signed policy bundle was rejected. ``reason`` is a stable machine-readable code (used in events)."""

    reason = "rejected"

    def __init__(self, message: str) -> None:
        super().__init__(f"policy rejected ({self.reason}): {message}")
        self.detail = message


class MalformedBundleError(BundleRejectedError):
    """Not a DSSE envelope of the expected shape (bad JSON, missing fields, bad base64, truncated)."""

    reason = "malformed"


class BundleTooLargeError(MalformedBundleError):
    """The bundle exceeds the size limit; it is refused before parsing."""

    reason = "too_large"


class PayloadTypeError(BundleRejectedError):
    """The envelope's payloadType is not application/vnd.mamori.policy+toml."""

    reason = "payload_type"


class UnknownKeyError(BundleRejectedError):
    """No signature in the envelope names a trusted key."""

    reason = "unknown_key"


class BadSignatureError(BundleRejectedError):
    """A signature names a trusted key but does not verify over the envelope's payload."""

    reason = "bad_signature"


class PolicySchemaError(BundleRejectedError):
    """The signed payload is not a valid policy."""

    reason = "schema"

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        first = problems[0].format("payload") if problems else "invalid policy"
        more = f" (and {len(problems) - 1} more; run `mamori policy validate` on the source file)"
        super().__init__(first + (more if len(problems) > 1 else ""))


class ExpiredPolicyError(BundleRejectedError):
    """The policy's ``expires`` instant has passed."""

    reason = "expired"


class RollbackError(BundleRejectedError):
    """The bundle's version is lower than the trusted one (or equal with different content)."""

    reason = "rollback"


class EqualVersionError(BundleRejectedError):
    """The bundle is the version already trusted; the store reports "no change" instead of failing."""

    reason = "equal_version"


class StoreError(PolicyError):
    """The trusted store on disk cannot be read or written."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class InputFileError(PolicyError):
    """A file named on the command line cannot be read (or written)."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")
