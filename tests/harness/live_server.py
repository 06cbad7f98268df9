"""Real servers for tests: uvicorn on loopback (in a thread or as a `mamori server run` process), migrated
databases (SQLite files or the real PostgreSQL), enrollment and signed policies."""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from core.clock import Clock, SystemClock
from server import auth
from server.app import create_app
from server.migrate import upgrade
from server.settings import Settings
from server.storage import Storage

ROOT = Path(__file__).resolve().parents[2]
PG_ENV = "MAMORI_TEST_PG_URL"

POLICY_TOML = """\
schema = 1
id = "acme-remote"
version = {version}

[[customer_apps]]
name = "crm"
processes = ["crm*"]
title = "顧客|customer"

[reporting]
heartbeat = "60s"
window_titles = "{titles}"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_PG_DATABASES: dict[str, str] = {}


def pg_url() -> str:
    """A PostgreSQL database of this test process's own, made on first use next to $MAMORI_TEST_PG_URL's.

    Tests reset it with ``DROP SCHEMA public``; two test runs on one machine (a developer's and CI's) must not
    drop each other's tables, so each process gets ``<database>_<pid>`` and drops it when it exits.
    """
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"{PG_ENV} is not set (CI sets it; start PostgreSQL and export it to run this test)")
    if base not in _PG_DATABASES:
        parsed = sa.engine.make_url(base)
        name = f"{parsed.database}_{os.getpid()}"
        admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        atexit.register(_drop_pg_database, base, name)
        _PG_DATABASES[base] = parsed.set(database=name).render_as_string(hide_password=False)
    return _PG_DATABASES[base]


def _drop_pg_database(base: str, name: str) -> None:
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    except sa.exc.SQLAlchemyError:
        pass  # best effort at exit; the next run of this pid drops it first
    finally:
        admin.dispose()


def reset_pg(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()


def migrated(url: str) -> Storage:
    storage = Storage(url)
    upgrade(storage.engine)
    return storage


def enroll_secret(
    storage: Storage, uses: int = 1, expires_at: int | None = None, group: str = "default"
) -> str:
    secret = auth.new_token(auth.SECRET_PREFIX)
    storage.create_enroll_secret(auth.token_hash(secret), group, uses, expires_at, 0)
    return secret


def admin_token(storage: Storage) -> str:
    token = auth.new_token(auth.ADMIN_PREFIX)
    storage.create_admin_token(auth.token_hash(token), 0)
    return token


def signing_key(directory: Path) -> tuple[object, Path]:
    from policy.keys import generate_keypair, load_private_key

    private_path, public_path = generate_keypair(directory)
    return load_private_key(private_path), public_path


def signed_policy(private_key: object, version: int = 1, titles: str = "none") -> bytes:
    from policy.signing import sign_policy

    return sign_policy(POLICY_TOML.format(version=version, titles=titles).encode(), private_key)  # type: ignore[arg-type]


class ThreadServer:
    """create_app(...) served by a real uvicorn on a loopback port, in a thread of the test process."""

    def __init__(self, settings: Settings, storage: Storage, clock: Clock | None = None) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = create_app(settings, storage, clock or SystemClock())
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


class ServerProcess:
    """`mamori server run` as a real process; ``kill()`` sends SIGKILL."""

    def __init__(self, db_url: str, port: int, log: Path, extra: tuple[str, ...] = ()) -> None:
        self.extra = extra
        self.db_url = db_url
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        cmd = [
            sys.executable,
            "-m",
            "agent.cli",
            "server",
            "run",
            "--db",
            self.db_url,
            "--listen",
            f"127.0.0.1:{self.port}",
        ]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"server exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}"
                )
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError("server did not become healthy")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            if "--config" in self.extra:
                # several workers: SIGTERM lets the uvicorn supervisor take its children down with it
                self.proc.terminate()
                try:
                    self.proc.wait(15)
                    return
                except subprocess.TimeoutExpired:
                    pass
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


@contextmanager
def server_process(db_url: str, log: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(db_url, free_port(), log)
    proc.start()
    try:
        yield proc
    finally:
        proc.kill()
