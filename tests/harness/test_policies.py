"""tests.harness.policies: what it writes loads with the real loaders, and only the checks asked for are on."""

from __future__ import annotations

import re
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.config import AgentConfig, load_config
from policy.keys import load_trusted_keys
from policy.load import load_policy
from policy.model import (
    Device,
    DeviceCheck,
    DnsCanary,
    Network,
    Plaintext,
    Policy,
    ScreenLockCheck,
    TlsEndpoint,
    Vpn,
    Wifi,
)
from policy.verify import verify_bundle
from tests.harness.policies import policy_keys, policy_toml, write_agent_config, write_policy

ALL_OFF = Policy(
    schema=1,
    id="test",
    version=1,
    network=Network(vpn=Vpn(mode="off"), wifi=Wifi(mode="off"), plaintext=Plaintext(mode="off")),
    device=Device(DeviceCheck("off"), DeviceCheck("off"), ScreenLockCheck(mode="off")),
)


def test_every_check_is_off_unless_asked() -> None:
    assert load_policy(policy_toml().encode(), schema=True) == ALL_OFF


def test_only_the_checks_given_are_on_with_their_fields() -> None:
    text = policy_toml(
        policy_id="only-vpn",
        version=7,
        vpn={"mode": "block", "interfaces": ["tun*"], "dns_canary": {"name": "canary.corp.test"}},
        tls=[{"url": "https://crm.example/", "mode": "warn", "ca": Path("/etc/ca.pem")}],
        device={"screen_lock": {"mode": "report", "max_timeout": "5m"}},
    )
    policy = load_policy(text.encode(), schema=True)
    assert policy.id == "only-vpn" and policy.version == 7
    assert policy.network == Network(
        vpn=Vpn(mode="block", interfaces=("tun*",), dns_canary=DnsCanary("canary.corp.test")),
        wifi=Wifi(mode="off"),
        tls=(TlsEndpoint("https://crm.example/", mode="warn", ca="/etc/ca.pem"),),
        plaintext=Plaintext(mode="off"),
    )
    assert policy.device == Device(
        DeviceCheck("off"), DeviceCheck("off"), ScreenLockCheck(mode="report", max_timeout=300.0)
    )


def test_other_sections_and_awkward_strings_round_trip() -> None:
    title = 'a "quoted" \\d+ 顧客台帳\t\x7f'
    text = policy_toml(
        presence={"warn_after": "1s", "protect_after": "2s", "lock_after": "1h", "hotkey": ""},
        customer_apps=[
            {"name": "crm", "processes": ["chrome", "firefox*"]},
            {"name": "ledger", "title": title},
        ],
        enforcement={"grace": "0s"},
        extra={
            "expires": datetime(2030, 1, 1, tzinfo=UTC),
            "acknowledgement": {"required": True, "text": {"ja": "同意します", "en": "I agree"}},
            "messages": {"en": {"remedy.vpn": "Connect."}},
            "network": {"wifi": {"untrusted": "block"}},  # merged into the generated table
        },
    )
    policy = load_policy(text.encode(), schema=True)
    assert (policy.presence.warn_after, policy.presence.hotkey, policy.enforcement.grace) == (1.0, "", 0.0)
    assert [a.name for a in policy.customer_apps] == ["crm", "ledger"]
    assert policy.customer_apps[1].title == re.compile(title, re.IGNORECASE)
    assert policy.expires == datetime(2030, 1, 1, tzinfo=UTC)
    assert policy.acknowledgement.required and policy.acknowledgement.text.ja == "同意します"
    assert policy.messages.en == {"remedy.vpn": "Connect."}
    assert policy.network.wifi == Wifi(untrusted="block", mode="off")


def test_none_leaves_a_section_to_the_model_default() -> None:
    policy = load_policy(policy_toml(vpn=None, device=None).encode())
    assert policy.network.vpn == Vpn() and policy.device == Device()
    assert policy.network.wifi.mode == "off"
    partial = load_policy(policy_toml(device={"firewall": None}).encode())
    assert partial.device.firewall == DeviceCheck() and partial.device.disk_encryption.mode == "off"


def test_mistakes_are_refused() -> None:
    with pytest.raises(ValueError, match="give the check's mode"):
        policy_toml(vpn={"interfaces": ["tun*"]})
    with pytest.raises(ValueError, match="unknown check"):
        policy_toml(device={"disk": "warn"})


def test_write_policy(tmp_path: Path) -> None:
    path = write_policy(tmp_path / "p.toml", policy_id="written", wifi="warn")
    policy = load_policy(path.read_bytes())
    assert policy.id == "written" and policy.network.wifi.mode == "warn" and policy.network.vpn.mode == "off"


def test_agent_config_round_trips_through_load_config(tmp_path: Path) -> None:
    odd = tmp_path / 'state "dir" \\ x'
    config = write_agent_config(
        tmp_path,
        state_dir=odd,
        trusted_keys=[tmp_path / "a.pub", tmp_path / "b.pub"],
        policy_bundle=tmp_path / "policy.dsse.json",
        server="https://mamori.example",
        server_ca=tmp_path / "ca.pem",
        tray=False,
        lock_command=["loginctl", "lock-session"],
        language="ja",
    )
    assert config == tmp_path / "agent.toml"
    assert load_config(config) == AgentConfig(
        state_dir=odd,
        trusted_keys=(tmp_path / "a.pub", tmp_path / "b.pub"),
        policy_bundle=tmp_path / "policy.dsse.json",
        server="https://mamori.example",
        server_ca=tmp_path / "ca.pem",
        tray=False,
        lock_command=("loginctl", "lock-session"),
        language="ja",
        source=config,
    )
    (tmp_path / "minimal").mkdir()
    minimal = write_agent_config(tmp_path / "minimal", state_dir=tmp_path)
    assert tomllib.loads(minimal.read_text(encoding="utf-8")) == {
        "state_dir": str(tmp_path)
    }  # None: not written


def test_policy_keys_sign_what_the_verifier_accepts(tmp_path: Path) -> None:
    keys = policy_keys(tmp_path / "keys")
    assert keys.private_path.name == "policy-signing.key" and keys.public_path.name == "policy-signing.pub"
    text = policy_toml(version=3)
    verified = verify_bundle(keys.sign(text), load_trusted_keys([keys.public_path]), datetime.now(UTC))
    assert verified.payload == text.encode() and verified.version == 3
