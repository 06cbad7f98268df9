"""Chaos: 20 000 events while the server is SIGKILLed and restarted and the agent is SIGKILLed mid-upload.

Afterwards the server holds exactly the 20 000 distinct events (none lost, none duplicated, no sequence gap)
and the agent's outbox is empty. Real processes: `mamori server run` (uvicorn, SQLite) and an agent process
running the real ReportingService.
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from agent.report.enrollment import enroll
from agent.report.outbox import Outbox
from server.storage import Storage, events
from tests.harness.live_server import ROOT, ServerProcess, enroll_secret, free_port, migrated

TOTAL = 20_000
RATE = 700.0  # events/s: long enough a run for every kill to land mid-stream
SERVER_KILLS_AT = (1_500, 4_500, 7_500, 10_500, 13_500, 16_500)  # emitted counts
AGENT_KILLS_AT = (3_000, 9_000, 15_000, 18_000)


class AgentProcess:
    def __init__(self, state: Path) -> None:
        self.state = state
        self.proc: subprocess.Popen[str] | None = None
        self.lines: queue.Queue[str] = queue.Queue()
        self.reader: threading.Thread | None = None
        self.emitted = 0
        self.done = False

    def start(self) -> None:
        cmd = [sys.executable, "-m", "tests.harness.chaos_agent", str(self.state), str(TOTAL), str(RATE)]
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        proc, lines = self.proc, queue.Queue[str]()
        self.lines = lines

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.put(line.strip())

        self.reader = threading.Thread(target=read, daemon=True)
        self.reader.start()

    def kill(self) -> bool:
        """SIGKILL; True when the process died between an UPLOAD and its ANSWERED (mid-upload)."""
        assert self.proc is not None and self.reader is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.reader.join(10)  # everything it printed before dying
        rest = []
        while not self.lines.empty():
            rest.append(self.lines.get_nowait())
        return not any(line.startswith("ANSWERED") for line in rest)

    def next_line(self, timeout: float) -> str | None:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            return None
        if line.startswith("EMITTED "):
            self.emitted = max(self.emitted, int(line.split()[1]))
        elif line == "DONE":
            self.done = True
        return line


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_no_event_lost_or_duplicated_through_server_and_agent_kills(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'server.db'}"
    storage = migrated(db_url)
    server = ServerProcess(db_url, free_port(), tmp_path / "server.log")
    server.start()
    state = tmp_path / "agent"
    device_id = enroll(server.url, enroll_secret(storage), state, insecure_http=True).device_id
    agent = AgentProcess(state)
    agent.start()
    server_kills: list[int] = []
    agent_kills: list[int] = []  # kills that landed mid-upload
    missed = 0  # kills that came just after the answer: retried at the next upload
    deadline = time.monotonic() + 200
    try:
        while not agent.done:
            assert time.monotonic() < deadline, (
                f"timed out: emitted {agent.emitted}, kills {server_kills} {agent_kills}"
            )
            line = agent.next_line(timeout=1.0)
            due_server = [k for k in SERVER_KILLS_AT if k <= agent.emitted and k not in server_kills]
            if due_server:
                server.kill()
                server_kills.append(due_server[0])
                time.sleep(0.5)  # the agent meets a dead server for a while
                server.start()
            due_agent = [k for k in AGENT_KILLS_AT if k <= agent.emitted and k not in agent_kills]
            if due_agent and line == "UPLOAD":
                if agent.kill():  # right after it announced a request
                    agent_kills.append(due_agent[0])
                else:
                    missed += 1
                agent.start()
            if line is None and agent.proc is not None and agent.proc.poll() not in (None, 0):
                pytest.fail(f"agent died with {agent.proc.returncode}")
        assert agent.proc is not None and agent.proc.wait(30) == 0
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
        server.kill()

    assert len(server_kills) >= 5 and len(agent_kills) >= 3, (server_kills, agent_kills, missed)
    check = Storage(db_url)
    with check.engine.connect() as conn:
        rows = conn.execute(
            sa.select(events.c.sequence, events.c.body).where(events.c.device_id == device_id)
        ).all()
    sequences = sorted(int(r.sequence) for r in rows)
    check_ids = {json.loads(r.body)["unmapped"]["check_id"] for r in rows}
    assert len(rows) == TOTAL
    assert sequences == list(range(1, TOTAL + 1))
    assert check_ids == {f"chaos-{i}" for i in range(1, TOTAL + 1)}
    assert check.gaps_of(device_id) == []
    outbox = Outbox(state / "outbox.sqlite3")
    assert outbox.pending_count() == 0 and outbox.rejected() == []
