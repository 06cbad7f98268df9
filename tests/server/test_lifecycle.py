"""Lifecycle of devices, admin tokens and enrollment secrets over the API, the console and the CLI (SQLite and the
real PostgreSQL), and revocation end to end: a real `mamori agent run` against a real `mamori server run` is
refused with 401 from its next call, says so once in its log and to the worker, keeps its events queued and
delivers them after it is enrolled again."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
import sqlalchemy as sa
from fastapi.testclient import TestClient

from agent.cli import main
from core.clock import FakeClock
from server import accounts, audit
from server.app import create_app
from server.settings import Settings
from server.storage import Storage, events
from tests.harness.live_server import (
    ROOT,
    admin_token,
    enroll_secret,
    migrated,
    server_process,
)
from tests.harness.policies import policy_keys, policy_toml, write_agent_config
from tests.harness.xdesktop import XDesktop

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def api(store: Storage, clock: FakeClock) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(db_url=store.url), store, clock), follow_redirects=False) as c:
        yield c


def now(clock: FakeClock) -> int:
    return int(clock.now().timestamp() * 1000)


def enroll(client: TestClient, store: Storage, hostname: str = "pc-01") -> tuple[str, dict[str, str]]:
    response = client.post(
        "/v1/enroll", json={"secret": enroll_secret(store), "hostname": hostname, "os": "linux"}
    )
    assert response.status_code == 200, response.text
    doc = response.json()
    return doc["device_id"], {"Authorization": f"Bearer {doc['token']}"}


def checkin(client: TestClient, headers: dict[str, str]) -> int:
    return client.post(
        "/v1/checkin", json={"state": "online", "heartbeat_s": 60}, headers=headers
    ).status_code


def store_events(store: Storage, device_id: str, count: int) -> None:
    from server.storage import EventRow

    rows = [
        EventRow(f"{device_id}-{i}", i, 3002, 300201, 1, "session.locked", 1_000 + i, "{}")
        for i in range(1, count + 1)
    ]
    store.ingest(device_id, rows, 2_000)


def admin(store: Storage, clock: FakeClock, name: str = "alice", role: str = "admin") -> dict[str, str]:
    token, _ = accounts.create_token(
        store, name=name, role=role, expires_in_ms=None, actor="test", now=now(clock)
    )
    return {"Authorization": f"Bearer {token}"}


def test_a_revoked_device_is_refused_from_its_next_call(
    api: TestClient, store: Storage, clock: FakeClock
) -> None:
    device_id, device = enroll(api, store)
    headers = admin(store, clock)
    assert checkin(api, device) == 200
    shown = api.get(f"/v1/admin/devices/{device_id}", headers=headers)
    assert shown.status_code == 200
    assert shown.json()["hostname"] == "pc-01" and shown.json()["revoked"] is False
    revoked = api.post(f"/v1/admin/devices/{device_id}/revoke", headers=headers)
    assert revoked.status_code == 200 and revoked.json()["revoked"] is True
    assert revoked.json()["revoked_by"] == "alice"
    refused = api.post("/v1/checkin", json={"state": "online"}, headers=device)
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    assert (
        api.post(
            "/v1/events", content=b"{}\n", headers={**device, "Content-Type": "application/x-ndjson"}
        ).status_code
        == 401
    )
    assert api.get("/v1/policy", headers=device).status_code == 401
    again = api.post(f"/v1/admin/devices/{device_id}/revoke", headers=headers)
    assert again.status_code == 409 and "already" in again.json()["detail"]
    assert api.get("/v1/admin/devices/nope", headers=headers).status_code == 404
    entry = audit.entries(store, action="device.revoke")[0]
    assert (entry.actor, entry.target, entry.detail["hostname"]) == ("alice", device_id, "pc-01")


def test_replaced_keeps_history_and_leaves_the_counts(
    api: TestClient, store: Storage, clock: FakeClock
) -> None:
    old_pc, device = enroll(api, store, "old-pc")
    enroll(api, store, "new-pc")
    store_events(store, old_pc, 3)
    headers = admin(store, clock)
    replaced = api.post(f"/v1/admin/devices/{old_pc}/replaced", headers=headers)
    assert replaced.status_code == 200
    doc = replaced.json()
    assert (
        doc["status"] == "replaced" and doc["replaced"] and doc["revoked"] and doc["replaced_by"] == "alice"
    )
    assert checkin(api, device) == 401  # the old PC must not keep reporting
    assert store.count_events(old_pc) == 3  # its history stays
    with store.engine.connect() as conn:
        assert [r[0] for r in conn.execute(accounts.replaced_device_ids())] == [old_pc]
    assert api.post(f"/v1/admin/devices/{old_pc}/replaced", headers=headers).status_code == 409


def test_delete_removes_the_device_and_what_it_stored(
    api: TestClient, store: Storage, clock: FakeClock
) -> None:
    device_id, device = enroll(api, store)
    other, _ = enroll(api, store, "pc-02")
    store_events(store, device_id, 5)
    store_events(store, other, 2)
    headers = admin(store, clock)
    deleted = api.delete(f"/v1/admin/devices/{device_id}", headers=headers)
    assert deleted.status_code == 200 and deleted.json()["removed"]["events"] == 5
    assert api.get(f"/v1/admin/devices/{device_id}", headers=headers).status_code == 404
    assert checkin(api, device) == 401
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(events)).scalar() == 2
    entry = audit.entries(store, action="device.delete")[0]
    assert entry.target == device_id and entry.detail["removed"]["events"] == 5
    assert api.delete(f"/v1/admin/devices/{device_id}", headers=headers).status_code == 404


def test_enrollment_secrets_list_and_revoke(api: TestClient, store: Storage, clock: FakeClock) -> None:
    secret = enroll_secret(store, uses=5)
    headers = admin(store, clock)
    listed = api.get("/v1/admin/enroll-secrets", headers=headers)
    assert listed.status_code == 200 and secret not in listed.text
    (item,) = listed.json()["secrets"]
    assert item["active"] and item["uses_left"] == 5
    revoked = api.post(f"/v1/admin/enroll-secrets/{item['id']}/revoke", headers=headers)
    assert (
        revoked.status_code == 200
        and revoked.json()["active"] is False
        and revoked.json()["revoked_by"] == "alice"
    )
    refused = api.post("/v1/enroll", json={"secret": secret})
    assert refused.status_code in (401, 403), refused.text
    assert api.post(f"/v1/admin/enroll-secrets/{item['id']}/revoke", headers=headers).status_code == 409
    assert api.post("/v1/admin/enroll-secrets/999/revoke", headers=headers).status_code == 404
    assert audit.entries(store, action="secret.revoke")[0].target == str(item["id"])


def test_cli_enroll_secret_list_and_revoke(store: Storage, capsys: pytest.CaptureFixture[str]) -> None:
    db = store.url
    assert (
        main(["server", "enroll-secret", "create", "--db", db, "--uses", "3", "--group", "sales", "--json"])
        == 0
    )
    secret = json.loads(capsys.readouterr().out)["secret"]
    assert main(["server", "enroll-secret", "list", "--db", db]) == 0
    table = capsys.readouterr().out
    assert "sales" in table and "active" in table and secret not in table
    assert main(["server", "enroll-secret", "list", "--db", db, "--json"]) == 0
    (item,) = json.loads(capsys.readouterr().out)
    assert main(["server", "enroll-secret", "revoke", str(item["id"]), "--db", db]) == 0
    assert main(["server", "enroll-secret", "revoke", str(item["id"]), "--db", db]) == 1
    assert "revoked already" in capsys.readouterr().err
    assert main(["server", "enroll-secret", "list", "--db", db]) == 0
    assert "revoked" in capsys.readouterr().out
    created = audit.entries(store, action="secret.create")
    assert len(created) == 1 and created[0].target == "sales" and created[0].actor.startswith("cli")


def test_viewer_tokens_cannot_change_devices(api: TestClient, store: Storage, clock: FakeClock) -> None:
    device_id, device = enroll(api, store)
    viewer = admin(store, clock, "vera", role="viewer")
    assert api.get(f"/v1/admin/devices/{device_id}", headers=viewer).status_code == 200
    assert api.get("/v1/admin/audit", headers=viewer).status_code == 200
    for call in (
        lambda: api.post(f"/v1/admin/devices/{device_id}/revoke", headers=viewer),
        lambda: api.post(f"/v1/admin/devices/{device_id}/replaced", headers=viewer),
        lambda: api.delete(f"/v1/admin/devices/{device_id}", headers=viewer),
    ):
        assert call().status_code == 403
    assert checkin(api, device) == 200


def sign_in(api: TestClient, store: Storage, clock: FakeClock, role: str = "admin") -> str:
    from server.session import COOKIE

    token, _ = accounts.create_token(
        store, name=f"web-{role}", role=role, expires_in_ms=None, actor="t", now=now(clock)
    )
    assert api.post("/login", content=f"token={token}", headers=FORM).status_code == 303
    live = accounts.session(store, api.cookies[COOKIE], now(clock))
    assert live is not None
    return live.csrf


def test_console_device_actions_need_a_session_the_csrf_token_and_the_admin_role(
    api: TestClient, store: Storage, clock: FakeClock
) -> None:
    device_id, device = enroll(api, store)
    second, _ = enroll(api, store, "pc-02")
    anonymous = api.post(f"/console/devices/{device_id}/revoke", content="csrf=x", headers=FORM)
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/login"
    csrf = sign_in(api, store, clock)
    forged = api.post(f"/console/devices/{device_id}/revoke", content="csrf=forged", headers=FORM)
    assert forged.status_code == 403 and checkin(api, device) == 200
    done = api.post(f"/console/devices/{device_id}/revoke", content=f"csrf={csrf}", headers=FORM)
    assert done.status_code == 303 and done.headers["location"] == f"/devices/{device_id}"
    assert checkin(api, device) == 401
    marked = api.post(f"/console/devices/{device_id}/replaced", content=f"csrf={csrf}", headers=FORM)
    assert marked.status_code == 303 and accounts.device(store, device_id)["replaced"]  # type: ignore[index]
    gone = api.post(f"/console/devices/{second}/delete", content=f"csrf={csrf}", headers=FORM)
    assert gone.status_code == 303 and gone.headers["location"] == "/"
    assert accounts.device(store, second) is None
    actions = [(e.actor, e.action) for e in audit.entries(store) if e.action.startswith("device.")]
    assert actions == [
        ("web-admin", "device.revoke"),
        ("web-admin", "device.replaced"),
        ("web-admin", "device.delete"),
    ]


def test_cli_device_token_and_audit_commands(
    store: Storage, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    db = store.url
    with TestClient(create_app(Settings(db_url=db), store, clock)) as api:
        first, device = enroll(api, store, "pc-cli")
        second, _ = enroll(api, store, "pc-gone")
        assert main(["server", "device", "list", "--db", db, "--json"]) == 0
        listed = {d["id"]: d for d in json.loads(capsys.readouterr().out)}
        assert listed[first]["hostname"] == "pc-cli" and not listed[first]["revoked"]
        assert main(["server", "device", "revoke", first, "--db", db]) == 0
        assert "revoked device" in capsys.readouterr().out and checkin(api, device) == 401
        assert main(["server", "device", "revoke", first, "--db", db]) == 1
        assert "revoked already" in capsys.readouterr().err
        assert main(["server", "device", "replaced", first, "--db", db]) == 0
        assert main(["server", "device", "delete", second, "--db", db]) == 0
        assert main(["server", "device", "delete", "nope", "--db", db]) == 1
        assert "device list" in capsys.readouterr().err
        assert main(["server", "device", "list", "--db", db]) == 0
        table = capsys.readouterr().out
        assert first in table and "replaced" in table and second not in table

    assert (
        main(
            [
                "server",
                "admin-token",
                "create",
                "--db",
                db,
                "--name",
                "ops",
                "--role",
                "viewer",
                "--expires",
                "90d",
                "--json",
            ]
        )
        == 0
    )
    made = json.loads(capsys.readouterr().out)
    assert made["token"].startswith("mat_") and made["role"] == "viewer"
    assert main(["server", "admin-token", "create", "--db", db, "--name", "ops"]) == 2
    assert "exists already" in capsys.readouterr().err
    with pytest.raises(SystemExit) as bad_role:
        main(["server", "admin-token", "create", "--db", db, "--role", "root"])
    assert bad_role.value.code == 2 and "choose from 'viewer', 'admin'" in capsys.readouterr().err
    assert main(["server", "admin-token", "list", "--db", db]) == 0
    table = capsys.readouterr().out
    assert "ops" in table and "viewer" in table and made["token"] not in table
    assert main(["server", "admin-token", "revoke", str(made["id"]), "--db", db]) == 0
    assert "revoked admin token" in capsys.readouterr().out
    assert main(["server", "admin-token", "list", "--db", db, "--json"]) == 0
    (ops,) = [t for t in json.loads(capsys.readouterr().out) if t["name"] == "ops"]
    assert ops["active"] is False

    assert main(["server", "audit", "verify", "--db", db]) == 0
    assert "audit log intact" in capsys.readouterr().out
    assert main(["server", "audit", "export", "--db", db]) == 0
    exported = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    actions = [e["action"] for e in exported]
    for expected in ("device.revoke", "device.replaced", "device.delete", "token.create", "token.revoke"):
        assert expected in actions
    assert all(
        e["actor"].startswith("cli") for e in exported if e["action"].startswith(("device.", "token."))
    )
    assert exported[-1]["action"] == "audit.export"


# --- end to end: a real agent process against a real server process -----------------------------------------


def mamori(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def wait_for(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


REFUSED_LOG = "the server refused this device's token"
REVOKED_TITLE_JA = "この PC はサーバーに受け付けられなくなりました"
# How long a refused agent is watched at least: long enough for a retry loop without backoff to show as CPU and
# as repeated log lines.
WATCH_REFUSED_S = 12.0


@contextmanager
def notification_daemon(tmp_path: Path, display_env: dict[str, str]) -> Iterator[tuple[dict[str, str], Path]]:
    """A private D-Bus session bus with dunst answering notifications and dbus-monitor writing every
    ``Notify`` call to a file: (the bus environment, that file)."""
    from tests.agent.ui.test_notify_desktop import BUS_CONFIG, DUNSTRC

    for tool in ("dbus-daemon", "dunst", "dbus-monitor", "notify-send"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (dbus-daemon, dunst, libnotify-bin: run .ci/run)")
    (tmp_path / "bus").mkdir()
    conf = tmp_path / "bus.conf"
    conf.write_text(BUS_CONFIG.format(dir=tmp_path / "bus"))
    rc = tmp_path / "dunstrc"
    rc.write_text(DUNSTRC)
    calls = tmp_path / "notify-calls.txt"
    procs: list[subprocess.Popen[str]] = []
    try:
        bus = subprocess.Popen(
            ["dbus-daemon", f"--config-file={conf}", "--nofork", "--print-address"],
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        procs.append(bus)
        assert bus.stdout is not None
        env = {"DBUS_SESSION_BUS_ADDRESS": bus.stdout.readline().strip()}
        full = {**display_env, **env}
        procs.append(
            subprocess.Popen(
                ["dunst", "-config", str(rc)],
                env=full,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                text=True,
                start_new_session=True,
            )
        )
        with calls.open("w") as out:
            procs.append(
                subprocess.Popen(
                    [
                        "dbus-monitor",
                        "--session",
                        "interface='org.freedesktop.Notifications',member='Notify'",
                    ],
                    env=full,
                    stdout=out,
                    stderr=subprocess.DEVNULL,
                    text=True,
                    start_new_session=True,
                )
            )

        def probe() -> bool:
            argv = ["notify-send", "--", "probe", "probe"]
            return subprocess.run(argv, env=full, check=False, timeout=10).returncode == 0

        wait_for("dunst on the private bus", probe, 15)
        yield env, calls
    finally:
        for proc in reversed(procs):
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):
                proc.wait(5)


@pytest.mark.desktop
@pytest.mark.slow
def test_revocation_end_to_end_with_a_real_agent(xdesktop: XDesktop, tmp_path: Path) -> None:
    """Revoked on a real server while a real agent runs on a real X desktop (Xvfb) with a real notification
    daemon: its next call is refused with 401; the worker gets one ja notification and a status line (ja and
    en); the log says it once; the agent does not spin; its events stay queued and reach the server after it is
    enrolled again."""
    from agent.i18n import catalog
    from agent.ui.view import build_view

    db = f"sqlite:///{tmp_path / 'server.db'}"
    assert mamori("server", "migrate", "--db", db).returncode == 0
    storage = Storage(db)
    keys = policy_keys(tmp_path / "keys")
    pub = keys.public_path
    bundle = tmp_path / "policy.dsse.json"
    # heartbeat 10 s (the policy's minimum): the agent calls the server at least that often
    bundle.write_bytes(keys.sign(policy_toml(policy_id="e2e", extra={"reporting": {"heartbeat": "10s"}})))
    assert mamori("server", "policy", "publish", str(bundle), "--db", db, "--pub", str(pub)).returncode == 0
    token = admin_token(storage)
    headers = {"Authorization": f"Bearer {token}"}
    agent: subprocess.Popen[str] | None = None
    agent_log = tmp_path / "agent.log"
    try:
        with (
            server_process(db, tmp_path / "server.log") as server,
            notification_daemon(tmp_path, xdesktop.env) as (bus, calls),
        ):
            env = {**xdesktop.env, **bus, "PYTHONPATH": str(ROOT), "MAMORI_DESKTOP_BACKEND": "x11"}
            state = tmp_path / "state"
            config = write_agent_config(
                tmp_path,
                state_dir=state,
                trusted_keys=[pub],
                server=server.url,
                tray=False,
                language="ja",
                lock_command=["true"],
            )
            secret = enroll_secret(storage, uses=2)
            enroll_args = (
                "agent",
                "enroll",
                "--insecure-http",
                "--server",
                server.url,
                "--secret",
                secret,
                "--config",
                str(config),
            )
            enrolled = mamori(*enroll_args, env=env)
            assert enrolled.returncode == 0, enrolled.stderr
            with agent_log.open("w") as log:
                agent = subprocess.Popen(
                    [sys.executable, "-m", "agent.cli", "agent", "run", "--config", str(config)],
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    text=True,
                )

            def status() -> dict[str, Any]:
                assert agent is not None and agent.poll() is None, agent_log.read_text()[-3000:]
                out = mamori("agent", "status", "--config", str(config), "--json", env=env)
                return json.loads(out.stdout) if out.returncode == 0 else {}

            def reporting() -> dict[str, Any]:
                found: dict[str, Any] = status().get("reporting") or {}
                return found

            def devices() -> list[dict[str, Any]]:
                r = requests.get(server.url + "/v1/admin/devices", headers=headers, timeout=5)
                found: list[dict[str, Any]] = r.json()["devices"]
                return found

            (device,) = wait_for(
                "the agent's first events", lambda: [d for d in devices() if d["last_seen"]], 60
            )
            stored_before = storage.count_events(device["id"])
            assert stored_before >= 1

            revoked = requests.post(
                f"{server.url}/v1/admin/devices/{device['id']}/revoke", headers=headers, timeout=5
            )
            assert revoked.status_code == 200
            refused_at = time.monotonic()
            # The next call (the 10 s heartbeat's check-in or an upload) is refused and the agent notices.
            first = wait_for("the agent to notice", lambda: (r := reporting()).get("auth_failed") and r, 30)
            noticed_s = time.monotonic() - refused_at
            cpu_before = psutil.Process(agent.pid).cpu_times()  # type: ignore[union-attr]
            watched_from = time.monotonic()
            # It keeps running and retrying with backoff; events pile up in its outbox, none is lost.
            wait_for(
                "more events queued while refused",
                lambda: (r := reporting()).get("auth_failed") and r["pending"] > first["pending"],
                30,
            )
            time.sleep(max(0.0, WATCH_REFUSED_S - (time.monotonic() - watched_from)))
            watched_s = time.monotonic() - watched_from
            cpu = psutil.Process(agent.pid).cpu_times()  # type: ignore[union-attr]
            cpu_s = (cpu.user + cpu.system) - (cpu_before.user + cpu_before.system)
            later = reporting()
            assert later["auth_failed"] and later["pending"] > first["pending"] >= 1
            assert storage.count_events(device["id"]) == stored_before  # nothing got past the revocation
            assert agent_log.read_text().count(REFUSED_LOG) == 1, agent_log.read_text()[-3000:]  # said once
            assert cpu_s < 0.2 * watched_s, (
                f"the agent used {cpu_s:.1f} s of CPU in {watched_s:.0f} s while refused"
            )
            # The worker was told once, in Japanese (agent.toml language = "ja"), by a real notification.
            wait_for(
                "the notification",
                lambda: REVOKED_TITLE_JA in calls.read_text(encoding="utf-8", errors="replace"),
                10,
            )
            assert calls.read_text(encoding="utf-8", errors="replace").count(REVOKED_TITLE_JA) == 1
            # ...and the status window's lines, built from the agent's own status, say so in ja and en.
            texts = catalog()
            for lang, words in (
                ("ja", "サーバーがこの PC を受け付けません"),
                ("en", "The server refuses this PC"),
            ):
                view = build_view(lambda key, lang=lang, **kw: texts[key][lang].format(**kw), status())
                assert any(words in line for line in view.lines), view.lines

            # Enrolled again (a new device identity), the queued events are delivered.
            again = mamori(*enroll_args, env=env)
            assert again.returncode == 0, again.stderr
            (fresh,) = wait_for(
                "the new enrollment", lambda: [d for d in devices() if d["id"] != device["id"]], 30
            )
            wait_for(
                "the queued events on the server",
                lambda: (
                    storage.count_events(fresh["id"]) >= later["pending"]
                    and not reporting().get("auth_failed")
                ),
                60,
            )
            print(
                f"revocation noticed {noticed_s:.1f} s after it; {cpu_s:.2f} s CPU in {watched_s:.0f} s while refused; "
                f"{later['pending']} events queued, delivered after re-enrollment"
            )
    finally:
        if agent is not None and agent.poll() is None:
            agent.send_signal(signal.SIGTERM)
            try:
                agent.wait(timeout=20)
            except subprocess.TimeoutExpired:
                agent.kill()
        storage.dispose()


def test_the_reporting_service_says_a_revocation_once_and_keeps_its_events(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The same without a desktop, in one process: the agent's reporting service against a real uvicorn."""
    import logging

    from agent.config import AgentConfig
    from agent.report.enrollment import enroll as agent_enroll
    from agent.report.service import ReportingService
    from agent.report.stream import AgentEvent, EventStream, Kind
    from core.clock import SystemClock
    from tests.harness.live_server import ThreadServer

    storage = migrated(f"sqlite:///{tmp_path / 'server.db'}")
    state = tmp_path / "state"
    try:
        with ThreadServer(Settings(db_url=storage.url), storage) as server:
            enrollment = agent_enroll(server.url, enroll_secret(storage), state, insecure_http=True)
            stream = EventStream()
            degraded: list[AgentEvent] = []
            watch = stream.subscribe()
            service = ReportingService(AgentConfig(state_dir=state), stream, SystemClock(), batch_delay=0.05)
            service.start()
            try:

                def publish(n: int) -> None:
                    for _ in range(n):
                        stream.publish(
                            AgentEvent(Kind.SESSION_LOCKED, SystemClock().now(), {"method": "loginctl"})
                        )

                publish(3)
                assert service.flush(20) and storage.count_events(enrollment.device_id) == 3
                accounts.revoke_device(storage, enrollment.device_id, actor="test", now=0)
                with caplog.at_level(logging.DEBUG, logger="agent.report"):
                    publish(5)
                    wait_for("the refusal", lambda: service.status()["auth_failed"], 20, 0.05)
                    publish(6)  # more events while refused

                    def tries() -> int:
                        return sum(
                            "server refused the device token" in r.getMessage() for r in caplog.records
                        )

                    wait_for("three refused uploads (backoff 1 s, 2 s, ...)", lambda: tries() >= 3, 30, 0.1)
                status = service.status()
                assert status["auth_failed"] and status["last_upload_status"] == 401
                assert status["pending"] >= 12  # 5 + 6 and the agent.degraded event itself
                assert storage.count_events(enrollment.device_id) == 3
                said = [r for r in caplog.records if REFUSED_LOG in r.getMessage()]
                assert len(said) == 1 and said[0].levelno == logging.ERROR
                while not watch.empty():
                    event = watch.get_nowait()
                    if event.kind is Kind.CAPABILITY_DEGRADED:
                        degraded.append(event)
                assert [e.data for e in degraded] == [{"capability": "enrollment", "reason": "revoked"}]
            finally:
                service.stop()
    finally:
        storage.dispose()
