"""The agent's policy source (agent.policy_source.PolicySource) trusts only what a trusted key signed."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest

from agent.config import AgentConfig
from agent.policy_source import PolicySource
from core.clock import FakeClock
from policy.errors import StoreError
from policy.keys import load_trusted_keys
from policy.store import TrustedStore
from tests.harness.policies import policy_keys
from tests.policy.conftest import NOW, policy_bytes


def _setup(tmp_path: Path) -> tuple[AgentConfig, TrustedStore]:
    keys = policy_keys(tmp_path / "keys")
    config = AgentConfig(state_dir=tmp_path / "state", trusted_keys=(keys.public_path,))
    store = TrustedStore(config.state_dir)
    store.apply(keys.sign(policy_bytes(version=1)), load_trusted_keys([keys.public_path]), NOW)
    return config, store


def test_the_signed_policy_is_provided(tmp_path: Path) -> None:
    config, _ = _setup(tmp_path)
    policy = PolicySource(config, FakeClock()).read()
    assert policy is not None and policy.version == 1


def test_a_hand_edited_trusted_json_is_not_the_policy_in_force(tmp_path: Path) -> None:
    # Before the fix the provider read the store without checking the signature: a worker could replace the
    # bundle inside trusted.json (their own state directory) with any unsigned policy and the agent ran it.
    config, store = _setup(tmp_path)
    payload = policy_bytes(version=2, extra='[presence]\nprotect_after = "24h"\nlock_after = "48h"\n')
    forged = {
        "payload": base64.b64encode(payload).decode(),
        "payloadType": "application/vnd.mamori.policy+toml",
        "signatures": [{"keyid": "f" * 64, "sig": base64.b64encode(b"\0" * 64).decode()}],
    }
    doc = json.loads(store.path.read_bytes())
    doc.update(bundle=json.dumps(forged), sha256=hashlib.sha256(payload).hexdigest(), keyid="f" * 64)
    store.path.write_text(json.dumps(doc))
    assert store.current() is not None  # the file itself is well-formed ...
    with pytest.raises(StoreError, match="no longer signed by a trusted key"):
        PolicySource(
            config, FakeClock()
        ).read()  # ... but the agent refuses it (the runtime keeps its last good policy)
