"""Server settings: server.toml (optional) + environment + command-line overrides.

```toml
db = "postgresql+psycopg://mamori@db/mamori"   # default: SQLite in the platform data dir; env MAMORI_DB_URL
listen = "0.0.0.0:8443"
trusted_keys = ["/etc/mamori/policy-signing.pub"]   # verify uploaded policy bundles; never a signing key
tls_cert = "/etc/mamori/server.pem"                  # optional; else run behind a TLS-terminating proxy
tls_key = "/etc/mamori/server.key"
workers = 2                                          # processes; use the cores (SQLite or PostgreSQL)
```
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import MamoriError

if TYPE_CHECKING:
    from server.alerts import AlertSettings
    from server.forwarders import ForwarderConfig
    from server.retention import RetentionSettings

ENV_DB = "MAMORI_DB_URL"
ENV_CONFIG = "MAMORI_SERVER_CONFIG"


class SettingsError(MamoriError):
    """server.toml is missing or invalid."""


def default_db_url() -> str:
    env = os.environ.get(ENV_DB)
    if env:
        return env
    import platformdirs

    folder = Path(platformdirs.user_data_dir("mamori-server", appauthor=False))
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return f"sqlite:///{folder / 'mamori.db'}"


def _default_alerts() -> AlertSettings:
    from server.alerts import AlertSettings

    return AlertSettings()


def _default_retention() -> RetentionSettings:
    from server.retention import RetentionSettings

    return RetentionSettings()


@dataclass(frozen=True)
class Settings:
    db_url: str = ""
    listen: str = "127.0.0.1:8443"
    trusted_keys: tuple[Path, ...] = ()
    tls_cert: Path | None = None
    tls_key: Path | None = None
    default_group: str = "default"
    workers: int = 1  # server processes (uvicorn workers); SQLite writes are serialised across them
    # request limits (SPEC.md: 413 oversize)
    max_body_bytes: int = 8 * 1024 * 1024  # as received (gzip or not)
    max_decompressed_bytes: int = 64 * 1024 * 1024
    max_batch_events: int = 10_000
    max_event_bytes: int = 16 * 1024
    # overload (SPEC.md: 429/503 + Retry-After)
    max_concurrent_ingest: int = 16  # more ingest requests at once -> 503
    device_rate_eps: float = 2_000.0  # sustained events per second per device -> 429 beyond
    device_burst: float = 100_000.0
    # silence: a device is "silent" after this many heartbeat intervals without contact and no clean stop
    silence_factor: float = 3.0
    min_silence_s: float = 60.0
    # SIEM forwarders ([[forwarders]], server/forwarders.py), each with its own durable outbox
    forwarders: tuple[ForwarderConfig, ...] = ()
    # alert rules and their delivery ([alerts], server/alerts.py); the default: every rule on, no channel
    alerts: AlertSettings = field(default_factory=_default_alerts)
    # per-table age limits ([retention], server/retention.py); the default deletes nothing
    retention: RetentionSettings = field(default_factory=_default_retention)

    def with_db(self, url: str | None) -> Settings:
        return replace(self, db_url=url) if url else self


_KEYS = {f.name for f in fields(Settings)} | {"db"}


def load_settings(path: Path | None = None) -> Settings:
    explicit = path is not None
    target = path or (
        Path(os.environ[ENV_CONFIG]) if os.environ.get(ENV_CONFIG) else Path("/etc/mamori/server.toml")
    )
    raw: dict[str, Any] = {}
    if target.exists():
        try:
            raw = tomllib.loads(target.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
            raise SettingsError(f"{target}: cannot read server config ({err}); fix the file") from err
    elif explicit:
        raise SettingsError(f"{target}: server config not found; pass an existing --config")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise SettingsError(f"{target}: unknown key(s) {', '.join(unknown)}")
    base = target.parent

    def as_path(value: Any, key: str) -> Path:
        if not isinstance(value, str) or not value:
            raise SettingsError(f"{target}: {key} must be a path string")
        p = Path(os.path.expanduser(value))
        return p if p.is_absolute() else base / p

    values: dict[str, Any] = {}
    for key, value in raw.items():
        name = "db_url" if key == "db" else key
        if name == "trusted_keys":
            if not isinstance(value, list):
                raise SettingsError(f"{target}: trusted_keys must be an array of paths")
            values[name] = tuple(as_path(v, key) for v in value)
        elif name in ("tls_cert", "tls_key"):
            values[name] = as_path(value, key)
        elif name == "forwarders":
            from server.forwarders import ForwarderConfigError, parse_forwarders

            try:
                values[name] = parse_forwarders(value, str(target), base)
            except ForwarderConfigError as err:
                raise SettingsError(str(err)) from err
        elif name == "alerts":
            from server.alerts import AlertConfigError, parse_alerts

            try:
                values[name] = parse_alerts(value, str(target), base)
            except AlertConfigError as err:
                raise SettingsError(str(err)) from err
        elif name == "retention":
            from server.retention import RetentionConfigError, parse_retention

            try:
                values[name] = parse_retention(value, str(target))
            except RetentionConfigError as err:
                raise SettingsError(str(err)) from err
        else:
            default = getattr(Settings(), name)
            if isinstance(default, bool) or not isinstance(value, type(default) | int):
                raise SettingsError(f"{target}: {key} must be a {type(default).__name__}")
            values[name] = type(default)(value)
    settings = Settings(**values)
    if not settings.db_url:
        settings = replace(settings, db_url=default_db_url())
    return settings
