"""The commands an administrator runs, against a real `mamori server run` process on SQLite and on the real
PostgreSQL: migrate, enroll-secret create, admin-token create, policy publish, agent enroll, events, policy pull."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from agent.config import AgentConfig
from agent.report.service import ReportingService
from agent.report.stream import AgentEvent, EventStream, Kind
from core.clock import SystemClock
from policy.store import TrustedStore
from tests.harness.live_server import ROOT, pg_url, reset_pg, server_process, signed_policy, signing_key
from tests.harness.policies import write_agent_config


def mamori(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_admin_workflow_on_a_real_server(backend: str, tmp_path: Path) -> None:
    if backend == "postgres":
        db = pg_url()
        reset_pg(db)
    else:
        db = f"sqlite:///{tmp_path / 'server.db'}"
    not_ready = mamori("server", "run", "--db", db, "--listen", "127.0.0.1:1")
    assert not_ready.returncode == 2 and "mamori server migrate" in not_ready.stderr
    assert len(not_ready.stderr.strip().splitlines()) == 1
    migrated = mamori("server", "migrate", "--db", db)
    assert migrated.returncode == 0, migrated.stderr
    secret = json.loads(
        mamori(
            "server", "enroll-secret", "create", "--db", db, "--uses", "1", "--expires", "1h", "--json"
        ).stdout
    )
    assert secret["uses"] == 1 and secret["secret"].startswith("mes_")
    admin = mamori("server", "admin-token", "create", "--db", db).stdout.strip()
    private, pub = signing_key(tmp_path / "keys")
    bundle = tmp_path / "policy.dsse.json"
    bundle.write_bytes(signed_policy(private, 5))
    published = mamori(
        "server", "policy", "publish", str(bundle), "--db", db, "--pub", str(pub), "--group", "default"
    )
    assert published.returncode == 0 and "version 5" in published.stdout, published.stderr
    again = mamori("server", "policy", "publish", str(bundle), "--db", db, "--pub", str(pub))
    assert again.returncode == 1 and "version 6 or higher" in again.stderr

    with server_process(db, tmp_path / "server.log") as server:
        assert requests.get(server.url + "/readyz", timeout=5).status_code == 200
        state = tmp_path / "agent"
        config_file = write_agent_config(tmp_path, state_dir=state, trusted_keys=[pub])
        enrolled = mamori(
            "agent",
            "enroll",
            "--insecure-http",
            "--server",
            server.url,
            "--secret",
            secret["secret"],
            "--config",
            str(config_file),
        )
        assert enrolled.returncode == 0, enrolled.stderr
        refused = mamori(
            "agent",
            "enroll",
            "--insecure-http",
            "--server",
            server.url,
            "--secret",
            secret["secret"],
            "--config",
            str(config_file),
        )
        assert refused.returncode == 1 and "used up" in refused.stderr

        stream = EventStream()
        config = AgentConfig(state_dir=state, trusted_keys=(pub,))
        service = ReportingService(config, stream, SystemClock(), batch_delay=0.1)
        service.start()
        for i in range(100):
            stream.publish(
                AgentEvent(
                    Kind.SESSION_LOCKED if i % 2 else Kind.SESSION_UNLOCKED,
                    SystemClock().now(),
                    {"method": "loginctl"},
                )
            )
        assert service.flush(30)
        service.stop()
        current = TrustedStore(state).current()
        assert current is not None and current.version == 5
        headers = {"Authorization": f"Bearer {admin}"}
        stored = requests.get(
            server.url + "/v1/admin/events",
            params={"class": 3002, "limit": 1000},
            headers=headers,
            timeout=10,
        )
        assert len(stored.json()["events"]) == 100
        device = requests.get(server.url + "/v1/admin/devices", headers=headers, timeout=10).json()[
            "devices"
        ][0]
        assert device["status"] == "stopped" and device["policy_version"] == 5 and device["gaps"] == 0
