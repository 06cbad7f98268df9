"""Cost as the fleet grows (issue 16): ingest rate, export throughput and the console overview's latency at
10^5, 10^6 and 10^7 stored events, on SQLite or PostgreSQL, 10 000 devices.

One database is grown size by size: the fleet (devices, checks, acknowledgements, daily figures: console_bench's
``seed``) once, then events are topped up in SQL to each size (console_bench's ``add_events``; event i is
``now - i * 121 ms`` old, so 10^7 events span the 14 days the console charts and a smaller store holds the latest
of them). At each size:

- ingest: 20 batches of 500 real OCSF posture findings (the agent's record builder, gzip NDJSON as the agent
  sends them) of 20 fleet devices, each through the server's own ingest path in-process: ``decompress``,
  ``parse_batch`` (the record contract) and ``Storage.ingest`` with the hooks ``create_app`` installs (derived
  console state, alert rules), one batch after another. In-process, not over HTTP: the request handling around
  it costs the same at every size and would hide how the database part grows; the HTTP figure is
  ingest_sqlite's and ingest_agents'. The figure is events per second over the 20 batches.
- export: the latest ``--export`` (100 000) seeded events, as ``GET /v1/admin/events/export`` makes them
  (``page_end`` for the page, ``iter_events`` + ``encode`` NDJSON; ``mamori server export`` pages the same), every
  byte read; events per second and the time to the first byte (page_end and the first page's read).
- console: ``GET /`` through the real application (console_bench's ``measure``), p95 of ``--rounds`` requests.

Export and console are measured before that size's ingest; the 10 000 events each ingest adds are newer than
the export window and count towards the next size.

Usage: python -m benchmarks.scale_bench [--db URL] [--pg-schema bench_scale] [--sizes 100000,1000000]
                                        [--devices 10000] [--rounds 20] [--export 100000] [--json]
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.console_bench import CHECKS, DAY_MS, add_events, analyze, body, measure, seed

STEP_MS = -((14 * DAY_MS) // 10_000_000)  # event i is |STEP_MS| * i older than now: 10^7 events over 14 days
BATCH = 500
# events a fill transaction: SQLite's WAL is checkpointed between them instead of growing to the whole fill
FILL_CHUNK = 1_000_000
BATCHES = 20
# above any seeded sequence (10^7 events / 10^4 devices): each stream continues after a gap
INGEST_SEQ = 1_000_000


def ingest_batches(now_ms: int, round_no: int, n_batches: int) -> list[tuple[str, bytes]]:
    """``n_batches`` gzip NDJSON batches of BATCH posture findings, each of its own fleet device, as the agent
    sends them (sequence numbers continue from the previous round's)."""
    from datetime import UTC, datetime

    from agent.report.events import build_record, rule_context, stamp_device
    from agent.report.outbox import encode
    from agent.report.stream import AgentEvent, Kind

    batches = []
    for b in range(n_batches):
        device = f"dev-{b:05d}"
        lines = []
        for k in range(BATCH):
            check = CHECKS[k % len(CHECKS)]
            data = {"check_id": check, "status": "fail", "mode": "block", "enforcement": "block"}
            when = datetime.fromtimestamp((now_ms + 60_000 + round_no * BATCH + k) / 1000, UTC)
            record = stamp_device(
                build_record(AgentEvent(Kind.POSTURE_FINDING, when, data), rule_context()), device
            )
            record["metadata"]["sequence"] = INGEST_SEQ + round_no * BATCH + k
            lines.append(encode(record))
        batches.append((device, gzip.compress(b"\n".join(lines) + b"\n", 6)))
    return batches


def measure_ingest(url: str, now_ms: int, round_no: int, n_batches: int) -> dict[str, Any]:
    from server.alerts import arrival_rules
    from server.console.state import derive
    from server.ingest import decompress, parse_batch
    from server.settings import Settings
    from server.storage import Storage

    settings = Settings(db_url=url)
    storage = Storage(url)
    storage.after_insert = (derive, arrival_rules(settings))  # as create_app installs them
    batches = ingest_batches(now_ms, round_no, n_batches)
    took: list[float] = []
    stored = 0
    try:
        for device, raw in batches:
            began = time.perf_counter()
            parsed = parse_batch(
                decompress(raw, settings.max_decompressed_bytes), device, settings.max_event_bytes
            )
            accepted, _ = storage.ingest(device, parsed.rows, now_ms, parsed.facts)
            took.append(time.perf_counter() - began)
            if parsed.rejected or accepted != BATCH:
                raise SystemExit(f"ingest stored {accepted} of {BATCH}: {parsed.rejected[:1]}")
            stored += accepted
    finally:
        storage.dispose()
    ms = sorted(t * 1000 for t in took)
    return {
        "events": stored,
        "events_per_s": round(stored / sum(took)),
        "batch_ms": {"min": round(ms[0], 1), "median": round(ms[len(ms) // 2], 1), "max": round(ms[-1], 1)},
    }


def measure_export(url: str, now_ms: int, n_events: int) -> dict[str, Any]:
    """The latest ``n_events`` seeded events (a time window holding exactly them), as the export route streams
    them: the page end first, then the rows in pages, encoded as NDJSON."""
    from server.export import ExportQuery, encode, iter_events, page_end
    from server.storage import Storage

    storage = Storage(url)
    query = ExportQuery(since_ms=now_ms + (n_events - 1) * STEP_MS, until_ms=now_ms + 1)
    lines = size = 0
    try:
        began = time.perf_counter()
        end = page_end(storage, query, 1_000_000)  # the route's page bound; the window is smaller
        first = None
        for chunk in encode(iter_events(storage, query, end=end), "ndjson"):
            if first is None:
                first = time.perf_counter() - began
            lines += chunk.count(b"\n")
            size += len(chunk)
        took = time.perf_counter() - began
    finally:
        storage.dispose()
    if lines != n_events:
        raise SystemExit(f"export returned {lines} events, the window holds {n_events}")
    return {
        "events": lines,
        "events_per_s": round(lines / took),
        "seconds": round(took, 2),
        "first_byte_ms": round((first or took) * 1000, 1),
        "mb": round(size / 1e6, 1),
    }


def stored_mb(url: str, path: Path | None) -> float:
    if path is not None:
        return round(sum(p.stat().st_size for p in path.parent.glob(path.name + "*")) / 1e6, 1)
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            size = conn.execute(sa.text("SELECT pg_total_relation_size('events')")).scalar_one()
    finally:
        engine.dispose()
    return round(int(size) / 1e6, 1)


def count_events(url: str) -> int:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM events")).scalar_one())
    finally:
        engine.dispose()


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(float(s)) for s in text.split(",") if s.strip()]
    except ValueError as err:
        raise SystemExit(
            f"--sizes {text!r}: give event counts separated by commas, e.g. 100000,1000000"
        ) from err
    if not sizes or sizes != sorted(set(sizes)) or sizes[0] <= 0:
        raise SystemExit(f"--sizes {text!r}: give positive counts in increasing order, e.g. 100000,1000000")
    return sizes


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--sizes", default="100000,1000000", help="stored events, increasing (comma-separated)"
    )
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=20, help="console overview requests at each size")
    parser.add_argument("--export", type=int, default=100_000, help="events in the export window (at most)")
    parser.add_argument(
        "--batches", type=int, default=BATCHES, help=f"ingest batches of {BATCH} at each size"
    )
    parser.add_argument("--db", default="", help="PostgreSQL URL; SQLite in a temporary directory without it")
    parser.add_argument("--pg-schema", default="bench_scale")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    sizes = parse_sizes(args.sizes)
    from core.clock import FakeClock

    now = int(FakeClock().now().timestamp() * 1000)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        path: Path | None = None
        if args.db:
            from benchmarks.ingest_agents import own_schema

            url, db = own_schema(args.db, args.pg_schema), "postgresql"
        else:
            path = Path(tmp) / "scale.db"
            url, db = f"sqlite:///{path}", "sqlite"
        fleet_s = seed(url, args.devices, 0, now)
        seeded = 0
        sample = body("dev-00000", now)
        for round_no, size in enumerate(sizes):
            from server.storage import Storage

            began = time.monotonic()
            storage = Storage(url)
            try:
                for first in range(seeded, size, FILL_CHUNK):
                    with storage.engine.begin() as conn:
                        if storage.is_sqlite:
                            # Each event lands in the index on (device, sequence) far from the one before:
                            # with SQLite's 2 MB default cache a 10^7 fill rereads the index for every row.
                            conn.exec_driver_sql("PRAGMA cache_size=-1048576")  # 1 GiB, this connection
                        count = min(FILL_CHUNK, size - first)
                        add_events(conn, storage.is_sqlite, first, count, args.devices, now, STEP_MS, sample)
                    print(f"filled {first + count} events, {time.monotonic() - began:.0f} s", file=sys.stderr)
                analyze(storage, "events")  # this schema's, not the whole database's
            finally:
                storage.dispose()
            fill_s = time.monotonic() - began
            seeded = size
            export = measure_export(url, now, min(args.export, size))
            times = sorted(measure(url, args.rounds, now))
            ingest = measure_ingest(url, now, round_no, args.batches)
            result = {
                "db": db,
                "events": size,
                "stored": count_events(url),
                "devices": args.devices,
                "fill_s": round(fill_s, 1),
                "stored_mb": stored_mb(url, path),
                "ingest": ingest,
                "export": export,
                "console": {
                    "rounds": len(times),
                    "min_ms": round(times[0], 1),
                    "median_ms": round(times[len(times) // 2], 1),
                    "p95_ms": round(times[min(len(times) - 1, int(len(times) * 0.95))], 1),
                    "max_ms": round(times[-1], 1),
                },
            }
            results.append(result)
            print(json.dumps(result), file=sys.stdout if args.json else sys.stderr, flush=True)
    doc = {"db": db, "devices": args.devices, "fleet_seed_s": round(fleet_s, 1), "sizes": results}
    if args.json:
        print(json.dumps(doc, indent=1))
    return doc


if __name__ == "__main__":
    main()
