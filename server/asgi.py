"""ASGI entry point for worker processes: ``uvicorn --factory server.asgi:app_from_environment``.

Settings come from $MAMORI_SERVER_CONFIG (server.toml) and $MAMORI_DB_URL, as set by ``mamori server run``
when ``workers`` > 1; each process has its own engine and overload counters (the database is the only state).
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI

from core.clock import SystemClock
from server.app import create_app, shorten_gil_switch_interval
from server.settings import ENV_CONFIG, ENV_DB, load_settings
from server.storage import Storage


def app_from_environment() -> FastAPI:
    shorten_gil_switch_interval()
    config = os.environ.get(ENV_CONFIG)
    settings = load_settings(Path(config) if config else None).with_db(os.environ.get(ENV_DB))
    return create_app(settings, Storage(settings.db_url), SystemClock())
