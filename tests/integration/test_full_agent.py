"""The whole product, as IT deploys it and a worker uses it, with real processes only.

IT signs a policy and publishes it on a real server (`mamori server run`, SQLite); the PC is enrolled with
`mamori agent enroll`; the same bundle arrives as an MDM drop (agent.toml ``policy_bundle``); `mamori agent run`
runs with its tray under Xvfb + openbox + trayer. Step-away covers the customer window (OCR cannot read its
phone number; a window beside it stays readable), input reveals it, and the server stores what happened —
named by rule, with no window title anywhere — including the agent's clean stop.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from agent.demo import Demo, free_port, mamori, run_step
from tests.harness.policies import policy_keys, policy_toml, write_agent_config
from tests.harness.xdesktop import XDesktop, wait_for

ROOT = Path(__file__).resolve().parents[2]
PHONE = "03-1234-5678"
NEUTRAL = "0120-999-888"
TITLE = "顧客台帳 - Excel"

POLICY = policy_toml(
    policy_id="e2e",
    presence={
        "warn_after": "50m",
        "protect_after": "55m",
        "lock_after": "2h",
        "cover": "opaque",
        "reveal": "activity",
    },
    customer_apps=[{"name": "ledger", "title": "顧客台帳"}],
    extra={"reporting": {"heartbeat": "1m"}},
)


@pytest.mark.desktop
@pytest.mark.slow
def test_signed_policy_drop_step_away_cover_and_server_evidence(xdesktop: XDesktop, tmp_path: Path) -> None:
    env = {**os.environ, **xdesktop.env, "PYTHONPATH": str(ROOT), "MAMORI_DESKTOP_BACKEND": "x11"}
    it = Demo(tmp_path / "it", free_port(), {k: v for k, v in env.items() if k != "DISPLAY"})
    it.workdir.mkdir()
    keys = policy_keys(tmp_path / "keys")
    public = keys.public_path
    bundle = tmp_path / "policy.dsse.json"
    bundle.write_bytes(keys.sign(POLICY))
    agent: subprocess.Popen[str] | None = None
    events: list[dict[str, object]] = []
    devices: dict[str, object] = {}

    def server_events() -> list[dict[str, object]]:
        headers = {"Authorization": f"Bearer {it.admin_token}"}
        r = requests.get(f"{it.url}/v1/admin/events", params={"limit": 500}, headers=headers, timeout=5)
        r.raise_for_status()
        found: list[dict[str, object]] = r.json()["events"]
        return found

    def codes() -> set[str]:
        return {str(e["metadata"]["event_code"]) for e in server_events()}  # type: ignore[index]

    try:
        secret = it.server(public, bundle)
        state = tmp_path / "state"
        config = write_agent_config(
            tmp_path,
            state_dir=state,
            trusted_keys=[public],
            server=it.url,
            policy_bundle=bundle,
            lock_command=["true"],
            tray=True,
        )
        run_step(
            mamori(
                "agent",
                "enroll",
                "--insecure-http",
                "--server",
                it.url,
                "--secret",
                secret,
                "--config",
                str(config),
            ),
            "enroll",
            env,
        )
        customer = xdesktop.open_window(TITLE, text=PHONE, process="excel", x=40, y=150)
        other = xdesktop.open_window("notes.txt", text=NEUTRAL, process="gedit", x=40, y=420, width=900)
        agent = subprocess.Popen(
            mamori("agent", "run", "--config", str(config)),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

        def status() -> dict[str, object] | None:
            assert agent is not None and agent.poll() is None, agent.stderr.read() if agent.stderr else ""
            out = subprocess.run(
                mamori("agent", "status", "--config", str(config), "--json"),
                env=env,
                capture_output=True,
                text=True,
                timeout=20,
                check=False,
            )
            return json.loads(out.stdout) if out.returncode == 0 else None

        # The MDM drop is verified and becomes the trusted policy; the agent follows it.
        wait_for(
            lambda: (s := status()) and s["policy"] == {"id": "e2e", "version": 1},
            timeout=30,
            interval=0.3,
            what="the dropped policy in force",
        )
        assert xdesktop.can_read(PHONE, customer.rect())

        run_step(mamori("agent", "step-away", "--config", str(config)), "step-away", env)
        wait_for(
            lambda: not xdesktop.can_read(PHONE, customer.rect()), timeout=5, what="customer data hidden"
        )
        covered = status()
        assert covered is not None and covered["covered"] == {"rules": ["ledger"], "count": 1}
        assert xdesktop.can_read("0120-999-888", other.rect())  # only customer data is covered

        time.sleep(1.5)  # input within the step-away grace (the key release of the hotkey) does not reveal
        xdesktop.nudge()  # the worker is back
        wait_for(lambda: xdesktop.can_read(PHONE, customer.rect()), timeout=5, what="revealed on input")

        # Evidence on the server: policy applied, protection applied for rule "ledger", nothing else leaked.
        wait_for(
            lambda: {"policy.applied", "protection.applied", "protection.removed"} <= codes(),
            timeout=30,
            interval=0.5,
            what="the agent's events on the server",
        )
    finally:
        if agent is not None and agent.poll() is None:
            agent.send_signal(signal.SIGTERM)
            try:
                agent.wait(timeout=20)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait()
        stopped_cleanly = agent is not None and agent.returncode == 0
        if stopped_cleanly:
            events = server_events()
            headers = {"Authorization": f"Bearer {it.admin_token}"}
            devices = requests.get(f"{it.url}/v1/admin/devices", headers=headers, timeout=5).json()
        it.stop()
    assert stopped_cleanly, agent.stderr.read() if agent and agent.stderr else ""
    applied = [e for e in events if e["metadata"]["event_code"] == "protection.applied"]  # type: ignore[index]
    assert any(e["unmapped"]["rules"] == ["ledger"] for e in applied), applied  # type: ignore[index]
    dump = json.dumps(events, ensure_ascii=False)
    assert TITLE not in dump and "顧客台帳" not in dump and PHONE not in dump
    sequences = sorted(e["metadata"]["sequence"] for e in events)  # type: ignore[index]
    assert sequences == list(range(1, len(sequences) + 1))  # per device, no gaps
    assert "agent.stopped" in {e["metadata"]["event_code"] for e in events}  # type: ignore[index]
    assert [d["status"] for d in devices["devices"]] == ["stopped"]  # type: ignore[attr-defined]  # a clean stop, not "silent"
