"""core.ocsf: records checked against the official compiled OCSF schema, rule by rule, and the shipped copy of
the schema is the one its PROVENANCE.txt names."""

from __future__ import annotations

import copy
import hashlib
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import pytest

from agent.report.events import build_record, device_type_of_chassis, rule_context, stamp_device
from agent.report.stream import AgentEvent, Kind
from core import ocsf
from core.records import OCSF_VERSION, compliance_standards, validate_record

NOW = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)


def record(kind: Kind, data: dict[str, Any] | None = None) -> dict[str, Any]:
    built = build_record(AgentEvent(kind, NOW, data or {}), rule_context(["crm"]))
    built["metadata"]["sequence"] = 1
    return stamp_device(built, "dabc123", type_id=3)


def test_the_claimed_release_is_current_and_shipped_with_its_provenance() -> None:
    assert OCSF_VERSION == ocsf.CLAIMED_VERSION
    assert tuple(int(x) for x in OCSF_VERSION.split(".")) >= (1, 6, 0)
    assert ocsf.shipped_versions() == [OCSF_VERSION]
    folder = resources.files("core").joinpath("ocsf_schema")
    digest = hashlib.sha256(folder.joinpath(f"{OCSF_VERSION}.json.gz").read_bytes()).hexdigest()
    provenance = folder.joinpath("PROVENANCE.txt").read_text()
    assert f"{digest}  " in provenance and f"tag {OCSF_VERSION} commit" in provenance
    assert ocsf.load_schema().version == OCSF_VERSION
    assert {2003, 3002, 4014, 5019} <= set(ocsf.load_schema().classes)


def test_a_complete_record_conforms() -> None:
    assert ocsf.conformance(record(Kind.SESSION_LOCKED, {"method": "logind"})) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda r: r.pop("user"), "user: required by class Authentication"),
        (
            lambda r: r.pop("service"),
            "(top): class Authentication needs at least one of service, dst_endpoint",
        ),
        (lambda r: r["metadata"].update(profiles=[]), "device: belongs to profile host"),
        (lambda r: r["metadata"].update(profiles=["host", "nope"]), "metadata.profiles: nope not a profile"),
        (lambda r: r["device"].pop("type_id"), "device.type_id: required by object device"),
        (lambda r: r["device"].update(type_id=42), "device.type_id: 42 is not one of the enum values"),
        (
            lambda r: r.update(severity="High"),
            "severity: must be 'Informational', the caption of severity_id 1",
        ),
        (lambda r: r.update(time="yesterday"), "time: must be of type timestamp_t"),
        (lambda r: r.update(time=2**63), "time: must be of type timestamp_t"),
        (lambda r: r.update(window={"x": 1}), "window: not an attribute of class Authentication"),
        (lambda r: r["metadata"].pop("product"), "metadata.product: required by object metadata"),
        (lambda r: r["metadata"].update(version="1.1.0"), "metadata.version: must claim OCSF 1.8.0"),
        (lambda r: r.update(type_uid=300201), "type_uid: must be class_uid * 100 + activity_id"),
        (lambda r: r.update(category_uid=2), "category_uid: 2 is not one of the enum values"),
        (lambda r: r["user"].update(type_id="User"), "user.type_id: must be of type integer_t"),
        (lambda r: r["metadata"].update(profiles="host"), "metadata.profiles: must be an array"),
    ],
)
def test_each_rule_of_the_schema_is_checked(change: Any, expected: str) -> None:
    broken = record(Kind.SESSION_LOCKED, {"method": "logind"})
    change(broken)
    problems = ocsf.conformance(broken)
    assert any(p.startswith(expected) for p in problems), problems


def test_class_specific_rules() -> None:
    finding = record(Kind.POSTURE_FINDING, {"check_id": "vpn", "status": "fail", "mode": "block"})
    assert ocsf.conformance(finding) == []
    no_compliance = copy.deepcopy(finding)
    del no_compliance["compliance"]
    assert "compliance: required by class Compliance Finding in OCSF 1.8.0" in ocsf.conformance(no_compliance)
    bad_status = copy.deepcopy(finding)
    bad_status["compliance"]["status"] = "fail"
    assert any(p.startswith("compliance.status: must be 'Fail'") for p in ocsf.conformance(bad_status))
    tunnel = record(Kind.VPN_DOWN, {"interface": "tun0"})
    assert ocsf.conformance(tunnel) == []
    del tunnel["tunnel_interface"]
    assert any("needs at least one of connection_info" in p for p in ocsf.conformance(tunnel))
    state = record(Kind.AGENT_STARTED)
    del state["device"]
    assert "device: required by class Device Config State Change in OCSF 1.8.0" in ocsf.conformance(state)


def test_a_class_missing_from_the_release_is_named() -> None:
    # Tunnel Activity 4014 first appeared in OCSF 1.2.0: a schema without it rejects the class outright.
    schema = ocsf.load_schema()
    older = ocsf.Schema(
        "1.1.0",
        {k: v for k, v in schema.classes.items() if k != 4014},
        schema.objects,
        schema.profiles,
        schema.types,
    )
    vpn = record(Kind.VPN_UP, {"interface": "tun0"})
    vpn["metadata"]["version"] = "1.1.0"
    assert ocsf.conformance(vpn, older) == ["class_uid: 4014 is not a class of OCSF 1.1.0"]


def test_the_record_contract_includes_ocsf_conformance() -> None:
    complete = record(Kind.AGENT_STARTED)
    assert validate_record(complete) == []
    complete["device"]["type_id"] = 77
    assert any(p.startswith("device.type_id") for p in validate_record(complete))


def test_compliance_standards_name_the_policy_and_the_guideline_item() -> None:
    assert compliance_standards("vpn.routes") == [
        "Mamori endpoint policy",
        "MIC Telework Security Guideline 5th ed.: Communications protection and encryption",
    ]
    assert compliance_standards("tls:intranet")[1].endswith("Communications protection and encryption")
    assert compliance_standards("device.disk_encryption")[1].endswith("Data protection")
    assert compliance_standards("protection.applied")[1].endswith("Physical security")
    assert compliance_standards("device.something_new") == ["Mamori endpoint policy"]


def test_device_type_comes_from_the_chassis() -> None:
    assert device_type_of_chassis(10) == 3  # Notebook -> Laptop
    assert device_type_of_chassis(3) == 2  # Desktop
    assert device_type_of_chassis(None) == 0 and device_type_of_chassis(2) == 0


@pytest.mark.parametrize(
    ("type_name", "value", "problem"),
    [
        ("ip_t", "192.0.2.10", None),
        ("ip_t", "not an address", "does not match the pattern of ip_t"),
        ("subnet_t", "10.0.0.0/8", None),
        ("subnet_t", "1" * 43, "longer than 42 characters (subnet_t)"),
        ("port_t", 443, None),
        ("port_t", 70000, "outside [0, 65535] (port_t)"),
        ("port_t", "443", "must be of type port_t"),
        ("mac_t", "00:1a:2b:3c:4d:5e", None),
        ("mac_t", "00-1a-2b", "does not match the pattern of mac_t"),
        ("boolean_t", True, None),
        ("boolean_t", 1, "must be of type boolean_t"),
        ("integer_t", 2**31, "must be of type integer_t"),
        ("nonsense_t", 1, "unknown type nonsense_t"),
    ],
)
def test_each_type_rule_of_the_release_is_checked(type_name: str, value: object, problem: str | None) -> None:
    """The rules a release gives its types (pattern, length, range, parent type), read from the compiled
    schema once and checked on every value."""
    from core.ocsf import _Checker

    for _ in range(2):  # the second time from the rules read the first time
        checker = _Checker(ocsf.load_schema(), frozenset())
        ok = checker.check_type(value, type_name, "v")
        assert ok is (problem is None)
        assert checker.problems == ([] if problem is None else [f"v: {problem}"])
