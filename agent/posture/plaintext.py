"""Plaintext connections of customer-app processes (policy ``[network.plaintext]``).

Only processes whose name matches a ``[[customer_apps]]`` rule's ``processes`` globs are looked at (privacy:
the agent does not inventory other programs' connections). A finding names the rule and the port, never the
remote address or URL. Connections to loopback are ignored: they do not leave the PC (local proxies, test
servers). On Linux the customer-app processes' socket inodes are read from ``/proc/PID/fd`` and the system's
TCP tables are parsed once per check, keeping only the rows whose inode belongs to one of those processes (no
other program's connection is kept or logged); elsewhere, or when that fails, psutil is asked per process.
Both work unprivileged for the worker's own processes.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from agent.decide.match import process_matches
from agent.i18n import Translator
from agent.platform import HAS_PROCFS
from agent.posture.base import CheckResult, PostureError, probe_failed, result
from policy.model import CustomerApp, Plaintext

logger = logging.getLogger(__name__)

CHECK_ID = "plaintext"
RuleFor = Callable[[str], str | None]  # process name -> customer_apps rule name, or None


@dataclass(frozen=True)
class Connection:
    pid: int
    process_name: str
    remote_ip: str
    remote_port: int
    status: str  # psutil status, e.g. "ESTABLISHED"


@dataclass(frozen=True)
class Violation:
    rule: str
    port: int
    count: int


def process_rule_matcher(apps: Sequence[CustomerApp]) -> RuleFor:
    """Name -> first rule whose ``processes`` glob matches (case-insensitive, ".exe" optional).

    Rules without ``processes`` match windows by title only; they are not used here, because matching every
    process would inventory the whole machine.
    """
    rules = [(app.name, app.processes) for app in apps if app.processes]

    def rule_for(process_name: str) -> str | None:
        for rule, globs in rules:
            if any(process_matches(g, process_name) for g in globs):
                return rule
        return None

    return rule_for


def find_violations(
    connections: Iterable[Connection], forbidden_ports: Sequence[int], rule_for: RuleFor
) -> list[Violation]:
    forbidden = set(forbidden_ports)
    counts: dict[tuple[str, int], int] = {}
    for conn in connections:
        if conn.status != "ESTABLISHED" or conn.remote_port not in forbidden:
            continue
        try:
            if ipaddress.ip_address(conn.remote_ip.split("%", 1)[0]).is_loopback:
                continue
        except ValueError:
            continue
        rule = rule_for(conn.process_name)
        if rule is None:
            continue
        counts[(rule, conn.remote_port)] = counts.get((rule, conn.remote_port), 0) + 1
    return [Violation(rule, port, n) for (rule, port), n in sorted(counts.items())]


def customer_app_connections(rule_for: RuleFor) -> list[Connection]:
    """Established inet connections of processes that match a customer-app rule."""
    import psutil

    matching: list[tuple[int, str]] = []
    for proc in psutil.process_iter(["name"]):
        name = proc.info.get("name") or ""
        if name and rule_for(name) is not None:
            matching.append((proc.pid, name))
    if not matching:
        return []
    if HAS_PROCFS:
        try:
            return _linux_connections(matching)
        except (OSError, ValueError) as err:
            logger.debug("/proc/net tables not usable (%s); asking per process", type(err).__name__)
    return _psutil_connections(matching)


def _psutil_connections(matching: Sequence[tuple[int, str]]) -> list[Connection]:
    """Per process through psutil (every OS; on Linux each call re-parses the system's tables)."""
    import psutil

    out: list[Connection] = []
    for pid, name in matching:
        try:
            conns = psutil.Process(pid).net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        except psutil.AccessDenied:
            logger.debug("connections of pid %d not readable", pid)
            continue
        for c in conns:
            if c.raddr:
                out.append(Connection(pid, name, str(c.raddr.ip), int(c.raddr.port), str(c.status)))
    return out


_SOCKET_LINK = "socket:["
_TCP_ESTABLISHED = "01"  # include/net/tcp_states.h


def _socket_inodes(pid: int) -> list[int] | None:
    """Socket inodes of one process from ``/proc/PID/fd``; None when the process is gone or unreadable."""
    fd_dir = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(fd_dir)
    except (FileNotFoundError, ProcessLookupError):
        return None
    except PermissionError:
        logger.debug("connections of pid %d not readable", pid)
        return None
    inodes: list[int] = []
    for fd in fds:
        try:
            link = os.readlink(f"{fd_dir}/{fd}")
        except OSError:
            continue  # closed meanwhile
        if link.startswith(_SOCKET_LINK):
            inodes.append(int(link[len(_SOCKET_LINK) : -1]))
    return inodes


def _decode_address(hex_addr: str, family: int) -> tuple[str, int]:
    """``/proc/net/tcp{,6}`` address ``IP:PORT``: the IP as host-order 32-bit words in hex, the port in hex."""
    ip_hex, port_hex = hex_addr.split(":")
    raw = bytes.fromhex(ip_hex)
    packed = (
        b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4)) if sys.byteorder == "little" else raw
    )
    return socket.inet_ntop(family, packed), int(port_hex, 16)


def _linux_connections(matching: Sequence[tuple[int, str]], proc_net: str = "/proc/net") -> list[Connection]:
    """Established TCP connections of ``matching``'s processes from one pass over ``/proc/net/tcp{,6}``.

    Only rows whose socket inode belongs to a customer-app process are decoded and kept. Raises OSError or
    ValueError when the tables cannot be read or parsed (the caller then asks psutil per process).
    """
    owner: dict[int, tuple[int, str]] = {}
    for pid, name in matching:
        for inode in _socket_inodes(pid) or ():
            owner.setdefault(inode, (pid, name))
    if not owner:
        return []
    out: list[Connection] = []
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        try:
            f = open(f"{proc_net}/{table}", encoding="ascii")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            if table == "tcp6":
                continue  # IPv6 disabled
            raise
        with f:
            header = f.readline().split()
            if header[:2] != ["sl", "local_address"] or header[3:4] != ["st"] or "inode" not in header:
                raise ValueError(f"unexpected /proc/net/{table} header")
            # The data rows have one more column than the header's names ("tx_queue:rx_queue" and
            # "tr:tm->when" are one field each but two names; "timeout" is its own), so index from "inode".
            inode_col = header.index("inode") - 2
            for line in f:
                fields = line.split()
                if len(fields) <= inode_col or fields[3] != _TCP_ESTABLISHED:
                    continue
                proc = owner.get(int(fields[inode_col]))
                if proc is None:
                    continue  # another program's connection: not looked at further
                ip, port = _decode_address(fields[2], family)
                out.append(Connection(proc[0], proc[1], ip, port, "ESTABLISHED"))
    return out


def check_plaintext(
    plaintext: Plaintext,
    rule_for: RuleFor,
    translator: Translator | None = None,
    connections: Callable[[RuleFor], list[Connection]] = customer_app_connections,
) -> CheckResult:
    t = translator
    try:
        found = find_violations(connections(rule_for), plaintext.forbidden_ports, rule_for)
    except (PostureError, OSError) as err:
        return probe_failed(CHECK_ID, plaintext.mode, err, t)
    if found:
        listing = ", ".join(f"{v.rule} -> port {v.port}" for v in found)
        return result(
            CHECK_ID,
            "fail",
            plaintext.mode,
            "posture.plaintext.found",
            remediation_key="posture.remedy.plaintext",
            translator=t,
            connections=listing,
            rules=", ".join(sorted({v.rule for v in found})),
        )
    return result(
        CHECK_ID,
        "pass",
        plaintext.mode,
        "posture.plaintext.none",
        translator=t,
        ports=", ".join(str(p) for p in plaintext.forbidden_ports),
    )
