"""The delivery promise end to end: a real `mamori server run` process with two forwarders (Elasticsearch bulk,
which deduplicates by _id, and Splunk HEC, which does not), devices posting events throughout, both receivers
stopped for 60 s and the server SIGKILLed once meanwhile: afterwards every event has arrived, none twice in the
index; the duplicates HEC saw (resends after the kill) are counted and printed."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from agent.report.events import build_record, rule_context, stamp_device
from agent.report.stream import AgentEvent, Kind
from core.clock import SystemClock
from tests.harness.live_server import ROOT, admin_token, enroll_secret, migrated
from tests.server.receivers import HEC_TOKEN, Receivers

OUTAGE_S = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, db: str, config: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cmd = [
            sys.executable,
            "-m",
            "agent.cli",
            "server",
            "run",
            "--db",
            db,
            "--config",
            str(config),
            "--listen",
            f"127.0.0.1:{self.port}",
        ]
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self.cmd, cwd=ROOT, stdout=log, stderr=log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-2000:]
            try:
                if requests.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise AssertionError("server did not become ready")

    def sigkill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def post(server: Server, token: str, device: str, first: int, n: int) -> list[str]:
    clock = SystemClock()
    lines, uids = [], []
    for seq in range(first, first + n):
        kind = Kind.POSTURE_FINDING if seq % 2 else Kind.SESSION_LOCKED
        data: dict[str, Any] = (
            {"check_id": "vpn", "status": "fail", "mode": "block", "enforcement": "block"}
            if seq % 2
            else {"method": "logind"}
        )
        record = build_record(AgentEvent(kind, clock.now(), data), rule_context())
        record["metadata"]["sequence"] = seq
        stamp_device(record, device, type_id=2)
        uids.append(record["metadata"]["uid"])
        lines.append(json.dumps(record))
    body = ("\n".join(lines) + "\n").encode()
    deadline = time.monotonic() + 30
    while True:  # as the agent's uploader does: retry until the server committed the batch
        try:
            response = requests.post(
                server.url + "/v1/events",
                data=body,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"},
                timeout=10,
            )
            if response.status_code == 200:
                doc = response.json()
                assert doc["rejected"] == [], doc["rejected"][:2]
                return uids
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, "server never took the batch"
        time.sleep(0.2)


@pytest.mark.slow
def test_receivers_down_60s_and_a_server_sigkill_lose_nothing(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'server.db'}"
    storage = migrated(db)
    secret = enroll_secret(storage)
    admin = {"Authorization": f"Bearer {admin_token(storage)}"}
    storage.dispose()
    es_port, hec_port = free_port(), free_port()
    config = tmp_path / "server.toml"
    config.write_text(
        f'[[forwarders]]\ntype = "elasticsearch"\nname = "es"\nurl = "http://127.0.0.1:{es_port}"\nbatch = 200\nmax_backoff = 5.0\n'
        f'[[forwarders]]\ntype = "splunk_hec"\nname = "hec"\nurl = "http://127.0.0.1:{hec_port}"\ntoken = "{HEC_TOKEN}"\nbatch = 200\nmax_backoff = 5.0\n',
        encoding="utf-8",
    )
    es, hec = Receivers(es_port).start(), Receivers(hec_port).start()
    server = Server(db, config, tmp_path / "server.log")
    server.start()
    try:
        enrolled = requests.post(server.url + "/v1/enroll", json={"secret": secret}, timeout=10).json()
        token, device = enrolled["token"], enrolled["device_id"]
        sent = post(server, token, device, 1, 300)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (len(es.elastic) < 300 or len(hec.hec) < 300):
            time.sleep(0.1)
        assert len(es.elastic) == 300 and len(hec.hec) == 300  # flowing before the outage

        es.stop()
        hec.stop()
        outage_started = time.monotonic()
        seq = 301
        killed = False
        while time.monotonic() - outage_started < OUTAGE_S:
            sent += post(server, token, device, seq, 100)
            seq += 100
            if not killed and time.monotonic() - outage_started > OUTAGE_S / 3:
                server.sigkill()  # mid-outage, with events queued and attempts in flight
                killed = True
                server.start()
            time.sleep(2)
        assert killed
        es.start()  # the same receivers (and what they hold) on the same ports
        hec.start()
        back = time.monotonic()
        while time.monotonic() - back < 60 and (len(es.elastic) < len(sent) or len(hec.hec) < len(sent)):
            time.sleep(0.2)
        caught_up = time.monotonic() - back
        assert es.errors == [] and hec.errors == []
        assert set(es.elastic) == set(sent), f"missing in the index: {len(set(sent) - set(es.elastic))}"
        assert set(hec.hec) == set(sent), f"missing at HEC: {len(set(sent) - set(hec.hec))}"
        hec_dupes = sum(n - 1 for n in hec.hec.values())
        print(
            f"outage {OUTAGE_S:.0f} s + SIGKILL: sent {len(sent)}, index holds {len(es.elastic)} (each once; "
            f"{es.elastic_conflicts} resends answered 409), HEC got {len(hec.hec)} distinct, {hec_dupes} duplicates; "
            f"caught up {caught_up:.1f} s after the receivers returned"
        )
        deadline = time.monotonic() + 10
        status: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            status = requests.get(server.url + "/v1/admin/forwarders", headers=admin, timeout=10).json()[
                "forwarders"
            ]
            if all(s["queued"] == 0 for s in status):
                break
            time.sleep(0.2)
        assert {s["name"]: (s["queued"], s["dead_letters"]) for s in status} == {"es": (0, 0), "hec": (0, 0)}
    finally:
        server.stop()
        es.stop()
        hec.stop()
