"""Is the worker on a call? The microphone is in use (SPEC.md: ``inhibit_lock_when = ["call"]`` may delay the
lock, never the cover; issue 11).

Linux: a PulseAudio source output (a stream recording from a source) on a source that is not a monitor of an
output. PipeWire answers the same question through pipewire-pulse, so one probe serves both; it asks ``pactl``
(pulseaudio-utils / pipewire-pulse). Only counts leave this module: no application or device names.

Windows (the CapabilityAccessManager consent store) and macOS are not implemented: there
:func:`create_call_probe` returns None, the ``call`` inhibitor never fires and the lock is never delayed for a
call (the safe side: a call cannot hold the lock off; docs/how-protection-works.md).

:class:`CallWatcher` polls the probe (a supervised worker) and switches the protection loop's ``call`` inhibitor.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping

from agent.platform.base import PlatformError

logger = logging.getLogger(__name__)

POLL = 5.0  # seconds between probes: a call lasts minutes, and the lock is minutes away


def parse_pactl_short(sources: str, outputs: str) -> int:
    """Recording streams on real (non-monitor) sources, from ``pactl list sources short`` and
    ``pactl list source-outputs short`` (tab-separated: index, name-or-source, ...)."""
    monitors = set()
    for line in sources.splitlines():
        cols = line.split("\t")
        if len(cols) >= 2 and cols[1].endswith(".monitor"):
            monitors.add(cols[0])
    count = 0
    for line in outputs.splitlines():
        cols = line.split("\t")
        if len(cols) >= 2 and cols[0].strip() and cols[1] not in monitors:
            count += 1
    return count


class PactlProbe:
    """Counts microphone streams with ``pactl`` (PulseAudio or pipewire-pulse)."""

    def __init__(self, pactl: str, env: Mapping[str, str] | None = None, timeout: float = 3.0) -> None:
        self.pactl = pactl
        self.env = dict(env) if env is not None else None
        self.timeout = timeout

    def _run(self, *args: str) -> str:
        try:
            result = subprocess.run(
                [self.pactl, *args],
                capture_output=True,
                text=True,
                timeout=self.timeout,
                env=self.env,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as err:
            raise PlatformError(f"pactl failed: {err}") from err
        if result.returncode != 0:
            raise PlatformError(f"pactl {' '.join(args)} exited {result.returncode}: {result.stderr.strip()}")
        return result.stdout

    def microphone_streams(self) -> int:
        sources = self._run("list", "sources", "short")
        outputs = self._run("list", "source-outputs", "short")
        return parse_pactl_short(sources, outputs)


CallProbe = Callable[[], int]


def create_call_probe(env: Mapping[str, str] | None = None) -> CallProbe | None:
    """This OS's call probe, or None where there is none (Windows, macOS, a Linux without pactl)."""
    if sys.platform.startswith("linux"):
        pactl = shutil.which("pactl")
        if pactl is not None:
            return PactlProbe(pactl, env).microphone_streams
    return None


class CallWatcher:
    """Polls ``probe`` and calls ``set_inhibitor("call", active)`` on every change (a supervised worker).

    A probe that errors (no sound server) counts as "no call": the lock is not delayed by what cannot be seen.
    """

    def __init__(
        self, probe: CallProbe, set_inhibitor: Callable[[str, bool], None], interval: float = POLL
    ) -> None:
        self.probe = probe
        self.set_inhibitor = set_inhibitor
        self.interval = interval
        self.active = False
        self._failing = False

    def poll(self) -> bool:
        try:
            active = self.probe() > 0
            self._failing = False
        except PlatformError as err:
            if not self._failing:
                logger.info("call detection unavailable: %s", err)
                self._failing = True
            active = False
        if active != self.active:
            self.active = active
            self.set_inhibitor("call", active)
        return active

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.poll()
            stop.wait(self.interval)

    def status(self) -> dict[str, object]:
        return {"call": self.active, "available": not self._failing}
