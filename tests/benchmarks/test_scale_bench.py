"""benchmarks/scale_bench.py through the ``make bench`` runner at tiny sizes: it grows one database, its rows are
well formed at each size, and the opt-in 10^7 steps are named in the table with the command that runs them
instead of being dropped. No figure is asserted (SPEC.md: benchmarks, never timed unit tests)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import benchmarks.__main__ as bench
from benchmarks.scale_bench import parse_sizes


def test_quick_scale_rows_and_the_opt_in_step_in_the_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    chosen = [s for s in bench.steps(None) if s.name in ("scale_sqlite", "scale_sqlite_1e7")]
    assert [s.opt_in != "" for s in chosen] == [False, True]
    monkeypatch.setattr(bench, "steps", lambda _pg: chosen)
    out = tmp_path / "bench.json"
    assert bench.main(["--quick", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    rows = doc["rows"]
    assert set(doc["commands"]) == {"scale_sqlite"}  # the opt-in step did not run
    skipped = [r for r in rows if r["step"] == "scale_sqlite_1e7"]
    assert len(skipped) == 1 and "--only scale_sqlite_1e7" in skipped[0]["verdict"], skipped
    assert skipped[0]["verdict"].startswith("skipped: 10^7 events")
    measured = [r for r in rows if r["step"] == "scale_sqlite"]
    for size in ("2 000", "5 000"):
        names = [r["figure"] for r in measured if f"{size} events" in r["figure"]]
        assert [n.split(" ")[0] for n in names] == ["ingest", "export", "console"], names
    for row in measured:
        assert row["verdict"] in ("info", "met", "MISSED") and row["measured"], row
        assert isinstance(row["median"], (int, float)) and row["median"] > 0, row
    console = [r for r in measured if r["figure"].startswith("console overview, 200 devices")]
    assert len(console) == 2 and all(r["target"] == "< 500 ms" for r in console)
    assert doc["results"]["scale_sqlite"]["sizes"][1]["stored"] == 5000 + 2 * 2 * 500  # two rounds of ingest
    assert capsys.readouterr().out.count("\n| ") == len(rows) + 1


@pytest.mark.parametrize("text", ["", "5000,2000", "10^7", "1000,1000", "0,10"])
def test_bad_sizes_are_refused_with_the_fix(text: str) -> None:
    with pytest.raises(SystemExit, match=r"--sizes .*e\.g\. 100000,1000000"):
        parse_sizes(text)
