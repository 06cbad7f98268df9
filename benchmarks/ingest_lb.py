"""Several server processes behind a load balancer on one PostgreSQL: throughput, and no event lost or duplicated.

For each configuration (default 1, 2 and 4 ``mamori server run`` processes, one uvicorn worker each, on their own
ports), Debian's haproxy balances round-robin across them (HTTP mode, keep-alive to the clients, a fresh
connection per request to the backends so the requests really spread). DEVICES enrolled devices each send
BATCHES gzip NDJSON batches of EVENTS events through haproxy, CLIENTS threads at a time (closed loop), and resend
every RESEND-th batch right after its 200, as an agent does after a lost answer: the copy lands on another
process. Afterwards the database must hold exactly the unique events, the answers must count every resent event
as a duplicate and no device may have a sequence gap.

Usage: python -m benchmarks.ingest_lb --db postgresql+psycopg://... [--processes 1,2,4] [--devices 64]
    [--batches 10] [--events 100] [--clients 16] [--resend 7] [--pg-schema bench_lb] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa

from benchmarks.ingest_agents import own_schema, percentile
from benchmarks.ingest_sqlite import make_batches
from server import auth
from server.storage import Storage, devices, events, gaps
from tests.harness.live_server import ServerProcess, free_port, migrated

HAPROXY_CFG = """global
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    option http-server-close
frontend ingest
    bind 127.0.0.1:{port}
    default_backend mamori
backend mamori
    balance roundrobin
{servers}
"""


def start_haproxy(folder: Path, ports: list[int]) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    servers = "\n".join(f"    server s{i} 127.0.0.1:{p}" for i, p in enumerate(ports))
    cfg = folder / "haproxy.cfg"
    cfg.write_text(HAPROXY_CFG.format(port=port, servers=servers))
    proc = subprocess.Popen(
        ["haproxy", "-db", "-f", str(cfg)],
        stdout=subprocess.DEVNULL,
        stderr=open(folder / "haproxy.log", "wb"),  # noqa: SIM115 - lives as long as the process
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc, port
        except requests.RequestException:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"haproxy did not come up: {(folder / 'haproxy.log').read_text()[-500:]}")


def run_config(
    url: str, schema: str | None, processes: int, args: argparse.Namespace, folder: Path
) -> dict[str, Any]:
    db = own_schema(url, schema) if schema else url
    storage: Storage = migrated(db)
    tokens = [f"mdt_lb-{i}" for i in range(args.devices)]
    with storage.write() as conn:
        conn.execute(
            devices.insert(),
            [
                {"id": f"dlb{i}", "token_hash": auth.token_hash(t), "group_name": "default", "enrolled_at": 0}
                for i, t in enumerate(tokens)
            ],
        )
    bodies = [
        make_batches(f"dlb{d}", args.batches * args.events, batch=args.events) for d in range(args.devices)
    ]
    servers = [ServerProcess(db, free_port(), folder / f"server{i}.log") for i in range(processes)]
    haproxy: subprocess.Popen[bytes] | None = None
    latencies: list[float] = []
    errors: list[str] = []
    counts = {"accepted": 0, "duplicate": 0, "resent_events": 0}
    lock = threading.Lock()
    local = threading.local()
    try:
        for s in servers:
            s.start()
        haproxy, port = start_haproxy(folder, [s.port for s in servers])
        endpoint = f"http://127.0.0.1:{port}/v1/events"

        def post(d: int, body: bytes) -> dict[str, int]:
            session = getattr(local, "session", None)
            if session is None:
                session = local.session = requests.Session()
            for attempt in range(20):
                t0 = time.perf_counter()
                response = session.post(
                    endpoint,
                    data=body,
                    headers={
                        "Authorization": f"Bearer {tokens[d]}",
                        "Content-Encoding": "gzip",
                        "Content-Type": "application/x-ndjson",
                    },
                    timeout=60,
                )
                latencies.append(time.perf_counter() - t0)
                if response.status_code == 200:
                    doc: dict[str, int] = response.json()
                    return doc
                if response.status_code != 503:
                    break
                time.sleep(float(response.headers.get("Retry-After", "1")) * (attempt + 1) / 10)
            errors.append(f"{response.status_code} {response.text[:120]}")
            return {"accepted": 0, "duplicate": 0}

        def device(d: int) -> None:
            for b, body in enumerate(bodies[d]):
                doc = post(d, body)
                resent = 0
                if (d * args.batches + b) % args.resend == 0:
                    again = post(d, body)
                    resent = args.events
                    doc = {
                        "accepted": doc["accepted"] + again["accepted"],
                        "duplicate": doc["duplicate"] + again["duplicate"],
                    }
                with lock:
                    counts["accepted"] += doc["accepted"]
                    counts["duplicate"] += doc["duplicate"]
                    counts["resent_events"] += resent

        began = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(device, range(args.devices)))
        elapsed = time.perf_counter() - began
    finally:
        if haproxy is not None:
            haproxy.kill()
            haproxy.wait()
        for s in servers:
            s.kill()
    with storage.engine.connect() as conn:
        stored = conn.execute(sa.select(sa.func.count()).select_from(events)).scalar_one()
        distinct = conn.execute(sa.select(sa.func.count(sa.distinct(events.c.uid)))).scalar_one()
        gap_rows = conn.execute(sa.select(sa.func.count()).select_from(gaps)).scalar_one()
    storage.dispose()
    unique = args.devices * args.batches * args.events
    latencies.sort()
    return {
        "processes": processes,
        "events_unique": unique,
        "events_stored": stored,
        "events_distinct_uids": distinct,
        "accepted": counts["accepted"],
        "duplicate_answers": counts["duplicate"],
        "resent_events": counts["resent_events"],
        "gaps": gap_rows,
        "errors": len(errors),
        "lost": unique - stored,
        "duplicated": stored - distinct + max(0, counts["accepted"] - unique),
        "ok": stored == unique == distinct == counts["accepted"]
        and counts["duplicate"] == counts["resent_events"]
        and gap_rows == 0
        and not errors,
        "seconds": round(elapsed, 2),
        "events_per_s": round(unique / elapsed),
        "requests": len(latencies),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 1),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--db", required=True, help="PostgreSQL URL")
    parser.add_argument("--processes", default="1,2,4", help="server process counts, comma-separated")
    parser.add_argument("--devices", type=int, default=64)
    parser.add_argument("--batches", type=int, default=10, help="batches per device")
    parser.add_argument("--events", type=int, default=100, help="events per batch")
    parser.add_argument("--clients", type=int, default=16, help="concurrent client threads")
    parser.add_argument("--resend", type=int, default=7, help="resend every N-th batch")
    parser.add_argument("--pg-schema", default="bench_lb")
    parser.add_argument("--pool-size", type=int, default=8, help="PostgreSQL connections per server process")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not args.db.startswith("postgresql"):
        parser.error(
            "--db must be a PostgreSQL URL (several processes on one SQLite file is not this benchmark)"
        )
    if shutil.which("haproxy") is None:
        raise SystemExit("haproxy is not installed (Debian: apt-get install haproxy)")
    os.environ["MAMORI_PG_POOL_SIZE"] = str(
        args.pool_size
    )  # read by the server processes (server/storage.py)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(v) for v in args.processes.split(",")):
            folder = Path(tmp) / f"p{n}"
            folder.mkdir()
            runs.append(run_config(args.db, args.pg_schema, n, args, folder))
    result = {
        "benchmark": "ingest_lb",
        "balancer": "haproxy "
        + subprocess.run(["haproxy", "-v"], check=False, capture_output=True, text=True).stdout.split()[2],
        "cpus": os.cpu_count(),
        "devices": args.devices,
        "batches_per_device": args.batches,
        "events_per_batch": args.events,
        "clients": args.clients,
        "pool_size": args.pool_size,
        "runs": runs,
    }
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
