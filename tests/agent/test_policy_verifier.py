"""The running agent checks policy signatures in a child process (agent/policy_verifier.py): drops and store
re-reads work through it, a failing child keeps the last good policy and is retried, and the agent's modules
load no cryptography."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from agent.config import AgentConfig
from agent.policy_drop import PolicyDropWatcher
from agent.policy_source import PolicySource
from agent.policy_verifier import child_key_loader
from agent.report.stream import EventStream, Kind
from core.clock import FakeClock
from policy.keys import load_trusted_keys
from policy.model import Policy
from policy.store import TrustedStore
from tests.harness.policies import PolicyKeys, policy_keys, policy_toml
from tests.policy.conftest import NOW

ROOT = Path(__file__).resolve().parents[2]


def _setup(tmp_path: Path) -> tuple[AgentConfig, PolicyKeys, Path]:
    keys = policy_keys(tmp_path / "keys")
    drop = tmp_path / "policy.dsse.json"
    config = AgentConfig(state_dir=tmp_path / "state", trusted_keys=(keys.public_path,), policy_bundle=drop)
    return config, keys, drop


def _bundle(keys: PolicyKeys, version: int) -> bytes:
    return keys.sign(policy_toml(policy_id="child-test", version=version))


def test_a_drop_is_applied_and_read_back_through_the_child(tmp_path: Path) -> None:
    config, keys, drop = _setup(tmp_path)
    stream = EventStream()
    events = stream.subscribe()
    source = PolicySource(config, FakeClock(), stream, keys=child_key_loader())
    watcher = PolicyDropWatcher(drop, source)
    drop.write_bytes(_bundle(keys, 2))
    assert watcher.check_once() == "accepted"
    assert events.get_nowait().kind is Kind.POLICY_APPLIED
    policy = source.current()
    assert policy is not None and policy.version == 2
    drop.write_bytes(_bundle(policy_keys(tmp_path / "stranger"), 3))
    assert watcher.check_once() == "unknown_key"
    assert events.get_nowait().data == {"reason": "unknown_key"}
    still = source.current()
    assert still is not None and still.version == 2


def test_a_failing_child_keeps_the_last_good_policy_and_the_drop_is_retried(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config, keys, drop = _setup(tmp_path)
    good = PolicySource(config, FakeClock(), EventStream(), keys=child_key_loader())
    drop.write_bytes(_bundle(keys, 1))
    assert PolicyDropWatcher(drop, good).check_once() == "accepted"

    stream = EventStream()
    events = stream.subscribe()
    flag = tmp_path / "broken"
    flag.touch()
    # The real child, but killed (SIGKILL) while the flag file exists: an OOM kill, a crash of the interpreter.
    script = tmp_path / "child.py"
    script.write_text(
        "import os, runpy, signal\n"
        f"if os.path.exists({str(flag)!r}):\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "runpy.run_module('agent.policy_verifier', run_name='__main__')\n"
    )
    source = PolicySource(config, FakeClock(), stream, keys=child_key_loader([sys.executable, str(script)]))
    watcher = PolicyDropWatcher(drop, source)
    drop.write_bytes(_bundle(keys, 2))
    with caplog.at_level(logging.WARNING, logger="agent.policy_drop"):
        for _ in range(3):
            assert watcher.check_once() is None  # not applied, not refused
    assert len([r for r in caplog.records if "cannot check the policy signature" in r.message]) == 1
    assert events.empty()  # no policy.rejected: the bundle was not at fault
    assert source.current() is None  # the stored policy is not trusted unchecked either ...
    kept = good.current()
    assert kept is not None and kept.version == 1  # ... and it is still there
    flag.unlink()
    assert watcher.check_once() == "accepted"  # the same file, tried again once the child works
    policy = source.current()
    assert policy is not None and policy.version == 2


def test_while_one_thread_waits_for_the_child_the_others_get_the_last_good_policy(tmp_path: Path) -> None:
    config, keys, _drop = _setup(tmp_path)
    store = TrustedStore(config.state_dir)
    store.apply(_bundle(keys, 1), load_trusted_keys([keys.public_path]), NOW)
    slow, started = tmp_path / "slow", tmp_path / "started"
    script = tmp_path / "child.py"
    script.write_text(
        "import os, runpy, time\n"
        f"if os.path.exists({str(slow)!r}):\n"
        f"    open({str(started)!r}, 'w').close()\n"
        "    time.sleep(3)\n"
        "runpy.run_module('agent.policy_verifier', run_name='__main__')\n"
    )
    source = PolicySource(config, FakeClock(), keys=child_key_loader([sys.executable, str(script)]))
    first = source.current()
    assert first is not None and first.version == 1
    store.apply(_bundle(keys, 2), load_trusted_keys([keys.public_path]), NOW)  # e.g. `mamori policy apply`
    slow.touch()
    results: list[Policy | None] = []
    reader = threading.Thread(target=lambda: results.append(source.current()))
    reader.start()
    deadline = time.monotonic() + 30
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert started.exists()
    began = time.monotonic()
    meanwhile = source.current()  # the protection loop's tick, say
    assert time.monotonic() - began < 1.0
    assert meanwhile is not None and meanwhile.version == 1
    reader.join(30)
    assert results and results[0] is not None and results[0].version == 2


def test_the_agent_loads_no_cryptography(tmp_path: Path) -> None:
    # agent.app is what `mamori agent run` builds the agent from; it must not pull cryptography in through
    # the policy package (policy.store -> policy.keys / policy.verify imported it at module level before).
    code = (
        "import sys\n"
        "import agent.app, agent.policy_source, agent.policy_drop, agent.policy_verifier, agent.ui.ack\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'cryptography'))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.desktop
@pytest.mark.slow
def test_a_running_enrolled_agent_applies_drops_without_loading_cryptography() -> None:
    # The real `mamori agent run` (no tray) on an X desktop, enrolled with the benchmark's stub server: its
    # policy arrives as a drop, is checked by the child, and the agent process maps no cryptography library.
    from benchmarks.agent_lab import AgentLab
    from benchmarks.agent_resources import POLICY
    from tests.harness.xdesktop import XDesktop

    with XDesktop.start() as desk:
        lab = AgentLab.create(desk, POLICY, enrolled=True, tray=False)
        try:
            lab.start()
            lab.wait_ready(version=1)
            lab.publish(POLICY.replace("version = 1", "version = 2", 1))
            lab.wait_ready(version=2)
            maps = Path(f"/proc/{lab.agent_pid}/maps").read_text()
            assert "/cryptography/" not in maps
            assert "_rust.abi3" not in maps
        finally:
            lab.stop()
