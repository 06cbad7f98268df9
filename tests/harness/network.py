"""pytest plugin for the namespace tests: an OpenVPN lab and an agent process in the client namespace.

Registered once in tests/conftest.py with ``pytest_plugins``, like tests.harness.desktop.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.netns import PYTHON, ROOT, Netns, VpnLab, require_netns


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[VpnLab]:
    require_netns()
    vpn = VpnLab(tmp_path)
    try:
        yield vpn
    finally:
        vpn.close()


def evaluate_in(ns: Netns, policy: Path, groups: str = "network") -> dict[str, Any]:
    """One evaluation by the real Linux backend inside ``ns``: {"results": {id: {...}}, "vpn": [...]}."""
    done = ns.exec(PYTHON, "-m", "tests.harness.netns_agent", "once", str(policy), groups, timeout=60)
    doc = json.loads(done.stdout)
    return {"results": {r["id"]: r for r in doc["results"]}, "vpn": doc["vpn"]}


class AgentProcess:
    """``netns_agent monitor`` in a namespace; its JSON lines are read by a thread into a queue."""

    def __init__(self, ns: Netns, policy: Path) -> None:
        self.proc = subprocess.Popen(
            ns.argv(PYTHON, "-m", "tests.harness.netns_agent", "monitor", str(policy)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
        )
        ns.procs.append(self.proc)  # type: ignore[arg-type]
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.put(json.loads(raw))

    def mark(self) -> int:
        """A position in the lines seen so far; pass it as ``since`` to also match lines already read."""
        return len(self.seen)

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float, what: str, since: int | None = None
    ) -> dict[str, Any]:
        """The next line matching ``predicate`` (lines of two threads interleave: events and on_change)."""
        if since is not None:
            for line in self.seen[since:]:
                if predicate(line):
                    return line
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                stderr = b""
                if self.proc.poll() is not None and self.proc.stderr is not None:
                    stderr = self.proc.stderr.read()
                raise AssertionError(
                    f"no {what} within {timeout} s; saw {self.seen[-5:]}; {stderr.decode()[-2000:]}"
                )
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            self.seen.append(line)
            if predicate(line):
                return line
