"""The full agent on a real X desktop, for the agent benchmarks (agent_resources.py, agent_latency.py).

What it sets up, all in a temporary directory:
- Xvfb + openbox + trayer (tests/harness/xdesktop.py) and Tk windows that play the apps;
- a policy signing key, the policy signed and dropped where agent.toml's ``policy_bundle`` points (the MDM/GPO
  path: the agent's drop watcher applies it to the trusted store);
- an enrollment with a stub server on loopback (answers /v1/events, /v1/checkin, /v1/policy like the real
  one, without a database), so the reporting service uploads, checks in and pulls for real;
- ``mamori agent run --config agent.toml`` as its own process: runtime, cover helper, posture monitor, share
  guard, reporting service, tray (what a worker's login starts).

``XWatch`` records, on its own X connection, when override-redirect windows (the helper's covers) map and
unmap, and when the EWMH client list changes, with ``time.monotonic()`` at arrival.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from agent.control import request
from agent.report.enrollment import Enrollment, save_enrollment
from tests.harness.policies import write_agent_config
from tests.harness.xdesktop import Box, XDesktop, wait_for

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


# ---- stub server ------------------------------------------------------------------------------------------
class _Handler(BaseHTTPRequestHandler):
    server: StubServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, doc: Any = None) -> None:
        body = b"" if doc is None else json.dumps(doc).encode()
        self.send_response(status)
        if body:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Content-Encoding") == "gzip":
            raw = gzip.decompress(raw)
        if self.path == "/v1/events":
            lines = [json.loads(line) for line in raw.splitlines() if line.strip()]
            with self.server.lock:
                self.server.events.extend(lines)
            self._reply(200, {"accepted": len(lines), "duplicate": 0, "rejected": []})
        elif self.path == "/v1/checkin":
            with self.server.lock:
                self.server.checkins += 1
            self._reply(200, {"ok": True})
        else:
            self._reply(404, {"error": "not found"})

    def do_GET(self) -> None:
        if self.path.startswith("/v1/policy"):
            self._reply(304)
        else:
            self._reply(404, {"error": "not found"})


class StubServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.events: list[dict[str, Any]] = []
        self.checkins = 0
        self.thread = threading.Thread(target=self.serve_forever, name="stub-server", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def close(self) -> None:
        self.shutdown()
        self.server_close()


# ---- X watcher --------------------------------------------------------------------------------------------
@dataclass
class XWatch:
    """Maps/unmaps of override-redirect windows and client-list changes, timestamped on arrival."""

    display: str
    maps: list[tuple[float, int, Box]] = field(default_factory=list)  # (t, window, geometry)
    unmaps: list[tuple[float, int]] = field(default_factory=list)
    client_lists: list[tuple[float, tuple[int, ...]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        from Xlib import X
        from Xlib import display as xdisplay

        self._X = X
        self._d: Any = xdisplay.Display(self.display)
        self._root = self._d.screen().root
        self._root.change_attributes(event_mask=X.SubstructureNotifyMask | X.PropertyChangeMask)
        self._list_atom = self._d.intern_atom("_NET_CLIENT_LIST")
        self._d.sync()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="xwatch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import select

        X = self._X
        while not self._stop.is_set():
            ready, _, _ = select.select([self._d], [], [], 0.2)
            if not ready and not self._d.pending_events():
                continue
            while self._d.pending_events():
                ev = self._d.next_event()
                now = time.monotonic()
                try:
                    if ev.type == X.MapNotify and ev.override:
                        g = ev.window.get_geometry()
                        with self._lock:
                            self.maps.append((now, ev.window.id, Box(g.x, g.y, g.width, g.height)))
                    elif ev.type in (X.UnmapNotify, X.DestroyNotify):
                        with self._lock:
                            self.unmaps.append((now, ev.window.id))
                    elif ev.type == X.PropertyNotify and ev.atom == self._list_atom:
                        prop = self._root.get_full_property(self._list_atom, X.AnyPropertyType)
                        ids = tuple(int(v) for v in prop.value) if prop is not None else ()
                        with self._lock:
                            self.client_lists.append((now, ids))
                except Exception:  # a window gone before its geometry was read: not a cover we wait for
                    continue

    def first_map_over(self, box: Box, after: float) -> float | None:
        """Time of the first override-redirect map after ``after`` whose geometry covers ``box``'s centre."""
        cx, cy = box.center
        with self._lock:
            for t, _wid, g in self.maps:
                if t >= after and g.x <= cx < g.x + g.width and g.y <= cy < g.y + g.height:
                    return t
        return None

    def covered_windows(self, box: Box) -> set[int]:
        """Override-redirect windows over ``box``'s centre that are mapped now (by the events seen)."""
        cx, cy = box.center
        with self._lock:
            state: dict[int, bool] = {}
            events = sorted(
                [(t, w, True, g) for t, w, g in self.maps] + [(t, w, False, None) for t, w in self.unmaps],
                key=lambda e: e[0],
            )
            for _t, wid, mapped, g in events:
                if mapped:
                    assert g is not None
                    state[wid] = g.x <= cx < g.x + g.width and g.y <= cy < g.y + g.height
                else:
                    state[wid] = False
        return {w for w, on in state.items() if on}

    def first_listed(self, xid: int, after: float) -> float | None:
        """When the window manager first listed ``xid`` after ``after`` (X reuses the ids of closed clients)."""
        with self._lock:
            return next((t for t, ids in self.client_lists if t >= after and xid in ids), None)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        with contextlib.suppress(Exception):
            self._d.close()


# ---- the agent --------------------------------------------------------------------------------------------
def run_cli(*argv: str) -> str:
    done = subprocess.run(
        [PYTHON, "-m", "agent", *argv], capture_output=True, text=True, cwd=ROOT, timeout=60, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"mamori {' '.join(argv)} failed: {done.stderr.strip()}")
    return done.stdout


@dataclass
class AgentLab:
    desk: XDesktop
    workdir: Path
    server: StubServer
    config: Path
    state_dir: Path
    key: Path
    drop: Path
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @classmethod
    def create(
        cls, desk: XDesktop, policy_toml: str, *, enrolled: bool = True, tray: bool = True
    ) -> AgentLab:
        """``enrolled=False``: an MDM-drop-only deployment (no server in agent.toml, no enrollment)."""
        workdir = Path(tempfile.mkdtemp(prefix="mamori-bench-"))
        os.chmod(workdir, 0o755)
        state = workdir / "state"
        state.mkdir(mode=0o700)
        run_cli("policy", "keygen", str(workdir / "keys"))
        server = StubServer()
        lab = cls(
            desk,
            workdir,
            server,
            workdir / "agent.toml",
            state,
            workdir / "keys" / "policy-signing.key",
            workdir / "policy.dsse.json",
        )
        lab.publish(policy_toml)
        write_agent_config(
            workdir,
            state_dir=state,
            trusted_keys=[workdir / "keys" / "policy-signing.pub"],
            policy_bundle=lab.drop,
            server=server.url if enrolled else None,
            lock_command=["true"],
            tray=tray,
        )
        if enrolled:
            save_enrollment(
                state, Enrollment(server.url, str(uuid.uuid4()), "bench-token-" + uuid.uuid4().hex)
            )
        return lab

    def publish(self, policy_toml: str) -> None:
        """Sign ``policy_toml`` and drop it where agent.toml's ``policy_bundle`` points (atomically)."""
        src = self.workdir / "policy.toml"
        src.write_text(policy_toml, encoding="utf-8")
        tmp = self.workdir / "policy.dsse.json.tmp"
        run_cli("policy", "sign", str(src), "--key", str(self.key), "-o", str(tmp))
        os.replace(tmp, self.drop)

    def start(self, wrap: Sequence[str] = (), extra_env: dict[str, str] | None = None) -> None:
        self.log = self.workdir / "agent.log"
        env = {**self.desk.env, **(extra_env or {})}
        env["PYTHONPATH"] = str(ROOT)
        self.proc = subprocess.Popen(
            [
                *wrap,
                *(["env", f"DISPLAY={self.desk.display}"] if wrap else []),
                *(PYTHON, "-m", "agent", "agent", "run", "--config", str(self.config)),
            ],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=open(self.log, "wb"),  # noqa: SIM115 - lives as long as the process
        )

    def status(self) -> dict[str, Any]:
        reply = request(self.state_dir / "agent.sock", {"cmd": "status"}, timeout=5)
        status: dict[str, Any] = reply["status"]
        return status

    def wait_ready(self, version: int, timeout: float = 60) -> dict[str, Any]:
        """Until the agent answers with policy ``version`` applied and the cover helper running."""

        def ready() -> dict[str, Any] | None:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"the agent exited ({self.proc.returncode}); see {self.log}")
            try:
                status = self.status()
            except Exception:
                return None
            policy = status.get("policy") or {}
            overlay = status.get("overlay") or {}
            if policy.get("version") == version and overlay.get("running"):
                return status
            return None

        status = wait_for(ready, timeout=timeout, interval=0.2, what=f"the agent with policy v{version}")
        assert status is not None
        return status

    @property
    def agent_pid(self) -> int:
        """The agent's Python process (below ``ip netns exec``/``env`` wrappers when there are any)."""
        assert self.proc is not None
        return find_agent_pid(self.proc.pid)

    def helper_pid(self) -> int | None:
        status = self.status()
        pid = (status.get("overlay") or {}).get("pid")
        return int(pid) if pid else None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.server.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


def find_agent_pid(pid: int) -> int:
    """``pid`` itself when it is the agent, else its descendant running ``-m agent agent run``."""
    import psutil

    proc = psutil.Process(pid)
    for candidate in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            cmd = candidate.cmdline()
            if "agent" in cmd and "run" in cmd and "agent.overlay.helper" not in cmd:
                return candidate.pid
    raise RuntimeError("the agent process was not found")


# ---- measuring ---------------------------------------------------------------------------------------------
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(own user+system CPU, CPU of its reaped children) in seconds, from /proc/PID/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    return (utime + stime) / TICKS, (cutime + cstime) / TICKS


def memory_kb(pid: int) -> dict[str, int]:
    """RSS (VmRSS), its anonymous part, and PSS/USS-like figures (smaps_rollup) in kB."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM"):
            out[key] = int(value.split()[0])
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
            key, _, value = line.partition(":")
            if key in ("Pss", "Private_Clean", "Private_Dirty"):
                out[key] = int(value.split()[0])
    if "Private_Clean" in out:
        out["USS"] = out.pop("Private_Clean") + out.pop("Private_Dirty")
    return out


def busy_cpu_fraction(seconds: float, sample: Callable[[], None] | None = None) -> float:
    """Share of all cores busy (any process) over ``seconds``, from /proc/stat."""

    def read() -> tuple[int, int]:
        parts = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = parts[3] + parts[4]
        return sum(parts), idle

    total0, idle0 = read()
    if sample is not None:
        sample()
    else:
        time.sleep(seconds)
    total1, idle1 = read()
    return 1.0 - (idle1 - idle0) / max(1, total1 - total0)


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(values: Sequence[float], digits: int = 1) -> dict[str, float]:
    import statistics

    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "median": round(statistics.median(values), digits),
        "p95": round(percentile(values, 0.95), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
    }


def machine() -> dict[str, Any]:
    import platform

    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "loadavg": [round(v, 2) for v in os.getloadavg()],
    }


def thread_counters(pid: int) -> dict[int, tuple[float, int, int]]:
    """Per thread of ``pid``: (user+system CPU seconds, voluntary, involuntary context switches), from /proc."""
    out: dict[int, tuple[float, int, int]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError):
            text = (task / "stat").read_text()
            fields = text[text.rindex(")") + 2 :].split()
            switches = dict(
                line.split(":\t", 1)
                for line in (task / "status").read_text().splitlines()
                if "_ctxt_" in line
            )
            out[int(task.name)] = (
                (int(fields[11]) + int(fields[12])) / TICKS,
                int(switches["voluntary_ctxt_switches"]),
                int(switches["nonvoluntary_ctxt_switches"]),
            )
    return out


@dataclass(frozen=True)
class ThreadActivity:
    tid: int
    cpu_percent: float  # of one core
    wakeups_per_s: float  # voluntary context switches: the thread blocked and was woken again


def thread_activity(pid: int, seconds: float) -> list[ThreadActivity]:
    """What each thread of ``pid`` did over ``seconds``: a thread that sleeps in a wait wakes once per wait
    (one voluntary switch), a thread spinning without a wait burns CPU instead. Threads that started or ended
    during the window are left out."""
    before = thread_counters(pid)
    t0 = time.monotonic()
    time.sleep(seconds)
    after = thread_counters(pid)
    elapsed = time.monotonic() - t0
    return [
        ThreadActivity(
            tid,
            round(100 * (after[tid][0] - before[tid][0]) / elapsed, 2),
            round((after[tid][1] - before[tid][1]) / elapsed, 2),
        )
        for tid in sorted(before.keys() & after.keys())
    ]


def thread_names(pid: int) -> dict[int, str]:
    """Python thread names by OS thread id, from ``py-spy dump`` when it is installed (Python 3.11 does not give
    its thread names to the OS); empty otherwise."""
    import re

    spy = shutil.which("py-spy") or str(Path(PYTHON).with_name("py-spy"))
    if not Path(spy).exists():
        return {}
    try:
        done = subprocess.run(
            [spy, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return {int(m[1]): m[2] for m in re.finditer(r'^Thread (\d+) \([^)]*\): "([^"]*)"', done.stdout, re.M)}
