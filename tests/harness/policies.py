"""Policies, agent.toml files and signing keys for tests and benchmarks: one writer instead of pasted TOML.

``policy_toml`` turns every posture check off unless a test asks for it, so the outcome does not depend on the
machine the test runs on. A check is given as its mode (``vpn="block"``) or as its table, mode included
(``vpn={"mode": "block", "interfaces": ["tun*"]}``); ``None`` leaves the section out (the model's default).
Field names are those of policy/model.py (docs/policy-reference.md); policy/load.py decides what is valid.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from policy.keys import generate_keypair, load_private_key
from policy.model import Mode
from policy.signing import sign_policy

Table = Mapping[str, object]
Check = Mode | Table | None
DEVICE_CHECKS = ("disk_encryption", "firewall", "screen_lock")

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def policy_toml(
    *,
    policy_id: str = "test",
    version: int = 1,
    vpn: Check = "off",
    wifi: Check = "off",
    plaintext: Check = "off",
    tls: Sequence[Table] = (),
    device: Mode | Mapping[str, Check] | None = "off",
    customer_apps: Sequence[Table] = (),
    presence: Table | None = None,
    enforcement: Table | None = None,
    extra: Table | None = None,
) -> str:
    """Policy TOML with every posture check off except those given.

    ``device`` is one mode for its three checks, or a table keyed by check name (the others off).
    ``extra`` holds further top-level keys and tables (``reporting``, ``acknowledgement``...), merged last.
    """
    network: dict[str, object] = {}
    for name, check in (("vpn", vpn), ("wifi", wifi), ("plaintext", plaintext)):
        if check is not None:
            network[name] = _check(f"network.{name}", check)
    if tls:
        network["tls"] = list(tls)
    doc: dict[str, object] = {"schema": 1, "id": policy_id, "version": version}
    if presence is not None:
        doc["presence"] = presence
    if customer_apps:
        doc["customer_apps"] = list(customer_apps)
    if network:
        doc["network"] = network
    if device is not None:
        doc["device"] = _device(device)
    if enforcement is not None:
        doc["enforcement"] = enforcement
    return toml_document(_merge(doc, extra or {}))


def write_policy(path: Path, **fields: Any) -> Path:
    """Write ``policy_toml(**fields)`` to ``path`` (UTF-8) and return ``path``."""
    path.write_text(policy_toml(**fields), encoding="utf-8")
    return path


def agent_config_toml(
    *,
    state_dir: Path,
    trusted_keys: Sequence[Path] = (),
    policy_bundle: Path | None = None,
    server: str | None = None,
    server_ca: Path | None = None,
    tray: bool | None = None,
    lock_command: Sequence[str] | None = None,
    language: str | None = None,
) -> str:
    """agent.toml (agent/config.py); keys left as None, and no trusted keys, are not written."""
    values: dict[str, object | None] = {
        "state_dir": state_dir,
        "trusted_keys": list(trusted_keys) or None,
        "policy_bundle": policy_bundle,
        "server": server,
        "server_ca": server_ca,
        "tray": tray,
        "lock_command": None if lock_command is None else list(lock_command),
        "language": language,
    }
    return toml_document({key: value for key, value in values.items() if value is not None})


def write_agent_config(
    directory: Path,
    *,
    state_dir: Path,
    trusted_keys: Sequence[Path] = (),
    policy_bundle: Path | None = None,
    server: str | None = None,
    server_ca: Path | None = None,
    tray: bool | None = None,
    lock_command: Sequence[str] | None = None,
    language: str | None = None,
) -> Path:
    """Write ``directory``/agent.toml (see ``agent_config_toml``) and return its path."""
    path = directory / "agent.toml"
    text = agent_config_toml(
        state_dir=state_dir,
        trusted_keys=trusted_keys,
        policy_bundle=policy_bundle,
        server=server,
        server_ca=server_ca,
        tray=tray,
        lock_command=lock_command,
        language=language,
    )
    path.write_text(text, encoding="utf-8")
    return path


@dataclass(frozen=True)
class PolicyKeys:
    """A policy-signing key pair on disk, as ``mamori policy keygen`` writes it."""

    private_key: Ed25519PrivateKey
    private_path: Path
    public_path: Path

    def sign(self, policy: str | bytes) -> bytes:
        """The DSSE bundle of ``policy`` (its exact bytes; a str is encoded as UTF-8)."""
        return sign_policy(policy.encode("utf-8") if isinstance(policy, str) else policy, self.private_key)


def policy_keys(directory: Path) -> PolicyKeys:
    """Generate directory/policy-signing.key and .pub (policy.keys.generate_keypair)."""
    private_path, public_path = generate_keypair(directory)
    return PolicyKeys(load_private_key(private_path), private_path, public_path)


# --- a small TOML writer: tables, arrays of tables, strings, numbers, booleans, date-times, paths -------------


def toml_document(doc: Table) -> str:
    """``doc`` as TOML: scalars first, then each table, an array of tables as repeated ``[[...]]`` headers."""
    lines: list[str] = []
    _table(lines, (), doc)
    return "\n".join(lines) + "\n"


def _check(path: str, check: Mode | Table) -> Table:
    if isinstance(check, str):
        return {"mode": check}
    if "mode" not in check:
        raise ValueError(f"{path}: give the check's mode in its table, e.g. {{'mode': 'block', ...}}")
    return check


def _device(device: Mode | Mapping[str, Check]) -> Table:
    if isinstance(device, str):
        return {name: {"mode": device} for name in DEVICE_CHECKS}
    unknown = sorted(set(device) - set(DEVICE_CHECKS))
    if unknown:
        raise ValueError(
            f"device: unknown check(s) {', '.join(unknown)}; expected {', '.join(DEVICE_CHECKS)}"
        )
    out: dict[str, object] = {}
    for name in DEVICE_CHECKS:
        check = device.get(name, "off")
        if check is not None:
            out[name] = _check(f"device.{name}", check)
    return out


def _merge(base: Table, extra: Table) -> dict[str, object]:
    out = dict(base)
    for key, value in extra.items():
        current = out.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            out[key] = _merge(current, value)
        else:
            out[key] = value
    return out


def _is_table_array(value: object) -> bool:
    return isinstance(value, list | tuple) and bool(value) and all(isinstance(v, Mapping) for v in value)


def _table(lines: list[str], path: tuple[str, ...], table: Table, header: str = "[{}]") -> None:
    scalars = {k: v for k, v in table.items() if not isinstance(v, Mapping) and not _is_table_array(v)}
    if path and (scalars or not table or header == "[[{}]]"):  # no header for a table of tables only
        lines.append(header.format(".".join(_key(p) for p in path)))
    lines.extend(f"{_key(key)} = {_value(value)}" for key, value in scalars.items())
    for key, value in table.items():
        if isinstance(value, Mapping):
            _table(lines, (*path, key), value)
        elif _is_table_array(value):
            for item in value:  # type: ignore[attr-defined]
                _table(lines, (*path, key), item, "[[{}]]")


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _string(key)


def _string(text: str) -> str:
    # JSON string escapes are TOML basic-string escapes; TOML also wants DEL escaped (TOML 1.0, "String").
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, Path):
        return _string(str(value))
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as a TOML value")
