"""customer_app_connections reads the TCP tables once (Linux) with the same result as psutil per process."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.posture import plaintext
from agent.posture.plaintext import Connection, customer_app_connections

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/net tables")


@pytest.fixture
def connected() -> Iterator[list[socket.socket]]:
    """Established TCP connections of this process, over IPv4 and (when available) IPv6."""
    socks: list[socket.socket] = []
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        try:
            server = socket.socket(family, socket.SOCK_STREAM)
            server.bind((host, 0))
        except OSError:
            continue
        server.listen()
        client = socket.create_connection(server.getsockname()[:2])
        accepted, _ = server.accept()
        socks += [server, client, accepted]
    yield socks
    for s in socks:
        s.close()


def _established(conns: list[Connection]) -> set[Connection]:
    return {c for c in conns if c.status == "ESTABLISHED"}


@linux_only
def test_one_pass_matches_psutil_per_process(connected: list[socket.socket]) -> None:
    me = [(os.getpid(), "customer-app")]
    fast = plaintext._linux_connections(me)
    slow = _established(plaintext._psutil_connections(me))
    assert fast and set(fast) == slow
    assert len(fast) == len(slow)
    ports = {s.getsockname()[1] for s in connected if s.type == socket.SOCK_STREAM}
    assert all(c.remote_port in ports for c in fast)


@linux_only
def test_other_processes_connections_are_not_kept(connected: list[socket.socket]) -> None:
    # Only the named pids' sockets are kept: a pid without sockets yields nothing, though this process
    # (not named) has established connections in the same tables.
    assert plaintext._linux_connections([(1 << 30, "customer-app")]) == []
    assert plaintext._linux_connections([]) == []


@linux_only
def test_tables_are_decoded_by_inode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    header = (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    )
    tail = "00000000:00000000 00:00000000 00000000  1000        0 {inode} 1 0000000000000000 20 4 30 10 -1\n"
    (tmp_path / "tcp").write_text(
        header
        + "   0: 0100007F:1538 0102A8C0:0050 01 "
        + tail.format(inode=111)  # mine: 192.168.2.1:80
        + "   1: 0100007F:1539 0202A8C0:0050 01 "
        + tail.format(inode=222)  # another program's
        + "   2: 0100007F:153A 0302A8C0:0015 06 "
        + tail.format(inode=111)  # mine, TIME_WAIT
    )
    v6 = "00000000000000000000000001000000"  # ::1
    remote6 = "B80D0120000000000000000001000000"  # 2001:db8::1
    (tmp_path / "tcp6").write_text(header + f"   0: {v6}:1538 {remote6}:0017 01 " + tail.format(inode=333))
    monkeypatch.setattr(plaintext, "_socket_inodes", {7: [111, 333]}.get)
    conns = plaintext._linux_connections([(7, "ledger"), (8, "ledger")], proc_net=str(tmp_path))
    if sys.byteorder == "little":
        assert conns == [
            Connection(7, "ledger", "192.168.2.1", 80, "ESTABLISHED"),
            Connection(7, "ledger", "2001:db8::1", 23, "ESTABLISHED"),
        ]


@linux_only
def test_unreadable_tables_fall_back_to_psutil(
    monkeypatch: pytest.MonkeyPatch, connected: list[socket.socket]
) -> None:
    def broken(matching: object, proc_net: str = "") -> list[Connection]:
        raise OSError("no /proc/net")

    monkeypatch.setattr(plaintext, "_linux_connections", broken)
    me = os.getpid()
    name = __import__("psutil").Process(me).name()
    conns = customer_app_connections(lambda n: "rule" if n == name else None)
    assert {c.pid for c in conns} <= {p.pid for p in __import__("psutil").process_iter() if p.name() == name}
    assert any(c.pid == me and c.status == "ESTABLISHED" for c in conns)


def test_no_customer_app_running_reads_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*_: object, **__: object) -> list[Connection]:
        raise AssertionError("no table should be read")

    monkeypatch.setattr(plaintext, "_linux_connections", fail)
    monkeypatch.setattr(plaintext, "_psutil_connections", fail)
    assert customer_app_connections(lambda n: None) == []


@linux_only
def test_whole_check_matches_psutil_path(connected: list[socket.socket]) -> None:
    name = __import__("psutil").Process().name()
    rule_for = lambda n: "rule" if n == name else None  # noqa: E731
    fast = _established(customer_app_connections(rule_for))
    pids = [(p.pid, name) for p in __import__("psutil").process_iter(["name"]) if p.info["name"] == name]
    slow = _established(plaintext._psutil_connections(pids))
    assert fast == slow
