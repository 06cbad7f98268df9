"""Network-change watchers (the netlink one is exercised for real in tests/agent/posture/test_vpn.py)."""

from __future__ import annotations

import sys
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.platform.netlink import NetlinkWatcher
from agent.platform.posture_linux import split_terse
from agent.posture.watcher import PollWatcher, psutil_fingerprint


def test_poll_watcher_calls_back_once_per_change() -> None:
    state = {"value": 0}
    changed = threading.Event()
    calls: list[int] = []

    def on_change() -> None:
        calls.append(state["value"])
        changed.set()

    watcher = PollWatcher(on_change, lambda: state["value"], interval=0.01)
    watcher.start()
    try:
        state["value"] = 1
        assert changed.wait(10)
    finally:
        watcher.stop()
    assert calls == [1]


def test_poll_watcher_survives_a_failing_fingerprint() -> None:
    changed = threading.Event()
    values: list[int | None] = [None, 1, 1, 2]  # None: the fingerprint raises

    def fingerprint() -> int:
        value = values.pop(0) if values else 2
        if value is None:
            raise ValueError("boom")
        return value

    watcher = PollWatcher(changed.set, fingerprint, interval=0.01)
    watcher.start()
    try:
        assert changed.wait(10)
    finally:
        watcher.stop()


def test_psutil_fingerprint_is_hashable_and_stable() -> None:
    assert hash(psutil_fingerprint()) == hash(psutil_fingerprint())


@pytest.mark.skipif(sys.platform != "linux", reason="rtnetlink is Linux-only")
def test_netlink_watcher_starts_and_stops() -> None:
    watcher = NetlinkWatcher(lambda: None)
    watcher.start()
    watcher.stop()


def _escape(field: str) -> str:
    return field.replace("\\", "\\\\").replace(":", "\\:")


@given(
    st.lists(
        st.text(alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\n")),
        min_size=1,
        max_size=6,
    )
)
def test_nmcli_terse_split_round_trips(fields: list[str]) -> None:
    assert split_terse(":".join(_escape(f) for f in fields)) == fields
