"""`mamori demo`: the whole product on one machine, in one command (issue 7 item 6).

Steps, each printed as it happens:

1. demo signing keys in a fresh work directory (``$MAMORI_DEMO_DIR``, else a temporary one);
2. a demo copy of ``policy/examples/standard.toml`` with short timers (warn 20 s, cover 30 s) and "block" checks
   relaxed to "warn" (a demo machine has no company VPN), validated and signed;
3. ``mamori server run`` on SQLite on a free loopback port (``$MAMORI_DEMO_PORT`` to choose), migrated,
   with an admin token, an enrollment secret and the signed policy published;
4. ``mamori agent enroll`` of this machine, then ``mamori agent run`` with the tray — or, without a display,
   the posture and reporting parts only (said so);
5. the dashboard URL, the admin token and what to try; Ctrl-C (or SIGTERM) stops everything cleanly.

Every step runs the real command line in a child process, so the demo exercises what an administrator runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agent.platform import DISPLAY_FROM_ENV
from core.errors import MamoriError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "policy" / "examples" / "standard.toml"
ENV_DIR = "MAMORI_DEMO_DIR"
ENV_PORT = "MAMORI_DEMO_PORT"
DEMO_TIMERS = {"warn_after": "20s", "protect_after": "30s", "lock_after": "10m"}


class DemoError(MamoriError):
    """The demo cannot start; the message says which step failed and why."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def demo_policy(text: str) -> str:
    """The example policy with demo timers and no blocking (pure: text in, text out)."""
    for key, value in DEMO_TIMERS.items():
        text, n = re.subn(rf'(?m)^{key}\s*=\s*"[^"]*"', f'{key} = "{value}"', text)
        if n == 0:
            text = text.replace("[presence]\n", f'[presence]\n{key} = "{value}"\n', 1)
    # A demo machine has no company VPN or managed disk encryption: warn instead of covering everything.
    return re.sub(r'(?m)^(\s*mode\s*=\s*)"block"', r'\1"warn"', text)


def agent_toml(state: Path, public: Path, server: str, *, tray: bool) -> str:
    """The demo's agent.toml: paths as TOML literal strings, so a Windows path (C:\\Users\\...) stays valid."""
    from agent.config import toml_string

    return (
        f"state_dir = {toml_string(state)}\ntrusted_keys = [{toml_string(public)}]\n"
        f"server = {toml_string(server)}\ntray = {'true' if tray else 'false'}\n"
    )


def mamori(*args: str) -> list[str]:
    return [sys.executable, "-m", "agent", *args]


def run_step(argv: Sequence[str], what: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(list(argv), capture_output=True, text=True, timeout=120, check=False, env=env)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise DemoError(f"{what} failed: {detail[-1] if detail else f'exit status {result.returncode}'}")
    return result.stdout


def has_display(environ: dict[str, str]) -> bool:
    return not DISPLAY_FROM_ENV or bool(environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY"))


@dataclass
class Demo:
    workdir: Path
    port: int
    env: dict[str, str]
    children: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    url: str = ""
    admin_token: str = ""
    headless: bool = False

    def say(self, text: str) -> None:
        print(text, flush=True)

    # ------------------------------------------------------------------------------------------- steps

    def keys_and_policy(self) -> tuple[Path, Path]:
        from policy.keys import generate_keypair, load_private_key
        from policy.load import load_policy
        from policy.signing import sign_policy

        if not EXAMPLE.exists():
            raise DemoError(f"{EXAMPLE} is missing; run the demo from a full clone of the repository")
        private, public = generate_keypair(self.workdir / "keys")
        text = demo_policy(EXAMPLE.read_text(encoding="utf-8"))
        data = text.encode("utf-8")
        policy = load_policy(data, "demo-policy.toml")  # fail here, not in the agent, if the edit broke it
        (self.workdir / "demo-policy.toml").write_bytes(data)
        bundle = self.workdir / "demo-policy.dsse.json"
        bundle.write_bytes(sign_policy(data, load_private_key(private)))
        self.say(f"[1/4] demo keys and signed policy {policy.id} v{policy.version}: {bundle}")
        return public, bundle

    def server(self, public: Path, bundle: Path) -> str:
        db = f"sqlite:///{self.workdir / 'server.sqlite3'}"
        run_step(mamori("server", "migrate", "--db", db), "server migrate", self.env)
        self.admin_token = json.loads(
            run_step(mamori("server", "admin-token", "create", "--db", db, "--json"), "admin token", self.env)
        )["token"]
        secret = json.loads(
            run_step(
                mamori("server", "enroll-secret", "create", "--db", db, "--uses", "5", "--json"),
                "enroll secret",
                self.env,
            )
        )["secret"]
        run_step(
            mamori("server", "policy", "publish", str(bundle), "--pub", str(public), "--db", db),
            "publish",
            self.env,
        )
        listen = f"127.0.0.1:{self.port}"
        self.spawn("server", mamori("server", "run", "--db", db, "--listen", listen), "server.log")
        self.url = f"http://{listen}"
        self.wait_http(self.url + "/healthz", "server")
        self.say(f"[2/4] server on SQLite: {self.url}  (log: {self.workdir / 'server.log'})")
        return str(secret)

    def agent(self, public: Path, secret: str) -> None:
        state = self.workdir / "agent-state"
        config = self.workdir / "agent.toml"
        config.write_text(
            agent_toml(state, public, self.url, tray=not self.headless),
            encoding="utf-8",
        )
        run_step(
            mamori(
                "agent",
                "enroll",
                "--insecure-http",
                "--server",
                self.url,
                "--secret",
                secret,
                "--config",
                str(config),
            ),
            "enroll",
            self.env,
        )
        # The same bundle as an MDM/GPO drop: the agent has its policy before its first pull from the server.
        bundle = self.workdir / "demo-policy.dsse.json"
        run_step(
            mamori("policy", "apply", str(bundle), "--pub", str(public), "--state-dir", str(state)),
            "policy apply",
            self.env,
        )
        self.say(f"[3/4] this machine is enrolled (state: {state})")
        argv = mamori("agent", "run", "--config", str(config))
        if self.headless:
            argv.append("--no-tray")
        proc = self.spawn("agent", argv, "agent.log")
        time.sleep(2.0)  # give a broken start the chance to show itself before we claim success
        if proc.poll() is not None:
            tail = (
                (self.workdir / "agent.log")
                .read_text(encoding="utf-8", errors="replace")
                .strip()
                .splitlines()
            )
            self.say(
                f"[4/4] the agent stopped at start: {tail[-1] if tail else f'exit status {proc.returncode}'}"
            )
            self.children.remove(("agent", proc))
            self.say("      falling back to posture checks and reporting only")
            self.reporting_only(config)
        elif self.headless:
            self.say(
                "[4/4] agent running without a display: posture checks and reporting only (no tray, no covers)"
            )
        else:
            self.say(
                f"[4/4] agent running: mamori agent run --config {config}  (log: {self.workdir / 'agent.log'})"
            )

    def reporting_only(self, config: Path) -> None:
        """Headless fallback: one posture check, then a reporting loop (heartbeats) in a child process."""
        check = subprocess.run(
            mamori("agent", "check", "--config", str(config), "--json"),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env=self.env,
        )
        try:
            summary = json.loads(check.stdout)
            failing = [c["id"] for c in summary.get("checks", []) if c.get("status") != "pass"]
            self.say(
                f"      posture: compliant={summary.get('compliant')} not passing: {', '.join(failing) or '-'}"
            )
        except (ValueError, AttributeError):
            self.say(f"      posture check unavailable: {(check.stderr or '').strip()[:200]}")
        code = (
            "import sys, signal, threading\n"
            "from agent.config import load_config\n"
            "from core.clock import SystemClock\n"
            "from agent.report.stream import EventStream, AgentEvent, Kind\n"
            "from agent.report.service import ReportingService\n"
            "cfg = load_config(__import__('pathlib').Path(sys.argv[1]))\n"
            "stream = EventStream(); clock = SystemClock()\n"
            "svc = ReportingService(cfg, stream, clock, heartbeat=30.0); svc.start()\n"
            "stream.publish(AgentEvent(Kind.AGENT_STARTED, clock.now(), {}))\n"
            "done = threading.Event()\n"
            "for s in (signal.SIGTERM, signal.SIGINT): signal.signal(s, lambda *_: done.set())\n"
            "done.wait()\n"
            "stream.publish(AgentEvent(Kind.AGENT_STOPPED, clock.now(), {})); svc.stop()\n"
        )
        self.spawn("reporting", [sys.executable, "-c", code, str(config)], "reporting.log")

    # ---------------------------------------------------------------------------------------- helpers

    def spawn(self, name: str, argv: Sequence[str], log: str) -> subprocess.Popen[bytes]:
        out = (self.workdir / log).open("wb")
        proc = subprocess.Popen(
            list(argv), stdout=out, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
        )
        out.close()
        self.children.append((name, proc))
        return proc

    def wait_http(self, url: str, what: str, timeout: float = 30.0) -> None:
        import requests

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.children:
                if proc.poll() is not None:
                    raise DemoError(f"the {name} exited at start (see {self.workdir / (name + '.log')})")
            try:
                if requests.get(url, timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise DemoError(f"the {what} did not answer {url} within {timeout:.0f} s")

    def stop(self) -> None:
        """Agent first (it sends its clean-stop notice to the server), then the server."""
        for name, proc in reversed(self.children):
            if proc.poll() is None:
                # SIGTERM to the process only: the agent stops its own cover helper; signalling the whole group
                # would kill the helper first and the agent would report a crash.
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)  # anything it left behind in its session
            self.say(f"stopped {name}")
        self.children.clear()


def _port(value: str | None) -> int:
    if not value:
        return free_port()
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise DemoError(f"{ENV_PORT}={value!r} is not a TCP port; set a number from 1 to 65535 or unset it")
    return int(value)


def run_demo(args: argparse.Namespace) -> int:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    port = _port(env.get(ENV_PORT))
    workdir = Path(env[ENV_DIR]) if env.get(ENV_DIR) else Path(tempfile.mkdtemp(prefix="mamori-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    demo = Demo(workdir, port, env, headless=not has_display(env))
    stop = threading.Event()

    def on_signal(_sig: int, _frame: object) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        demo.say(f"Mamori demo in {workdir}")
        if demo.headless:
            demo.say("No display: the agent runs its posture checks and reporting only (no tray, no covers).")
        public, bundle = demo.keys_and_policy()
        secret = demo.server(public, bundle)
        demo.agent(public, secret)
        demo.say("")
        demo.say(f"Dashboard: {demo.url}/")
        demo.say(f"Admin token (sign in to the dashboard): {demo.admin_token}")
        demo.say("What to try:")
        if not demo.headless:
            demo.say("  - acknowledge the policy in the dialog (or tray > Acknowledge policy)")
            demo.say(
                "  - open a file named 顧客台帳.ods in LibreOffice Calc (or Excel), or a page titled "
                "'Salesforce' in a browser, and stay idle 30 s to see the cover (countdown from 20 s); "
                "`mamori agent apps` shows which open windows the rules match"
            )
            demo.say(
                "  - tray > Step away now, or run: mamori agent step-away --config "
                + str(workdir / "agent.toml")
            )
        demo.say("  - watch the device and its events on the dashboard")
        demo.say("Press Ctrl-C to stop.")
        status = 0
        while not stop.wait(1.0):
            for name, proc in demo.children:
                if proc.poll() is not None:
                    demo.say(f"the {name} exited (status {proc.returncode}); see {workdir / (name + '.log')}")
                    status = 1
                    stop.set()
        return status
    finally:
        demo.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
