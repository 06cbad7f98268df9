"""Plaintext connections of customer-app processes (policy ``[network.plaintext]``).

Only processes whose name matches a ``[[customer_apps]]`` rule's ``processes`` globs are looked at (privacy:
the agent does not inventory other programs' connections). A finding names the rule and the port, never the
remote address or URL. Connections to loopback are ignored: they do not leave the PC (local proxies, test
servers). psutil is asked per process, which works unprivileged for the worker's own processes on every OS.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from agent.decide.match import process_matches
from agent.i18n import Translator
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
    """Established inet connections of processes that match a customer-app rule (psutil)."""
    import psutil

    out: list[Connection] = []
    for proc in psutil.process_iter(["name"]):
        name = proc.info.get("name") or ""
        if not name or rule_for(name) is None:
            continue
        try:
            conns = proc.net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        except psutil.AccessDenied:
            logger.debug("connections of pid %d not readable", proc.pid)
            continue
        for c in conns:
            if c.raddr:
                out.append(Connection(proc.pid, name, str(c.raddr.ip), int(c.raddr.port), str(c.status)))
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
