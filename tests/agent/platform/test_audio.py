"""The call detector (agent/platform/audio.py): pactl parsing, the watcher, and a real PulseAudio recording stream
that holds the lock but not the cover."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.platform.audio import CallWatcher, PactlProbe, parse_pactl_short
from agent.platform.base import PlatformError
from agent.report.stream import Kind
from policy.load import load_policy
from tests.harness.realapps import ProtectedDesktop, need
from tests.harness.xdesktop import XDesktop, wait_for

SOURCES = "0\tmic\tmodule-null-source.c\ts16le 2ch 44100Hz\tIDLE\n1\tout.monitor\tmodule-null-sink.c\ts16le 2ch 44100Hz\tIDLE\n"


def test_recording_from_a_microphone_counts_and_from_a_monitor_does_not() -> None:
    assert parse_pactl_short(SOURCES, "") == 0
    assert parse_pactl_short(SOURCES, "0\t0\t1\tprotocol-native.c\ts16le 2ch 44100Hz\n") == 1
    assert parse_pactl_short(SOURCES, "3\t1\t4\tprotocol-native.c\ts16le 2ch 44100Hz\n") == 0  # desktop audio


def test_watcher_switches_the_call_inhibitor_on_changes_only() -> None:
    calls: list[tuple[str, bool]] = []
    streams = [0, 1, 1, 0]

    def probe() -> int:
        return streams.pop(0)

    watcher = CallWatcher(probe, lambda name, active: calls.append((name, active)))
    for _ in range(4):
        watcher.poll()
    assert calls == [("call", True), ("call", False)]


def test_a_probe_that_errors_is_no_call() -> None:
    def broken() -> int:
        raise PlatformError("no sound server")

    calls: list[tuple[str, bool]] = []
    watcher = CallWatcher(broken, lambda name, active: calls.append((name, active)))
    assert watcher.poll() is False and calls == [] and watcher.status()["available"] is False


@pytest.fixture
def pulse() -> Iterator[dict[str, str]]:
    need("pulseaudio", "pactl", "parecord")
    run = Path(tempfile.mkdtemp(prefix="mamori-pulse-"))
    socket = run / "native"
    env = {**os.environ, "HOME": str(run), "XDG_RUNTIME_DIR": str(run), "PULSE_SERVER": f"unix:{socket}"}
    env.pop("DISPLAY", None)
    daemon = subprocess.Popen(
        ["pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--use-pid-file=no",
         "-L", f"module-native-protocol-unix socket={socket} auth-anonymous=1",
         "-L", "module-null-source source_name=mic", "-L", "module-null-sink sink_name=out"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(
            lambda: (
                subprocess.run(["pactl", "info"], env=env, capture_output=True, check=False).returncode == 0
            ),
            timeout=10,
            what="PulseAudio",
        )
        yield env
    finally:
        daemon.kill()
        daemon.wait(timeout=5)
        shutil.rmtree(run, ignore_errors=True)


POLICY = """
schema = 1
id = "call-test"
version = 1

[presence]
warn_after = "1s"
protect_after = "2s"
lock_after = "3s"
max_inhibit = "1h"
cover = "opaque"
inhibit_lock_when = ["call"]
hotkey = ""

[[customer_apps]]
name = "ledger"
processes = ["excel"]
title = "顧客台帳"
"""


@pytest.mark.apps
def test_real_recording_stream_holds_the_lock_but_not_the_cover(
    pulse: dict[str, str], xdesktop: XDesktop, tmp_path: Path
) -> None:
    probe = PactlProbe("pactl", pulse)
    assert probe.microphone_streams() == 0
    ledger = xdesktop.open_window("顧客台帳 - 山田 太郎", text="03-1234-5678", process="excel", x=40, y=120)
    marker = tmp_path / "locked"
    agent = ProtectedDesktop(
        xdesktop, tmp_path, load_policy(POLICY.encode(), "policy.toml"), lock_command=["touch", str(marker)]
    )
    watcher = CallWatcher(probe.microphone_streams, agent.runtime.set_inhibitor, interval=0.5)
    agent.runtime.add_worker("call", watcher.run)
    recorder = subprocess.Popen(["parecord", "-d", "mic", "/dev/null"], env=pulse)
    try:
        wait_for(lambda: probe.microphone_streams() == 1, timeout=5, what="the recording stream")
        agent.start()
        wait_for(lambda: watcher.active, timeout=5, what="the call seen")
        agent.wait_covered(1, timeout=10)  # the call never delays the cover
        assert not xdesktop.can_read("03-1234-5678", ledger.rect())
        time.sleep(3)  # well past lock_after = 3 s
        assert agent.runtime.status()["presence"]["lock_inhibited_by"] == ["call"]
        assert (
            not marker.exists() and agent.events(Kind.SESSION_LOCKED) == agent.events(Kind.LOCK_FAILED) == []
        )
    finally:
        recorder.kill()
        recorder.wait(timeout=5)
    try:
        # The call ends: the lock comes (the touch "locks" nothing, so it is reported as lock_failed).
        wait_for(marker.exists, timeout=10, what="the lock once the call ended")
    finally:
        agent.stop()
