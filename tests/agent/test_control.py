"""The control socket: a real Unix socket between a server thread and the client function."""

from __future__ import annotations

import contextlib
import os
import selectors
import stat
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from agent import control
from agent.control import ControlError, ControlServer, request


@pytest.fixture
def sock_path(tmp_path: Path) -> Path:
    return tmp_path / "agent.sock"


def test_request_reply_and_permissions(sock_path: Path) -> None:
    seen: list[dict[str, Any]] = []

    def handler(req: Mapping[str, Any]) -> Mapping[str, Any]:
        seen.append(dict(req))
        return {"ok": True, "status": {"stage": "active"}}

    server = ControlServer(sock_path, handler)
    server.start()
    try:
        assert request(sock_path, {"cmd": "status"}) == {"ok": True, "status": {"stage": "active"}}
        assert seen == [{"cmd": "status"}]
        if os.name != "nt":
            assert stat.S_IMODE(sock_path.stat().st_mode) == 0o600
    finally:
        server.stop()
    assert not sock_path.exists()


def test_failing_handler_answers_with_an_error(sock_path: Path) -> None:
    def handler(req: Mapping[str, Any]) -> Mapping[str, Any]:
        raise RuntimeError("boom")

    server = ControlServer(sock_path, handler)
    server.start()
    try:
        assert request(sock_path, {"cmd": "status"}) == {"ok": False, "error": "internal error: RuntimeError"}
    finally:
        server.stop()


def test_stale_socket_is_replaced_and_live_one_refused(sock_path: Path) -> None:
    first = ControlServer(sock_path, lambda r: {"ok": True})
    first.start()
    try:
        with pytest.raises(ControlError, match="another agent"):
            ControlServer(sock_path, lambda r: {"ok": True}).start()
    finally:
        assert first._sock is not None
        first._sock.close()  # simulate a crash: the file stays, nobody listens
    second = ControlServer(sock_path, lambda r: {"ok": True, "n": 2})
    second.start()
    try:
        assert request(sock_path, {"cmd": "x"})["n"] == 2
    finally:
        second.stop()


def test_no_agent_is_a_one_line_hint(sock_path: Path) -> None:
    with pytest.raises(ControlError, match="mamori agent run") as info:
        request(sock_path, {"cmd": "status"})
    assert "\n" not in str(info.value) and info.value.exit_code == 3


def test_a_failed_connect_closes_its_socket(sock_path: Path) -> None:
    import gc
    import warnings

    # Before the fix the socket of a failed connect was left for the garbage collector (ResourceWarning).
    gc.collect()  # earlier tests' garbage is not this test's business
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        with contextlib.suppress(ControlError):
            request(sock_path, {"cmd": "status"})
        gc.collect()
    leaks = [w for w in caught if issubclass(w.category, ResourceWarning) and "family=1," in str(w.message)]
    assert not leaks


def test_a_reply_that_is_not_json_is_answered_as_an_error(sock_path: Path) -> None:
    # Before the fix json.dumps raised in the connection thread: a traceback on stderr and no answer at all.
    server = ControlServer(sock_path, lambda r: {"ok": True, "status": {"since": object()}})
    server.start()
    try:
        assert request(sock_path, {"cmd": "status"}) == {"ok": False, "error": "internal error: TypeError"}
    finally:
        server.stop()


def _serving_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "mamori-control"]


@pytest.mark.parametrize("unix", [True, False], ids=["unix", "loopback-tcp"])
def test_idle_server_blocks_until_a_connection_or_stop(
    sock_path: Path, monkeypatch: pytest.MonkeyPatch, unix: bool
) -> None:
    # No polling timeout: idle, the serve loop waits once; a request wakes it; stop() ends it at once.
    # The Windows path (TCP on loopback, token in the port file) is run here by forcing it.
    monkeypatch.setattr(control, "_use_unix", lambda: unix)
    waits: list[float | None] = []
    real = selectors.DefaultSelector

    class CountingSelector(real):  # type: ignore[valid-type,misc]
        def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
            waits.append(timeout)
            return super().select(timeout)  # type: ignore[no-any-return]

    monkeypatch.setattr(selectors, "DefaultSelector", CountingSelector)
    before = len(_serving_threads())
    server = ControlServer(sock_path, lambda r: {"ok": True, "echo": r.get("cmd")})
    server.start()
    try:
        time.sleep(1.2)
        assert waits == [None]
        assert request(sock_path, {"cmd": "status"}) == {"ok": True, "echo": "status"}
        deadline = time.monotonic() + 2
        while len(waits) < 2 and time.monotonic() < deadline:  # the loop goes back to waiting
            time.sleep(0.01)
        time.sleep(0.3)
        assert waits == [None, None]
        assert unix == sock_path.exists()
        assert unix != control._port_file(sock_path).exists()
    finally:
        started = time.monotonic()
        server.stop()
        stopped_in = time.monotonic() - started
    assert stopped_in < 0.4
    assert len(_serving_threads()) == before
    assert not sock_path.exists() and not control._port_file(sock_path).exists()
    server.stop()  # twice: harmless
