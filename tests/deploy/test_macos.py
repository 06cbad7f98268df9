"""`mamori package pkg`: the LaunchAgent, PPPC profile and managed preferences parse with plistlib and carry
the keys macOS needs; the scripts are valid sh. The .pkg itself is built on a Mac (build-pkg.sh)."""

from __future__ import annotations

import plistlib
import subprocess
import tomllib
import uuid
from pathlib import Path

import pytest

from deploy.bake import load_inputs
from deploy.macos import write_pkg_sources
from tests.harness.policies import policy_keys, policy_toml

APP = "Library/Application Support/Mamori"


@pytest.fixture
def written(tmp_path: Path) -> Path:
    keys = policy_keys(tmp_path / "keys")
    bundle = tmp_path / "p.dsse.json"
    bundle.write_bytes(keys.sign(policy_toml(policy_id="acme", version=2)))
    from datetime import UTC, datetime

    inputs = load_inputs(
        server="https://mamori.example.co.jp",
        enroll_secret="mes_baked_secret_1",
        group="sales",
        trusted_keys=[keys.public_path],
        policy=bundle,
        server_ca=None,
        now=datetime.now(UTC),
    )
    return write_pkg_sources(inputs, tmp_path / "out", build_wheel=False)


def test_launch_agent_runs_in_every_gui_session_and_is_kept_alive(written: Path) -> None:
    agent = plistlib.loads((written / "root/Library/LaunchAgents/jp.co.mamori.agent.plist").read_bytes())
    assert agent["Label"] == "jp.co.mamori.agent"
    assert agent["RunAtLoad"] is True and agent["KeepAlive"] is True
    assert agent["LimitLoadToSessionType"] == "Aqua"
    assert agent["ProgramArguments"][:3] == [f"/{APP}/venv/bin/mamori", "agent", "run"]
    assert agent["ProgramArguments"][-1] == f"/{APP}/agent.toml"


def test_pppc_profile_grants_what_mdm_may(written: Path) -> None:
    profile = plistlib.loads((written / "mamori-pppc.mobileconfig").read_bytes())
    assert profile["PayloadType"] == "Configuration" and profile["PayloadScope"] == "System"
    uuid.UUID(profile["PayloadUUID"])
    (tcc,) = profile["PayloadContent"]
    assert tcc["PayloadType"] == "com.apple.TCC.configuration-profile-policy"
    services = tcc["Services"]
    (accessibility,) = services["Accessibility"]
    assert accessibility["Allowed"] is True
    assert (
        accessibility["Identifier"] == f"/{APP}/venv/bin/python3"
        and accessibility["IdentifierType"] == "path"
    )
    assert accessibility["CodeRequirement"]
    # Screen Recording cannot be switched on by MDM, only left to a standard user (Apple's PPPC rules)
    assert services["ScreenCapture"][0]["Authorization"] == "AllowStandardUserToSetSystemService"
    assert "Allowed" not in services["ScreenCapture"][0]


def test_managed_preferences_and_baked_configuration(written: Path) -> None:
    prefs = plistlib.loads((written / "jp.co.mamori.agent.managed.plist").read_bytes())
    assert prefs == {
        "ServerURL": "https://mamori.example.co.jp",
        "EnrollSecret": "mes_baked_secret_1",
        "Group": "sales",
    }
    defaults = written / "root" / APP / "defaults"
    config = tomllib.loads((defaults / "agent.toml").read_text())
    assert config["server"] == "https://mamori.example.co.jp"
    assert config["trusted_keys"][0].startswith(f"/{APP}/keys/")
    machine = tomllib.loads((defaults / "machine.toml").read_text())
    assert machine["state_dir"] == f"/{APP}/state"
    assert (defaults / "policy.dsse.json").is_file()
    # configuration is in defaults/, never in its live place: the pkg must not overwrite IT's edits
    assert not (written / "root" / APP / "agent.toml").exists()
    assert (written / "scripts/enrollment.defaults").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("script", ["scripts/postinstall", "build-pkg.sh"])
def test_scripts_are_valid_sh(written: Path, script: str) -> None:
    path = written / script
    assert path.stat().st_mode & 0o111
    subprocess.run(["sh", "-n", str(path)], check=True)
