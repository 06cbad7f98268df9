"""agent.toml: how IT installs the agent on a machine (SPEC.md, "Agent configuration"). Not the policy."""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from agent.platform import OS_NAME, system_config_path
from core.errors import MamoriError

ENV_CONFIG = "MAMORI_CONFIG"
ENV_MACHINE_STATE = "MAMORI_MACHINE_STATE_DIR"


class ConfigError(MamoriError):
    """agent.toml is missing, unreadable or invalid."""


def default_state_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_state_dir("mamori", appauthor=False))


def machine_state_dir() -> Path:
    """This PC's machine-wide state (its one enrollment), written by the installer as root/SYSTEM and read by
    every user's agent: $MAMORI_MACHINE_STATE_DIR, else /var/lib/mamori, or "state" beside the system agent.toml
    on Windows and macOS (docs/admin-guide.md, "One device per PC")."""
    env = os.environ.get(ENV_MACHINE_STATE)
    if env:
        return Path(env)
    if OS_NAME == "linux":
        return Path("/var/lib/mamori")
    return system_config_path().parent / "state"


def default_config_path() -> Path:
    """$MAMORI_CONFIG, else the per-OS system location IT installs to."""
    env = os.environ.get(ENV_CONFIG)
    if env:
        return Path(env)
    return system_config_path()


@dataclass(frozen=True)
class AgentConfig:
    state_dir: Path = field(default_factory=default_state_dir)
    trusted_keys: tuple[Path, ...] = ()
    policy_bundle: Path | None = None
    server: str | None = None
    server_ca: Path | None = None
    tray: bool = True
    lock_command: tuple[str, ...] = ()
    language: str | None = None  # "ja" | "en"; default: the OS locale
    camera: str | None = None  # onlooker guard: "auto", a device, an index or a video file; None: no camera
    source: Path | None = None  # where this config was read from, None for built-in defaults

    @property
    def control_socket(self) -> Path:
        """Local control endpoint of the running agent (status, step-away)."""
        return self.state_dir / "agent.sock"


_KEYS = {
    "state_dir",
    "trusted_keys",
    "policy_bundle",
    "server",
    "server_ca",
    "tray",
    "lock_command",
    "language",
    "camera",
}


def load_config(path: Path | None = None) -> AgentConfig:
    """Read agent.toml. An explicit path must exist; the default location may be absent (built-in defaults)."""
    explicit = path is not None
    target = path or default_config_path()
    if not target.exists():
        if explicit:
            raise ConfigError(f"{target}: config file not found; pass an existing --config or omit it")
        return AgentConfig()
    try:
        raw = tomllib.loads(target.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{target}: cannot read config ({err}); check the path and permissions") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{target}: TOML syntax error: {err}; {_syntax_fix(target)}") from err
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise ConfigError(
            f"{target}: unknown key(s) {', '.join(unknown)}; expected {', '.join(sorted(_KEYS))}"
        )
    base = target.parent

    def as_path(key: str) -> Path | None:
        value = raw.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{target}: {key} must be a non-empty path string")
        return _resolve(value, base)

    keys = raw.get("trusted_keys", [])
    if not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys):
        raise ConfigError(f"{target}: trusted_keys must be an array of paths")
    lock_command = raw.get("lock_command", [])
    if not isinstance(lock_command, list) or not all(isinstance(k, str) for k in lock_command):
        raise ConfigError(
            f'{target}: lock_command must be an array of strings, e.g. ["loginctl", "lock-session"]'
        )
    tray = raw.get("tray", True)
    if not isinstance(tray, bool):
        raise ConfigError(f"{target}: tray must be true or false")
    language = raw.get("language")
    if language not in (None, "ja", "en"):
        raise ConfigError(f'{target}: language must be "ja" or "en"')
    server = raw.get("server")
    if server is not None and (not isinstance(server, str) or not server.startswith(("https://", "http://"))):
        raise ConfigError(f"{target}: server must be an https:// URL")
    camera = _camera(raw.get("camera"), base, target)
    return AgentConfig(
        state_dir=as_path("state_dir") or default_state_dir(),
        trusted_keys=tuple(_resolve(k, base) for k in keys),
        policy_bundle=as_path("policy_bundle"),
        server=server,
        server_ca=as_path("server_ca"),
        tray=tray,
        lock_command=tuple(lock_command),
        language=language,
        camera=camera,
        source=target,
    )


_CAMERA_FIX = 'write "auto", a device such as "/dev/video0", a camera index such as 0, or a video file path'


def _camera(value: object, base: Path, target: Path) -> str | None:
    """agent.toml ``camera`` (the onlooker guard, docs/onlooker.md): "auto", a device, an index or a video file
    (tests and demos; a relative path is relative to agent.toml)."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{target}: camera must be a string or an index; {_CAMERA_FIX}")
    if value == "auto" or value.isdigit() or value.startswith("/dev/"):
        return value
    path = _resolve(value, base)
    if not path.is_file():
        raise ConfigError(
            f"{target}: camera {value!r} is not a device and no such video file exists; {_CAMERA_FIX}"
        )
    return str(path)


# A double-quoted string holding a backslash path: "C:\Users\..." or "\\server\share" (TOML reads \U, \s ...
# as escapes, so the file does not parse).
_WINDOWS_PATH_IN_DOUBLE_QUOTES = re.compile(r'(?m)^\s*([A-Za-z_]+)\s*=\s*(\[?)\s*"((?:[A-Za-z]:)?\\[^"\n]*)"')


def _syntax_fix(target: Path) -> str:
    """The fix for a TOML syntax error; a Windows path in double quotes gets the single-quoted form."""
    try:
        text = target.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return "fix the file"
    found = _WINDOWS_PATH_IN_DOUBLE_QUOTES.search(text)
    if found is None:
        return "fix the file"
    key, bracket, value = found.group(1), found.group(2), found.group(3)
    example = f"{key} = ['{value}', ...]" if bracket else f"{key} = '{value}'"
    return f"put Windows paths in single quotes, which keep backslashes as they are: {example}"


def toml_string(value: str | Path) -> str:
    """``value`` as a TOML string for files the product writes: a literal string ('...'), which keeps the
    backslashes of a Windows path as they are; a basic string only when the value holds a quote or newline."""
    text = str(value)
    if "'" not in text and "\n" not in text and "\r" not in text:
        return f"'{text}'"
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


def _resolve(value: str, base: Path) -> Path:
    """~ and $VARS expanded; a relative path is relative to the config file's directory."""
    p = Path(os.path.expandvars(os.path.expanduser(value)))
    return p if p.is_absolute() else base / p
