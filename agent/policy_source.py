"""The one view of the policy in force, for every part of the agent (SPEC.md, "Policy").

The runtime, the MDM drop watcher, the server pull, reporting, ``agent check`` and doctor all read the policy
through a :class:`PolicySource` and apply bundles through :meth:`PolicySource.apply`, so they can never
disagree about which policy is in force or report an apply differently.

- :meth:`read` verifies the trusted store *now* against agent.toml's ``trusted_keys`` and raises
  :class:`policy.errors.PolicyError` when it cannot (one-shot commands want the reason).
- :meth:`current` is the cached view for the long-running parts: the store is re-verified when its file or a
  trusted key file changed (one ``stat`` each), at least every ``recheck`` seconds, and on failure the last good
  policy stays in force (SPEC.md: a broken policy keeps the last good one).
- :meth:`apply` puts a bundle through the trusted store (signature, version, expiry, schema) and publishes
  ``policy.applied`` or ``policy.rejected`` with the reason code.

The signature is checked again on every re-read: trusted.json lives in the worker's own state directory, and a
hand-edited file must never become the policy in force (docs/policy-signing.md, "The trusted store").

Where the signature is checked is the caller's choice (``keys``): in this process by default (one-shot commands),
in a child process for the running agent (agent/policy_verifier.py), which so never loads cryptography.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.config import AgentConfig
from agent.report.stream import AgentEvent, EventStream, Kind
from core.clock import Clock
from policy.errors import BundleRejectedError, PolicyError
from policy.model import Policy
from policy.store import ApplyResult, TrustedStore
from policy.verify import Trusted, VerifiedPolicy

logger = logging.getLogger(__name__)

RECHECK = 60.0  # seconds between re-verifications when nothing changed on disk

PolicyView = Callable[[], Policy | None]
# agent.toml's trusted_keys -> what the store checks signatures with (parsed keys, or a child's verifier)
KeyLoader = Callable[[Sequence[Path]], Trusted]


@dataclass(frozen=True)
class PolicyReading:
    """What a one-shot command finds: the policy the agent enforces (or would after its next drop check) and
    where it comes from, plus what is wrong with the other place."""

    verified: VerifiedPolicy | None
    origin: str  # "store", "drop" or "" (none)
    problems: tuple[str, ...] = ()


_Stamp = tuple[tuple[int, int, int] | None, ...]


class PolicySource:
    def __init__(
        self,
        config: AgentConfig,
        clock: Clock,
        stream: EventStream | None = None,
        *,
        fixed: Policy | None = None,
        recheck: float = RECHECK,
        keys: KeyLoader | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.stream = stream
        self.store = TrustedStore(config.state_dir)
        self._fixed = fixed
        self._recheck = recheck
        self._keys = keys
        self._lock = threading.Lock()
        self._policy: Policy | None = fixed
        self._stamp: _Stamp | None = None
        self._checked = float("-inf")
        self._problem: str | None = None

    @classmethod
    def unsigned(
        cls, path: Path, config: AgentConfig, clock: Clock, stream: EventStream | None = None
    ) -> PolicySource:
        """Development and tests only: an unsigned policy TOML instead of the trusted store."""
        from policy.load import load_policy

        fixed = load_policy(path.read_bytes(), str(path))
        logger.warning("using an UNSIGNED policy file (development only): %s", path)
        return cls(config, clock, stream, fixed=fixed)

    @property
    def fixed(self) -> bool:
        return self._fixed is not None

    def trusted(self) -> Trusted:
        """agent.toml's trusted keys, read now (raises KeyFileError)."""
        if self._keys is not None:
            return self._keys(self.config.trusted_keys)
        from policy.keys import load_trusted_keys

        return load_trusted_keys(self.config.trusted_keys)

    # ---- reading ---------------------------------------------------------------------------------------
    def read_verified(self) -> VerifiedPolicy | None:
        """The stored policy with its signature checked now; raises PolicyError when it cannot be read."""
        return self.store.current(self.trusted())

    def read(self) -> Policy | None:
        """The policy in force, verified now (raises PolicyError). A fixed (unsigned) policy is returned as is."""
        if self._fixed is not None:
            return self._fixed
        verified = self.read_verified()
        return verified.policy if verified is not None else None

    def read_with_drop(self) -> PolicyReading:
        """The trusted store, or agent.toml's ``policy_bundle`` (an MDM drop) when the store is empty or older.

        The drop is verified now against ``trusted_keys`` (signature, schema, expiry) and nothing is written:
        this is for ``agent check`` and doctor, which must see the policy the running agent enforces (its drop
        watcher applies the same file) without changing the store. Raises PolicyError when the trusted keys
        cannot be read; a store or drop that does not verify is named in ``problems``.
        """
        from policy.verify import verify_bundle

        trusted = self.trusted()
        problems: list[str] = []
        stored: VerifiedPolicy | None = None
        try:
            stored = self.store.current(trusted)
        except PolicyError as err:
            problems.append(f"trusted store {self.store.path}: {err}")
        drop = self.config.policy_bundle
        if drop is None:
            return PolicyReading(stored, "store" if stored else "", tuple(problems))
        try:
            dropped = verify_bundle(drop.read_bytes(), trusted, self.clock.now())
        except FileNotFoundError:
            problems.append(f"policy_bundle {drop}: no such file")
        except OSError as err:
            problems.append(f"policy_bundle {drop}: {err.strerror}")
        except BundleRejectedError as err:
            problems.append(f"policy_bundle {drop}: {err}")
        else:
            if stored is None or dropped.version > stored.version:
                return PolicyReading(dropped, "drop", tuple(problems))
        return PolicyReading(stored, "store" if stored else "", tuple(problems))

    def current(self) -> Policy | None:
        """The cached policy in force; the last good one when the store cannot be read right now."""
        if self._fixed is not None:
            return self._fixed
        now = self.clock.monotonic()
        stamp = self._files_stamp()
        if not self._lock.acquire(blocking=False):
            # Another thread is re-reading; its signature check may take a child process (agent/policy_verifier.py,
            # ~0.5 s): the protection loop gets the last good policy meanwhile instead of waiting for it.
            return self._policy
        try:
            if stamp == self._stamp and now - self._checked < self._recheck:
                return self._policy
            try:
                fresh = self.read()
            except PolicyError as err:
                if str(err) != self._problem:  # said once per problem, not on every tick
                    self._problem = str(err)
                    logger.warning("policy not readable, keeping the last good one: %s", err)
                fresh = None
            else:
                self._problem = None
            self._stamp, self._checked = stamp, now
            if fresh is not None and not _same(fresh, self._policy):
                self._policy = fresh
            return self._policy
        finally:
            self._lock.release()

    def __call__(self) -> Policy | None:
        return self.current()

    def _files_stamp(self) -> _Stamp:
        return tuple(_stat(path) for path in (self.store.path, *self.config.trusted_keys))

    # ---- applying --------------------------------------------------------------------------------------
    def apply(self, bundle: bytes, origin: str = "server") -> ApplyResult:
        """Apply ``bundle`` (from ``origin``: "drop" or "server") and publish the outcome.

        Raises BundleRejectedError (after publishing ``policy.rejected``) when the bundle is refused; the
        last good policy stays in force. Raises PolicyError when the trusted keys cannot be read.
        """
        trusted = self.trusted()
        now = self.clock.now()
        try:
            result = self.store.apply(bundle, trusted, now)
        except BundleRejectedError as err:
            logger.warning("%s policy rejected, keeping the last good policy: %s", origin, err)
            self._publish(AgentEvent(Kind.POLICY_REJECTED, now, {"reason": err.reason}))
            raise
        if result.accepted:
            with self._lock:
                self._stamp = None  # re-read at the next current(), whatever the file times say
            self._publish(
                AgentEvent(
                    Kind.POLICY_APPLIED,
                    now,
                    {"policy_id": result.policy.id, "version": result.policy.version},
                )
            )
        return result

    def rejected(self, reason: str) -> None:
        """Report a bundle refused before it reached the store (e.g. a server bundle remembered as bad)."""
        self._publish(AgentEvent(Kind.POLICY_REJECTED, self.clock.now(), {"reason": reason}))

    def _publish(self, event: AgentEvent) -> None:
        if self.stream is not None:
            self.stream.publish(event)


def _same(a: Policy, b: Policy | None) -> bool:
    return b is not None and (a.id, a.version) == (b.id, b.version)


def _stat(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)
