"""The durable outbox: sequences, durability settings, bounds with coalescing, drop order and gap events."""

from __future__ import annotations

import json
import sqlite3
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.report.events import Priority, build_record, rule_context
from agent.report.outbox import Outbox
from agent.report.stream import AgentEvent, Kind

NOW = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)


def rec(kind: Kind, **data: Any) -> dict[str, Any]:
    return build_record(AgentEvent(kind, NOW, data), rule_context())


def heartbeat() -> dict[str, Any]:
    return rec(Kind.HEARTBEAT, state="online")


def finding(n: int) -> dict[str, Any]:
    return rec(Kind.POSTURE_FINDING, check_id=f"check-{n}", status="fail", mode="block", enforcement="block")


def info(n: int) -> dict[str, Any]:
    return rec(Kind.VPN_UP, interface=f"tun{n}")


def open_outbox(tmp_path: Path, **kw: Any) -> Outbox:
    return Outbox(tmp_path / "outbox.sqlite3", now=lambda: NOW, **kw)


def test_sequences_are_contiguous_and_survive_reopen(tmp_path: Path) -> None:
    box = open_outbox(tmp_path)
    assert box.put([finding(i) for i in range(3)]) == [1, 2, 3]
    box.ack([1, 2])
    box.close()
    box = open_outbox(tmp_path)
    assert box.put([finding(9)]) == [4]
    assert [r["metadata"]["sequence"] for r in box.pending()] == [3, 4]
    assert box.last_sequence() == 4 and box.pending_count() == 2


def test_durability_settings_and_file_mode(tmp_path: Path) -> None:
    box = open_outbox(tmp_path)
    box.put([finding(1)])
    db = sqlite3.connect(tmp_path / "outbox.sqlite3")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert stat.S_IMODE((tmp_path / "outbox.sqlite3").stat().st_mode) == 0o600
    # synchronous is per connection: check the outbox's own connection
    assert box._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_batches_exclude_in_flight_events_and_release_returns_them(tmp_path: Path) -> None:
    box = open_outbox(tmp_path)
    box.put([finding(i) for i in range(5)])
    first = box.next_batch(max_count=2)
    second = box.next_batch(max_count=10)
    assert [p.seq for p in first] == [1, 2] and [p.seq for p in second] == [3, 4, 5]
    box.release([p.seq for p in first])
    assert [p.seq for p in box.next_batch()] == [1, 2]
    assert json.loads(first[0].body)["metadata"]["sequence"] == 1


def test_batches_respect_the_byte_bound(tmp_path: Path) -> None:
    box = open_outbox(tmp_path)
    box.put([finding(i) for i in range(10)])
    size = len(box.next_batch(max_count=1)[0].body)
    box.release([1])
    assert len(box.next_batch(max_count=100, max_bytes=size * 3 + 1)) == 3


def test_full_outbox_coalesces_heartbeats_then_drops_telemetry_before_findings(tmp_path: Path) -> None:
    box = open_outbox(tmp_path, max_events=10)
    box.put([heartbeat() for _ in range(6)])
    box.put([finding(i) for i in range(5)])  # 11 > 10: heartbeats coalesce to the newest
    assert box.pending_count() == 6
    box.put([info(i) for i in range(3)])  # 9
    box.put([finding(i) for i in range(5, 9)])  # 13 > 10: drop heartbeat, then the oldest infos
    kinds = [r["metadata"]["event_code"] for r in box.pending()]
    assert (
        kinds.count("posture.finding") == 9 and kinds.count("heartbeat") == 0 and kinds.count("vpn.up") == 1
    )
    assert box.pending_drops() == {"heartbeat": (1, 5), "vpn.up": (2, 0)}
    # the next batch starts with... the oldest events; the gap event is added at the end with the counts
    batch = box.next_batch(max_count=100)
    gap = json.loads(batch[-1].body)
    assert gap["metadata"]["event_code"] == "report.gap"
    assert gap["unmapped"]["dropped"] == {"heartbeat": 1, "vpn.up": 2}
    assert gap["unmapped"]["coalesced"] == {"heartbeat": 5}
    assert gap["unmapped"]["classes"] == {"5019": 6, "4014": 2}  # counts per OCSF class, all lost events
    # the gap event itself needed room: the last telemetry event went, and is counted for the next gap event
    assert box.pending_drops() == {"vpn.up": (1, 0)}
    assert box.pending_count() == 10


def test_findings_go_last_and_are_counted(tmp_path: Path) -> None:
    box = open_outbox(tmp_path, max_events=10)
    box.put([finding(i) for i in range(15)])
    assert box.pending_count() == 10
    assert next(r["unmapped"]["check_id"] for r in box.pending()) == "check-5"  # oldest dropped first
    assert box.pending_drops() == {"posture.finding": (5, 0)}
    assert box.priorities() == {int(Priority.SECURITY): 10}


def test_dropped_gap_events_fold_their_counts_into_the_next(tmp_path: Path) -> None:
    box = open_outbox(tmp_path, max_events=10)
    box.put([info(i) for i in range(12)])  # 2 dropped
    box.release([p.seq for p in box.next_batch(max_count=1)])  # gap #1 (2 dropped) made room by dropping 1
    box.put([finding(i) for i in range(10)])  # the 9 infos go, then gap #1 (oldest security event)
    assert box.pending_drops() == {"vpn.up": (12, 0), "report.gap": (1, 0)}  # 1 + 9 + the 2 of gap #1
    batch = box.next_batch(max_count=100)
    gap = json.loads(batch[-1].body)["unmapped"]
    assert gap["dropped"]["vpn.up"] == 12  # every info event, including those gap #1 counted
    assert gap["first_sequence"] == 1


def test_in_flight_events_are_never_dropped(tmp_path: Path) -> None:
    box = open_outbox(tmp_path, max_events=10)
    box.put([info(i) for i in range(10)])
    in_flight = [p.seq for p in box.next_batch(max_count=10)]
    box.put([finding(i) for i in range(5)])
    left = {r["metadata"]["sequence"] for r in box.pending()}
    assert set(in_flight) <= left


def test_byte_bound(tmp_path: Path) -> None:
    box = open_outbox(tmp_path, max_events=1000, max_bytes=4096)
    box.put([info(i) for i in range(40)])
    assert box.pending_bytes() <= 4096
    assert box.pending_count() < 40 and box.pending_drops()["vpn.up"][0] == 40 - box.pending_count()


def test_set_aside_moves_rejected_events_out_of_the_queue(tmp_path: Path) -> None:
    box = open_outbox(tmp_path)
    box.put([finding(i) for i in range(3)])
    batch = box.next_batch()
    box.set_aside([(batch[1].seq, "type_uid: wrong")])
    box.ack([batch[0].seq, batch[2].seq])
    assert box.pending_count() == 0
    assert [(r.seq, r.reason) for r in box.rejected()] == [(2, "type_uid: wrong")]
