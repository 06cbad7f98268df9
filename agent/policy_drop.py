"""The MDM/GPO policy drop: ``policy_bundle`` in agent.toml, applied whenever the file changes (SPEC.md, "Policy").

A rejected bundle leaves the trusted store as it was (last-known-good) and is reported once per file version as
``policy.rejected`` with the reason code; an accepted one as ``policy.applied`` (both by the
:class:`agent.policy_source.PolicySource` every apply goes through).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from agent.policy_source import PolicySource
from policy.errors import BundleRejectedError, KeyFileError, PolicyError
from policy.verify_child import VerifierError

logger = logging.getLogger(__name__)

DROP_INTERVAL = 2.0


class PolicyDropWatcher:
    def __init__(self, path: Path, source: PolicySource, interval: float = DROP_INTERVAL) -> None:
        self.path = path
        self.source = source
        self.interval = interval
        self._seen: tuple[int, int] | None = None
        self._key_problem: str | None = None

    def check_once(self) -> str | None:
        """Apply the drop if it changed since the last look; returns "accepted", "unchanged", the rejection
        reason code, or None when there was nothing new to read."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._seen = None
            return None
        except OSError as err:
            logger.warning("policy drop %s unreadable: %s", self.path, err.strerror)
            return None
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._seen:
            return None
        try:
            bundle = self.path.read_bytes()
        except OSError as err:
            logger.warning("policy drop %s unreadable: %s", self.path, err.strerror)
            return None
        try:
            result = self.source.apply(bundle, "drop")
        except (KeyFileError, VerifierError) as err:
            # Retried every interval until the keys are fixed (or the signature can be checked again: the
            # bundle itself was not refused), but said once: not 40 000 log lines a day.
            if str(err) != self._key_problem:
                self._key_problem = str(err)
                logger.warning("policy drop not applied: %s", err)
            return None
        except BundleRejectedError as err:
            self._key_problem = None
            self._seen = stamp
            return err.reason
        except PolicyError as err:
            self._key_problem = None
            self._seen = stamp
            logger.warning("policy drop not applied: %s", err)
            return None
        self._key_problem = None
        self._seen = stamp
        return result.status

    def run(self, stop: threading.Event) -> None:
        self.check_once()
        while not stop.wait(self.interval):
            self.check_once()
