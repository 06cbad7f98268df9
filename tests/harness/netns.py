"""Network namespaces, veth pairs and an OpenVPN (TLS, tiny PKI) tunnel between two namespaces.

Everything lives inside namespaces this module creates (unique names, private test subnets) and is removed in
``close()``; no address outside loopback and these namespaces is ever contacted.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.harness.pki import TestCA

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable

UNDERLAY_SRV = "172.31.251.1"
UNDERLAY_CLI = "172.31.251.2"
TUN_SRV = "10.232.0.1"
TUN_CLI = "10.232.0.2"
VPN_PORT = 11940
PLAIN_PORT = 80  # a real plaintext HTTP port, bindable as root inside our namespace
TLS_PORT = 443


def require_netns() -> None:
    """Skip (with the reason) where namespaces cannot be made; conftest turns that into a CI failure."""
    if os.geteuid() != 0:
        pytest.skip("network namespace tests need root")
    if shutil.which("ip") is None:
        pytest.skip("iproute2 (ip) is not installed")


def sh(*argv: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


class Netns:
    def __init__(self, role: str) -> None:
        self.name = f"mamori-{role}-{uuid.uuid4().hex[:8]}"
        sh("ip", "netns", "add", self.name)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.etc = Path("/etc/netns") / self.name
        self.exec("ip", "link", "set", "lo", "up")

    def set_resolver(self, nameserver: str) -> None:
        """``ip netns exec`` bind-mounts /etc/netns/NAME/* over /etc: this namespace's own resolv.conf."""
        self.etc.mkdir(parents=True, exist_ok=True)
        (self.etc / "resolv.conf").write_text(f"nameserver {nameserver}\noptions timeout:1 attempts:1\n")

    def argv(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def exec(self, *argv: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess[str]:
        return sh(*self.argv(*argv), check=check, timeout=timeout)

    def popen(self, *argv: str, log: Path | None = None) -> subprocess.Popen[bytes]:
        out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(self.argv(*argv), stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
        sh("ip", "netns", "del", self.name, check=False)
        shutil.rmtree(self.etc, ignore_errors=True)


def veth_pair(a: Netns, a_addr: str, b: Netns, b_addr: str, prefix: int = 30) -> tuple[str, str]:
    a.exec("ip", "link", "add", "veth0", "type", "veth", "peer", "name", "veth1", "netns", b.name)
    a.exec("ip", "addr", "add", f"{a_addr}/{prefix}", "dev", "veth0")
    b.exec("ip", "addr", "add", f"{b_addr}/{prefix}", "dev", "veth1")
    a.exec("ip", "link", "set", "veth0", "up")
    b.exec("ip", "link", "set", "veth1", "up")
    return "veth0", "veth1"


def wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class VpnLab:
    """Two namespaces joined by a veth "internet", with an OpenVPN TLS tunnel (tun0 on both sides)."""

    def __init__(self, workdir: Path) -> None:
        if shutil.which("openvpn") is None:
            pytest.skip("openvpn is not installed")
        self.dir = workdir
        self.server = Netns("vpnsrv")
        self.client = Netns("vpncli")
        self.client_proc: subprocess.Popen[bytes] | None = None
        self.server_proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        try:
            veth_pair(self.server, UNDERLAY_SRV, self.client, UNDERLAY_CLI)
            ca = TestCA(workdir, "Mamori VPN Test CA")
            self.ca = ca.path
            self.server_leaf = ca.issue("vpn-server", hosts=("vpn-server",))
            self.client_leaf = ca.issue("vpn-client", hosts=("vpn-client",), usage="client")
            self.services = self.server.popen(
                PYTHON,
                "-m",
                "tests.harness.netns_servers",
                str(PLAIN_PORT),
                str(TLS_PORT),
                str(self.server_leaf.cert),
                str(self.server_leaf.key),
                log=workdir / "servers.log",
            )
            wait_for(lambda: b"ready" in (workdir / "servers.log").read_bytes(), 10, "the test servers")
            self.connect()
        except BaseException:
            self.close()
            raise

    def _client_log(self) -> Path:
        return self.dir / "openvpn-client.log"

    def _common(self) -> list[str]:
        return [
            "--dev",
            "tun0",
            "--dev-type",
            "tun",
            "--proto",
            "udp",
            "--ca",
            str(self.ca),
            "--data-ciphers",
            "AES-256-GCM",
            "--disable-dco",
            "--ping",
            "1",
            "--verb",
            "3",
        ]

    def _start_server(self) -> None:
        # A fresh server per connection: an OpenVPN point-to-point server keeps the old peer's session after
        # the client is killed, and a new client is then sometimes refused ("Unroutable control packet").
        self.starts += 1
        self.server_proc = self.server.popen(
            "openvpn",
            *self._common(),
            "--tls-server",
            "--dh",
            "none",
            "--local",
            UNDERLAY_SRV,
            "--lport",
            str(VPN_PORT),
            "--cert",
            str(self.server_leaf.cert),
            "--key",
            str(self.server_leaf.key),
            "--ifconfig",
            TUN_SRV,
            TUN_CLI,
            "--ping-restart",
            "30",
            log=self.dir / f"openvpn-server-{self.starts}.log",
        )
        server_log = self.dir / f"openvpn-server-{self.starts}.log"
        wait_for(lambda: b"link local (bound)" in server_log.read_bytes(), 10, "the OpenVPN server socket")

    def connect(self) -> None:
        """Start the server (if needed) and the client; wait until the tunnel carries traffic."""
        if self.server_proc is None:
            self._start_server()
        log = self._client_log()
        log.write_bytes(b"")
        self.client_proc = self.client.popen(
            "openvpn",
            *self._common(),
            "--tls-client",
            "--remote",
            UNDERLAY_SRV,
            str(VPN_PORT),
            "--nobind",
            "--remote-cert-tls",
            "server",
            "--cert",
            str(self.client_leaf.cert),
            "--key",
            str(self.client_leaf.key),
            "--ifconfig",
            TUN_CLI,
            TUN_SRV,
            "--ping-restart",
            "30",
            log=log,
        )
        wait_for(lambda: b"Initialization Sequence Completed" in log.read_bytes(), 20, "the OpenVPN client")
        probe = f"import socket; socket.create_connection(({TUN_SRV!r}, {PLAIN_PORT}), timeout=1).close()"
        wait_for(
            lambda: self.client.exec(PYTHON, "-c", probe, check=False).returncode == 0,
            10,
            "a TCP connection through the tunnel",
        )

    def disconnect(self) -> float:
        """Stop the client (the worker disconnects / the VPN client dies); returns time.monotonic() at the stop."""
        assert self.client_proc is not None
        t0 = time.monotonic()
        self.client_proc.send_signal(signal.SIGTERM)
        self.client_proc.wait(timeout=10)
        self.client.procs.remove(self.client_proc)
        self.client_proc = None
        if self.server_proc is not None:
            self.server_proc.send_signal(signal.SIGTERM)
            self.server_proc.wait(timeout=10)
            self.server.procs.remove(self.server_proc)
            self.server_proc = None
        return t0

    def close(self) -> None:
        self.client.close()
        self.server.close()
