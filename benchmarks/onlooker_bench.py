"""The onlooker guard's cost (SPEC.md target: ≤ 5 % of one core at the default rate; the RSS it adds, stated).

    python -m benchmarks.onlooker_bench [--seconds 60] [--warmup 5] [--fps 2]

Runs the real guard process (``python -m agent.onlooker.process``) the way the agent does, through
:class:`agent.onlooker.guard.OnlookerGuard`, on a camera stand-in: a video made from scikit-image's astronaut
photograph (one face: the worker alone, the steady state). The video has one frame per sampling interval
(``--fps`` frames a second), so each sample decodes one JPEG frame, about what reading a USB camera's frame
costs; a 30 fps camera's other frames are dropped by the driver (buffer size 1), not decoded.

Measured: the guard process's CPU (user + system, from /proc via psutil) over the window, as % of one core, per
second (min / median / max) and overall; its RSS and USS (median of one sample a second): memory that exists
only while the guard runs, in a process of its own, so it is what the guard adds to the PC; and the agent-side
part (the supervisor's threads and pipes): RSS of this process with the guard running minus before it started.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
MAKE_VIDEO = """
import sys
from pathlib import Path
from tests.agent.onlooker.video import write_video
write_video(Path(sys.argv[1]), [(1, float(sys.argv[2]))], fps=int(sys.argv[3]))
"""


def summary(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "min": round(min(values), 2),
        "median": round(statistics.median(values), 2),
        "max": round(max(values), 2),
    }


def measure(seconds: float, warmup: float, fps: int) -> dict[str, Any]:
    from agent.onlooker.guard import OnlookerGuard
    from agent.report.stream import EventStream
    from core.clock import SystemClock
    from policy.model import Onlooker, Policy

    with tempfile.TemporaryDirectory(prefix="mamori-onlooker-bench-") as tmp:
        clip = Path(tmp) / "camera.avi"
        # Made in another process: this one plays the agent and must not load OpenCV itself.
        subprocess.run(
            [sys.executable, "-c", MAKE_VIDEO, str(clip), str(warmup + seconds + 30), str(fps)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            check=True,
        )
        me = psutil.Process()
        rss_before = me.memory_info().rss
        policy = Policy(schema=1, id="bench", version=1, onlooker=Onlooker(mode="report", frame_rate=fps))
        guard = OnlookerGuard(
            lambda: policy,
            lambda *_a: None,
            lambda *_a: None,
            EventStream(),
            SystemClock(),
            camera=str(clip),
        )
        stop = threading.Event()
        worker = threading.Thread(target=guard.run, args=(stop,), daemon=True)
        began = time.monotonic()
        worker.start()
        try:
            while not guard.status()["running"]:
                if time.monotonic() - began > 60:
                    raise SystemExit("the guard did not start within 60 s")
                time.sleep(0.05)
            start_s = time.monotonic() - began
            pid = guard.pid
            assert pid is not None
            proc = psutil.Process(pid)
            time.sleep(warmup)
            cpu_start = proc.cpu_times()
            t_start = time.monotonic()
            per_second: list[float] = []
            rss: list[float] = []
            uss: list[float] = []
            agent_rss: list[float] = []
            faces: set[object] = set()
            last_cpu, last_t = cpu_start.user + cpu_start.system, t_start
            while time.monotonic() - t_start < seconds:
                time.sleep(1.0)
                times = proc.cpu_times()
                now = time.monotonic()
                used = times.user + times.system
                per_second.append(100.0 * (used - last_cpu) / (now - last_t))
                last_cpu, last_t = used, now
                info = proc.memory_full_info()
                rss.append(info.rss / 2**20)
                uss.append(info.uss / 2**20)
                agent_rss.append((me.memory_info().rss - rss_before) / 2**20)
                faces.add(guard.status()["faces"])
            cpu_end = proc.cpu_times()
            elapsed = time.monotonic() - t_start
            cpu_percent = (
                100.0 * ((cpu_end.user + cpu_end.system) - (cpu_start.user + cpu_start.system)) / elapsed
            )
        finally:
            stop.set()
            worker.join(10)
    return {
        "benchmark": "onlooker_bench",
        "fps": fps,
        "seconds": round(elapsed, 1),
        "warmup": warmup,
        "start_s": round(start_s, 2),
        "faces_seen": sorted(f for f in faces if isinstance(f, int)),
        "guard_cpu_percent": round(cpu_percent, 2),
        "guard_cpu_percent_per_second": summary(per_second),
        "guard_rss_mb": summary(rss),
        "guard_uss_mb": summary(uss),
        "agent_side_rss_mb": summary(agent_rss),
        "cpus": os.cpu_count(),
        "loadavg": [round(v, 2) for v in os.getloadavg()],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=60.0, help="measurement window (default 60)")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds after the first frame (default 5)")
    parser.add_argument("--fps", type=int, default=2, help="frames a second (default 2, the policy default)")
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.seconds, args.warmup, args.fps), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
