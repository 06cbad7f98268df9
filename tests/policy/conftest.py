"""Fixtures for the policy tests: keys, a fixed 'now', and a helper that writes small policies."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from policy.keys import TrustedKey

NOW = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)
EXAMPLES = Path(__file__).resolve().parents[2] / "policy" / "examples"


def policy_bytes(version: int = 1, extra: str = "", policy_id: str = "acme-test") -> bytes:
    """A minimal valid policy; ``extra`` is appended verbatim (tables, keys...)."""
    return f'schema = 1\nid = "{policy_id}"\nversion = {version}\n{extra}'.encode()


@pytest.fixture
def signing_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def other_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def trusted(signing_key: Ed25519PrivateKey) -> list[TrustedKey]:
    return [TrustedKey.from_public_key(signing_key.public_key(), "test")]


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str | bytes], Path]:
    def _write(name: str, content: str | bytes) -> Path:
        path = tmp_path / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    return _write
