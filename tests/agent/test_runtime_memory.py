"""The agent's C allocator settings, on this machine's real glibc: the arena limit holds for every thread started
after it, and free pages in the middle of the heap go back to the system."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="glibc's mallopt/malloc_trim: Linux only")

ARENAS = """
import ctypes, os, sys, threading
from agent.runtime_memory import limit_arenas
print(limit_arenas() if sys.argv[1] == "limit" else "unset", file=sys.stderr)
go, done = threading.Event(), threading.Event()
def work():
    keep = [bytes(2000 + i) for i in range(50)]  # malloc'd in this thread's arena
    go.wait()
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads: t.start()
import time; time.sleep(0.5)
ctypes.CDLL(None).malloc_stats()  # one "Arena N:" block per arena, on stderr
go.set()
"""

TRIM = """
import sys
from agent.runtime_memory import release_free_memory
def anon():
    return int([l for l in open("/proc/self/status") if l.startswith("RssAnon")][0].split()[1])
chunks = [bytearray(4000) for _ in range(40000)]  # ~160 MB of heap chunks (below the mmap threshold)
del chunks[::2]; del chunks[::2]; del chunks[::2]  # 7 of 8 freed, scattered: free() keeps those pages
before = anon()
print(release_free_memory(), before - anon())
"""


def _run(script: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=60, check=True, env=env
    )


def _arenas(stderr: str) -> int:
    return sum(1 for line in stderr.splitlines() if line.startswith("Arena "))


def test_threads_share_two_arenas_after_the_limit() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    limited = _run(ARENAS, "limit", env=env)
    assert limited.stderr.splitlines()[0] == "True"
    assert 1 <= _arenas(limited.stderr) <= 2
    unlimited = _run(ARENAS, "none", env=env)  # the negative control: glibc's default gives threads their own
    assert _arenas(unlimited.stderr) > 2


def test_an_administrators_malloc_arena_max_wins() -> None:
    out = _run(ARENAS, "limit", env={**os.environ, "MALLOC_ARENA_MAX": "4"})
    assert out.stderr.splitlines()[0] == "False"


def test_free_pages_in_the_middle_of_the_heap_go_back() -> None:
    asked, released_kb = _run(TRIM).stdout.split()
    assert asked == "True"
    assert int(released_kb) > 50_000, released_kb  # most of the ~140 MB freed in scattered chunks
