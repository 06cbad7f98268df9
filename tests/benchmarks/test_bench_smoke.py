"""``python -m benchmarks --quick`` (the runner behind ``make bench``) runs every benchmark script at tiny sizes
and prints a well-formed table; the runner's own parts (JSON reading, the docs block) are checked without it.

Figures are never asserted here (SPEC.md: benchmarks, never timed unit tests): only that each script ran and
produced the rows its figures need.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.__main__ import BEGIN, DESKTOP_TOOLS, END, Row, parse_json, table, write_docs

ROOT = Path(__file__).resolve().parents[2]

# Every figure of SPEC.md's "Performance targets" table has a row (by the start of its name).
SPEC_FIGURES = (
    "agent RSS, steady",
    "cover helper RSS",
    "agent CPU, idle",
    "idle → covered",
    "share (OBS starts) → covered",
    "share (browser indicator) → covered",
    "VPN dropped → covered",
    "onlooker guard",
    "server ingest / raw insert rate, SQLite",
    "100 simulated agents, SQLite",
    "100 simulated agents, PostgreSQL",
    "console overview",
    # issue 16: the cost as stored events grow (benchmarks/scale_bench.py), on both databases
    "ingest rate at 2 000 events stored, SQLite",
    "export throughput at 5 000 events stored, PostgreSQL",
)


def test_parse_json_takes_the_document_a_script_printed_last() -> None:
    text = 'starting\n{"a": 1}\nnoise {"x"\n{\n  "benchmark": "b",\n  "n": [1, 2]\n}\n'
    assert parse_json(text) == {"benchmark": "b", "n": [1, 2]}
    with pytest.raises(ValueError):
        parse_json("no json here\n")


def test_write_docs_replaces_only_the_generated_block(tmp_path: Path) -> None:
    doc = tmp_path / "performance.md"
    doc.write_text(f"# Performance\n\nby hand\n\n{BEGIN}\nold table\n{END}\n\n## Explained misses\n")
    write_docs(doc, "new table\n")
    write_docs(doc, "newer table\n")
    text = doc.read_text()
    assert "old table" not in text and "new table" not in text and text.count("newer table") == 1
    assert text.startswith("# Performance\n\nby hand\n") and text.endswith("## Explained misses\n")
    rendered = table([Row("a | b", "≤ 1", "median 2", 1.0, 2.0, 3.5, "ms", "MISSED")])
    assert rendered.splitlines()[2] == "| a \\| b | ≤ 1 | median 2 | 1 | 2 | 3.5 | ms | MISSED |"


@pytest.mark.desktop
@pytest.mark.postgres
@pytest.mark.slow
def test_quick_bench_runs_every_script(tmp_path: Path) -> None:
    absent = [t for t in (*DESKTOP_TOOLS, "haproxy", "stress-ng") if shutil.which(t) is None]
    if absent:
        pytest.skip(f"not installed: {', '.join(absent)} (run .ci/run)")
    pg = os.environ.get("MAMORI_TEST_PG_URL")
    if not pg:
        pytest.skip("MAMORI_TEST_PG_URL is not set (PostgreSQL)")
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--pg", pg, "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    doc = json.loads(out.read_text())
    rows = doc["rows"]
    errors = [r for r in rows if r["verdict"].startswith("error")]
    assert not errors, errors
    for figure in SPEC_FIGURES:
        assert any(r["figure"].startswith(figure) for r in rows), f"no row for {figure!r}"
    for row in rows:
        if row["verdict"] in ("met", "MISSED"):
            assert row["target"] and row["measured"] and isinstance(row["median"], (int, float)), row
    measured = {r["step"] for r in rows if r["verdict"] in ("met", "MISSED", "info")}
    skipped_ok = {"agent_latency_loaded"}  # not in --quick: agent_latency --quick runs with a CPU hog
    assert measured | skipped_ok >= set(doc["commands"]), rows
    # The printed table is the one in the JSON, one line a row.
    assert done.stdout.count("\n| ") == len(rows) + 1
