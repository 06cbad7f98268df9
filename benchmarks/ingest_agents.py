"""Many agents against one server: ingest latency percentiles (SPEC.md target: 10 000 simulated agents,
p99 ingest latency < 100 ms).

10 000 devices are enrolled (rows written directly, tokens hashed like real enrollment), then each sends one
gzip NDJSON batch of EVENTS events to a real ``mamori server run`` process over loopback. Arrivals are
open-loop at RATE requests/s (default 167/s: every agent uploading once a minute), spread over a pool of
client threads with keep-alive sessions; latency is measured per request from send to the 200 (after commit).
The client runs on the same 2 cores as the server, so the figures include its CPU contention.

Usage: python -m benchmarks.ingest_agents [--agents 10000] [--rate 167] [--events 5] [--db URL] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from benchmarks.ingest_sqlite import make_batches, server_cpu_s
from server import auth
from server.storage import Storage, devices
from tests.harness.live_server import ServerProcess, free_port, migrated, reset_pg


def own_schema(url: str, schema: str) -> str:
    """Drop and re-create ``schema``; return ``url`` with it as the search path (libpq ``options``)."""
    import sqlalchemy as sa

    if not schema.isidentifier():
        raise SystemExit(f"--pg-schema {schema!r}: use letters, digits and _")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    engine.dispose()
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}"


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=167.0, help="requests per second (open loop)")
    parser.add_argument("--events", type=int, default=5, help="events per batch")
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1, help="server processes (server.toml workers)")
    parser.add_argument("--db", default=None, help="database URL (default: a fresh SQLite file)")
    parser.add_argument(
        "--pg-schema",
        default=None,
        help="PostgreSQL: use (drop and re-create) this schema instead of public, e.g. to leave a shared test "
        "database's public schema to the test suite",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        url = args.db or f"sqlite:///{folder / 'server.db'}"
        if url.startswith("postgresql") and args.pg_schema:
            url = own_schema(url, args.pg_schema)
        elif url.startswith("postgresql"):
            reset_pg(url)
        storage: Storage = migrated(url)
        tokens = [f"mdt_agent-{i}" for i in range(args.agents)]
        with storage.write() as conn:
            conn.execute(
                devices.insert(),
                [
                    {
                        "id": f"dagent{i}",
                        "token_hash": auth.token_hash(t),
                        "group_name": "default",
                        "enrolled_at": 0,
                    }
                    for i, t in enumerate(tokens)
                ],
            )
        storage.dispose()
        bodies = [make_batches(f"dagent{i}", args.events)[0] for i in range(args.agents)]
        extra: tuple[str, ...] = ()
        if args.workers > 1:
            (folder / "server.toml").write_text(f"workers = {args.workers}\n")
            extra = ("--config", str(folder / "server.toml"))
        server = ServerProcess(url, free_port(), folder / "server.log", extra)
        server.start()
        local = threading.local()
        latencies: list[float] = []
        lateness: list[float] = []
        errors: list[str] = []

        def send(i: int, due: float) -> None:
            session = getattr(local, "session", None)
            if session is None:
                session = local.session = requests.Session()
            start = time.perf_counter()
            lateness.append(start - due)
            response = session.post(
                server.url + "/v1/events",
                data=bodies[i],
                headers={
                    "Authorization": f"Bearer {tokens[i]}",
                    "Content-Encoding": "gzip",
                    "Content-Type": "application/x-ndjson",
                },
                timeout=30,
            )
            latencies.append(time.perf_counter() - start)
            if response.status_code != 200:
                errors.append(str(response.status_code))

        try:
            cpu_before = server_cpu_s(server)
            began = time.perf_counter()
            with ThreadPoolExecutor(args.threads) as pool:
                for i in range(args.agents):
                    due = began + i / args.rate
                    wait = due - time.perf_counter()
                    if wait > 0:
                        time.sleep(wait)
                    pool.submit(send, i, due)
            elapsed = time.perf_counter() - began
            cpu = server_cpu_s(server) - cpu_before
        finally:
            server.kill()
    latencies.sort()
    lateness.sort()
    result = {
        "benchmark": "ingest_agents",
        "db": "postgresql" if url.startswith("postgresql") else "sqlite",
        "agents": args.agents,
        "workers": args.workers,
        "events_per_batch": args.events,
        "target_rate": args.rate,
        "achieved_rate": round(args.agents / elapsed, 1),
        "cpus": os.cpu_count(),
        "errors": len(errors),
        "error_statuses": dict(Counter(errors)),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 1),
        "p95_ms": round(percentile(latencies, 0.95) * 1000, 1),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
        "max_ms": round(latencies[-1] * 1000, 1),
        # CPU of the server processes per request (every process summed), 503s included
        "server_cpu_ms_per_request": round(cpu * 1000 / args.agents, 2),
        "client_lateness_p99_ms": round(percentile(lateness, 0.99) * 1000, 1),
        "target_p99_ms": 100,
    }
    print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
