"""`mamori package msi` built with the real wixl and read back with msiinfo/msiextract: the tables hold what
docs/admin-guide.md ("Windows") says. The payload is a stand-in folder: the frozen agent is built on Windows."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from agent.cli import main
from tests.harness.policies import policy_keys, policy_toml

pytestmark = pytest.mark.apps

UPGRADE_CODE = "{6D1B2C1E-8F5A-4C1E-9A53-3B1B8F0D2A41}"
TASK_NS = {"t": "http://schemas.microsoft.com/windows/2004/02/mit/task"}


@pytest.fixture(scope="module")
def tools() -> None:
    missing = [t for t in ("wixl", "msiinfo", "msiextract") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (.ci/run installs msitools and wixl)")


def _payload(tmp: Path) -> Path:
    payload = tmp / "frozen"
    (payload / "_internal").mkdir(parents=True, exist_ok=True)
    for name in ("mamori.exe", "mamoriw.exe", "_internal/python311.dll"):
        (payload / name).write_bytes(b"stand-in for " + name.encode())
    return payload


def _build(tmp: Path, *extra: str, revision: str = "1") -> Path:
    keys = policy_keys(tmp / f"keys-{revision}") if not (tmp / "keys-1").exists() else None
    pub = (tmp / "keys-1" / "policy-signing.pub") if keys is None else keys.public_path
    bundle = tmp / "acme.dsse.json"
    if keys is not None:
        bundle.write_bytes(keys.sign(policy_toml(policy_id="acme", version=1)))
    argv = [
        "package", "msi", "--server", "https://mamori.example.co.jp", "--enroll-secret", "mes_baked_secret_1",
        "--group", "sales", "--trusted-key", str(pub), "--policy", str(bundle), "--payload", str(_payload(tmp)),
        "--revision", revision, "-o", str(tmp / f"out-{revision}"), *extra,
    ]  # fmt: skip
    assert main(argv) == 0
    (msi,) = (tmp / f"out-{revision}").glob("*.msi")
    return msi


def table(msi: Path, name: str) -> list[list[str]]:
    out = subprocess.run(
        ["msiinfo", "export", str(msi), name], capture_output=True, text=True, check=True
    ).stdout
    return [line.split("\t") for line in out.splitlines()[3:]]


def test_msi_tables_hold_the_documented_install(tools: None, tmp_path: Path) -> None:
    msi = _build(tmp_path)
    props = dict((row[0], row[1]) for row in table(msi, "Property"))
    assert props["SERVER_URL"] == "https://mamori.example.co.jp"
    assert props["ENROLL_SECRET"] == "mes_baked_secret_1"
    assert props["GROUP"] == "sales"
    assert props["ALLUSERS"] == "1"  # per-machine
    assert props["UpgradeCode"].upper() == UPGRADE_CODE
    assert props["ProductVersion"] == "0.1.1"
    registry = {(row[2], row[3]): row[4] for row in table(msi, "Registry")}
    assert (
        registry[("SOFTWARE\\Mamori", "ServerUrl")] == "[SERVER_URL]"
    )  # the install-time value, not the baked
    assert registry[("SOFTWARE\\Mamori", "Group")] == "[GROUP]"
    actions = {row[0]: row for row in table(msi, "CustomAction")}
    assert '/Create /F /TN "Mamori\\Agent" /XML' in actions["CreateLogonTask"][3]
    assert int(actions["CreateLogonTask"][1]) & 0x0800  # no impersonation: runs as SYSTEM
    assert '"[SERVER_URL]" "[ENROLL_SECRET]" "[GROUP]"' in actions["EnrollMachine"][3]
    assert "/Delete" in actions["DeleteLogonTask"][3]
    sequence = {row[0]: row for row in table(msi, "InstallExecuteSequence")}
    assert sequence["DeleteLogonTask"][1] == 'REMOVE="ALL" AND NOT UPGRADINGPRODUCTCODE'
    assert "RemoveExistingProducts" in sequence
    upgrade = table(msi, "Upgrade")
    assert {row[0] for row in upgrade} == {UPGRADE_CODE}
    files = {row[2]: row for row in table(msi, "File")}
    for name in ("mamori.exe", "mamoriw.exe", "python311.dll", "agent.toml", "machine.toml", "policy.dsse.json",
                 "enroll.cmd", "mamori-agent-task.xml"):  # fmt: skip
        assert name in files, name
    assert any(name.endswith(".pub") for name in files)

    extracted = tmp_path / "extracted"
    subprocess.run(["msiextract", "-C", str(extracted), str(msi)], capture_output=True, check=True)
    (agent_toml,) = extracted.rglob("agent.toml")
    config = tomllib.loads(agent_toml.read_text(encoding="utf-8"))
    assert config["server"] == "https://mamori.example.co.jp"
    assert config["trusted_keys"][0].startswith("%ProgramData%/Mamori/keys/")
    assert config["policy_bundle"] == "%ProgramData%/Mamori/policy.dsse.json"
    (task_xml,) = extracted.rglob("mamori-agent-task.xml")
    assert task_xml.read_bytes()[:2] in (b"\xff\xfe", b"\xfe\xff")  # UTF-16, as schtasks /XML wants
    task = ET.fromstring(task_xml.read_text(encoding="utf-16"))
    assert task.find("t:Triggers/t:LogonTrigger", TASK_NS) is not None
    assert task.findtext("t:Principals/t:Principal/t:GroupId", namespaces=TASK_NS) == "S-1-5-32-545"
    assert task.findtext("t:Principals/t:Principal/t:RunLevel", namespaces=TASK_NS) == "LeastPrivilege"
    assert task.findtext("t:Settings/t:RestartOnFailure/t:Count", namespaces=TASK_NS) == "999"
    assert task.findtext("t:Settings/t:ExecutionTimeLimit", namespaces=TASK_NS) == "PT0S"
    assert "mamoriw.exe" in (task.findtext("t:Actions/t:Exec/t:Command", namespaces=TASK_NS) or "")


def test_a_new_revision_upgrades_in_place_with_the_same_components(tools: None, tmp_path: Path) -> None:
    first, second = _build(tmp_path, revision="1"), _build(tmp_path, revision="2")
    props = [dict((r[0], r[1]) for r in table(m, "Property")) for m in (first, second)]
    assert props[0]["UpgradeCode"] == props[1]["UpgradeCode"]
    assert props[0]["ProductCode"] != props[1]["ProductCode"]
    assert props[1]["ProductVersion"] == "0.1.2" > props[0]["ProductVersion"]
    # same component GUIDs for the same files: an edited agent.toml is kept, never removed mid-upgrade
    guids = [{r[0]: r[1] for r in table(m, "Component")} for m in (first, second)]
    assert guids[0] == guids[1]


def test_without_a_payload_the_error_names_the_fix(
    tools: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = policy_keys(tmp_path / "k")
    argv = ["package", "msi", "--server", "https://m.example", "--enroll-secret", "mes_12345678",
            "--trusted-key", str(keys.public_path), "-o", str(tmp_path / "out")]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--payload" in err and "build-agent.ps1" in err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
