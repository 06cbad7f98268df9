"""Alerts end to end on SQLite and the real PostgreSQL: a real uvicorn server, a local HTTP receiver that checks
the HMAC signature, and a real SMTP server (aiosmtpd). Each rule fires once at both within 5 s of its cause,
and again after the receivers were down; the API, the console page and acknowledgement with its audit entry."""

from __future__ import annotations

import email
import email.policy
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from fastapi.testclient import TestClient

from agent.report.events import build_record, rule_context, stamp_device
from agent.report.stream import AgentEvent, Kind
from core.clock import FakeClock, SystemClock
from server import accounts, alert_store, audit
from server.alert_store import NewAlert
from server.alerts import AlertService, AlertSettings, SmtpConfig, WebhookConfig, describe, mail_message
from server.app import create_app
from server.forward_store import Due
from server.session import COOKIE
from server.settings import Settings, SettingsError, load_settings
from server.storage import Storage
from tests.harness.live_server import (
    ThreadServer,
    admin_token,
    enroll_secret,
    free_port,
    migrated,
    pg_url,
    reset_pg,
)
from tests.server.receivers import WEBHOOK_SECRET as SECRET
from tests.server.receivers import Receivers

RULE_NAMES = ("check_failing", "block_long", "lock_failed", "sequence_gap", "device_silent", "agent_stopped")


# --- receivers ---------------------------------------------------------------------------------------------


def alerts_of(hook: Receivers, rule: str, device: str, check: str | None = None) -> list[str]:
    with hook.lock:
        return [
            i
            for i, a in hook.alerts.items()
            if a["rule"] == rule and a["device_id"] == device and (check is None or a["check_id"] == check)
        ]


class SmtpSink:
    """aiosmtpd on a fixed loopback port: each message parsed, its X-Mamori-Alert-Id and arrival recorded."""

    def __init__(self, *, tls: Any = None, login: tuple[str, str] | None = None) -> None:
        """``tls``: an ssl.SSLContext to offer STARTTLS with, and then require it; ``login``: the only
        (user, password) accepted, over TLS only."""
        self.port = free_port()
        self.lock = threading.Lock()
        self.arrivals: dict[str, list[float]] = {}
        self.messages: dict[str, email.message.EmailMessage] = {}
        self.tls = tls
        self.login = login
        self.logins: list[tuple[str, bool]] = []  # (user, accepted)
        self._controller: Any = None

    def start(self) -> None:
        from aiosmtpd.controller import Controller

        owner = self

        class Handler:
            async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
                message = email.message_from_bytes(envelope.content, policy=email.policy.default)
                alert_id = str(message["X-Mamori-Alert-Id"])
                with owner.lock:
                    owner.messages[alert_id] = message  # type: ignore[assignment]
                    owner.arrivals.setdefault(alert_id, []).append(time.monotonic())
                return "250 OK"

        def authenticator(_server: Any, _session: Any, _envelope: Any, _mechanism: str, data: Any) -> Any:
            from aiosmtpd.smtp import AuthResult

            user, password = data.login.decode(), data.password.decode()
            ok = (user, password) == owner.login
            owner.logins.append((user, ok))
            return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 235 or 535

        options: dict[str, Any] = {}
        if self.tls is not None:
            options |= {"tls_context": self.tls, "require_starttls": True}
        if self.login is not None:
            options |= {"authenticator": authenticator, "auth_required": True, "auth_require_tls": True}
        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, **options)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


# --- a device over the real API --------------------------------------------------------------------------


class Device:
    def __init__(self, url: str, secret: str, hostname: str) -> None:
        self.url = url
        answer = requests.post(
            url + "/v1/enroll", json={"secret": secret, "hostname": hostname, "os": "linux"}, timeout=10
        )
        assert answer.status_code == 200, answer.text
        doc = answer.json()
        self.id = doc["device_id"]
        self.headers = {"Authorization": f"Bearer {doc['token']}"}
        self.sequence = 0

    def send(self, kind: Kind, data: dict[str, Any], *, skip: int = 0) -> float:
        """Post one event (``skip`` sequence numbers left out before it); returns when it was stored."""
        self.sequence += 1 + skip
        record = build_record(AgentEvent(kind, SystemClock().now(), data), rule_context())
        record["metadata"]["sequence"] = self.sequence
        stamp_device(record, self.id)
        answer = requests.post(
            self.url + "/v1/events",
            data=json.dumps(record).encode() + b"\n",
            headers={**self.headers, "Content-Type": "application/x-ndjson"},
            timeout=10,
        )
        assert answer.status_code == 200 and answer.json()["accepted"] == 1, answer.text
        return time.monotonic()

    def checkin(self, **body: Any) -> float:
        answer = requests.post(self.url + "/v1/checkin", json=body, headers=self.headers, timeout=10)
        assert answer.status_code == 200, answer.text
        return time.monotonic()


def finding(check: str, status: str, enforcement: str = "warn") -> dict[str, Any]:
    mode = "block" if enforcement == "block" else "warn"
    return {"check_id": check, "status": status, "previous": None, "mode": mode, "enforcement": enforcement}


# --- fixtures ----------------------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'server.db'}"
    else:
        url = pg_url()
        reset_pg(url)
    storage = migrated(url)
    yield storage
    storage.dispose()


BLOCK_MINUTES = 0.05  # 3 s
SILENT_MINUTES = 0.05


def alert_config(hook: Receivers, sink: SmtpSink) -> AlertSettings:
    return AlertSettings(
        block_minutes=BLOCK_MINUTES,
        silent_minutes=SILENT_MINUTES,
        sweep_seconds=0.2,
        max_backoff=1.0,
        timeout=2.0,
        webhooks=(WebhookConfig(url=hook.url + "/alerts", secret=SECRET, name="soc"),),
        smtp=SmtpConfig(
            host="127.0.0.1",
            port=sink.port,
            starttls=False,
            sender="mamori@example.jp",
            to=("it@example.jp",),
        ),
    )


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# --- the end-to-end test -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_each_rule_fires_once_within_5s_and_again_after_the_receivers_were_down(db: Storage) -> None:
    hook, sink = Receivers(), SmtpSink()
    hook.start()
    sink.start()
    settings = replace(Settings(db_url=db.url), alerts=alert_config(hook, sink))
    secret = enroll_secret(db, uses=10)
    admin = {"Authorization": f"Bearer {admin_token(db)}"}
    keep_alive = threading.Event()
    try:
        with ThreadServer(settings, db) as server:
            pc = Device(server.url, secret, "pc-01")
            quiet = Device(server.url, secret, "pc-02")
            quitter = Device(server.url, secret, "pc-03")
            started = time.monotonic()

            def heartbeat() -> None:  # pc-01 and pc-03 stay in touch: only pc-02 goes silent
                while not keep_alive.wait(0.5):
                    pc.checkin(state="online")
                    quitter.checkin(state="online")

            beat = threading.Thread(target=heartbeat, daemon=True)
            beat.start()

            def causes(round_: int) -> dict[str, tuple[str, float, str | None]]:
                """Each rule's cause: (device, monotonic time the alert is due from, check id)."""
                vpn, firewall = f"vpn-{round_}", f"firewall-{round_}"
                out: dict[str, tuple[str, float, str | None]] = {}
                out["check_failing"] = (pc.id, pc.send(Kind.POSTURE_FINDING, finding(vpn, "fail")), vpn)
                pc.send(Kind.POSTURE_FINDING, finding(vpn, "fail"))  # still failing: no second alert
                lock = pc.send(Kind.LOCK_FAILED, {"method": "logind", "reason": "refused"})
                out["lock_failed"] = (pc.id, lock, None)
                out["sequence_gap"] = (
                    pc.id,
                    pc.send(Kind.SESSION_LOCKED, {"method": "logind"}, skip=3),
                    None,
                )
                blocked = pc.send(Kind.POSTURE_FINDING, finding(firewall, "fail", "block"))
                out["block_long"] = (pc.id, blocked + BLOCK_MINUTES * 60, firewall)
                seen = quiet.checkin(state="online")
                out["device_silent"] = (quiet.id, max(seen, started) + SILENT_MINUTES * 60, None)
                stopped = quitter.checkin(stopping=True, quit_allowed=False, last_sequence=round_)
                out["agent_stopped"] = (quitter.id, stopped, None)
                quitter.checkin(state="online")  # started again
                quitter.checkin(
                    stopping=True, quit_allowed=True, last_sequence=100 + round_
                )  # allowed: no alert
                quitter.checkin(state="online")
                return out

            def arrived(cause: tuple[str, float, str | None], rule: str, seen: set[str]) -> list[str]:
                return [i for i in alerts_of(hook, rule, cause[0], cause[2]) if i not in seen]

            # 1. receivers up: each rule once at both, within 5 s of its cause.
            first = causes(1)
            wait_for(
                lambda: all(alerts_of(hook, r, c[0], c[2]) for r, c in first.items()),
                20,
                "every rule at the webhook",
            )
            ids = {rule: alerts_of(hook, rule, c[0], c[2])[0] for rule, c in first.items()}
            wait_for(lambda: all(i in sink.arrivals for i in ids.values()), 10, "every rule at the SMTP sink")
            time.sleep(1.5)  # more sweeps: a rule that fired again would show now
            for rule, (device, due, check) in first.items():
                assert alerts_of(hook, rule, device, check) == [ids[rule]], f"{rule} fired more than once"
                alert_id = ids[rule]
                assert len(hook.alert_arrivals[alert_id]) == 1 and len(sink.arrivals[alert_id]) == 1, rule
                late = hook.alert_arrivals[alert_id][0] - due, sink.arrivals[alert_id][0] - due
                print(f"alert latency {rule}: webhook {late[0]:.2f} s, mail {late[1]:.2f} s")
                assert max(late) < 5.0, f"{rule} after {late[0]:.1f} s (webhook), {late[1]:.1f} s (mail)"
                text = sink.messages[alert_id].get_content()
                assert (
                    describe(hook.alerts[alert_id], "ja") in text
                    and describe(hook.alerts[alert_id], "en") in text
                )
            assert hook.errors == []
            raised_first = requests.get(server.url + "/v1/admin/alerts", headers=admin, timeout=10).json()[
                "total"
            ]
            assert raised_first == 7  # the six rules, and check_failing for the blocking check too

            # 2. receivers down: the causes happen, the alerts wait in the queue.
            hook.stop()
            sink.stop()
            second = causes(2)
            wait_for(
                lambda: (
                    requests.get(server.url + "/v1/admin/alerts", headers=admin, timeout=10).json()["total"]
                    >= 14
                ),
                20,
                "the second round raised",
            )
            delivery = requests.get(server.url + "/v1/admin/alerts", headers=admin, timeout=10).json()[
                "delivery"
            ]
            assert {d["channel"]: d["queued"] for d in delivery} == {"soc": 7, "smtp": 7}
            time.sleep(2.0)  # attempts fail and back off meanwhile

            # 3. receivers back: everything delivered, nothing lost, nothing dead.
            seen = set(hook.alerts)
            restarted = time.monotonic()
            hook.start()
            sink.start()
            wait_for(
                lambda: all(arrived(c, r, set(ids.values())) for r, c in second.items()),
                20,
                "the second round",
            )
            again = {r: arrived(c, r, set(ids.values())) for r, c in second.items()}
            wait_for(
                lambda: all(i[0] in sink.arrivals for i in again.values()), 10, "the second round by mail"
            )
            for rule, found in again.items():
                assert len(found) == 1 and found[0] not in seen, rule
                assert hook.alert_arrivals[found[0]][0] - restarted < 5.0, rule

            def queues() -> list[dict[str, Any]]:
                answer = requests.get(server.url + "/v1/admin/alerts", headers=admin, timeout=10)
                return list(answer.json()["delivery"])

            # a mail arrives a moment before its sender hears the 250 and clears the row
            wait_for(lambda: all(d["queued"] == 0 for d in queues()), 5, "empty queues")
            assert all(d["dead_letters"] == 0 for d in queues())
            assert hook.errors == []
            keep_alive.set()
            beat.join(10)  # before the server goes
    finally:
        keep_alive.set()
        hook.stop()
        sink.stop()


# --- raising once across processes -------------------------------------------------------------------------


def test_an_alert_is_raised_once_by_concurrent_writers(db: Storage) -> None:
    """Two server processes seeing one cause: one alert, one delivery row per channel."""
    alert = NewAlert(
        "device_silent:dev-1:1000", "device_silent", "dev-1", 1000, {"last_seen": 1000, "minutes": 60}
    )
    barrier = threading.Barrier(4)
    raised: list[list[str]] = []

    def writer() -> None:
        other = Storage(db.url)
        try:
            barrier.wait()
            raised.append(alert_store.raise_all(other, [alert], ["alert:soc", "alert:smtp"], 2000))
        finally:
            other.dispose()

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(len(r) for r in raised) == [0, 0, 0, 1]
    found, total = alert_store.list_alerts(db, open_only=False)
    assert total == 1 and found[0].rule == "device_silent"
    from server.forward_store import counts

    assert {k: v.queued for k, v in counts(db).items()} == {"alert:soc": 1, "alert:smtp": 1}


def test_a_refused_alert_and_one_out_of_attempts_turn_dead_and_are_counted(db: Storage) -> None:
    """A receiver answering 400 for good: a dead letter at once, never retried. An unreachable one: retried
    until ``max_attempts``, then a dead letter too. Both counted."""
    answers: list[int] = []

    class Refusing(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            answers.append(400)
            self.send_response(400)
            self.send_header("Content-Length", "0")
            self.end_headers()

    refusing = ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=refusing.serve_forever, daemon=True).start()
    try:
        hooks = (
            WebhookConfig(
                url=f"http://127.0.0.1:{refusing.server_address[1]}/x", secret=SECRET, name="refuses"
            ),
            WebhookConfig(url=f"http://127.0.0.1:{free_port()}/x", secret=SECRET, name="away"),
        )
        config = AlertSettings(webhooks=hooks, max_attempts=3)
        service = AlertService(db, config, FakeClock())
        alert_store.raise_all(
            db, [NewAlert("lock_failed:u1", "lock_failed", "d", 1, {})], config.channels(), 1
        )
        for _ in range(5):
            for state in service.states:
                state.paused_until = 0.0  # no waiting out the backoff in a test
            service._next_sweep = 0.0
            service.step()
    finally:
        refusing.shutdown()
        refusing.server_close()
    from server.alerts import delivery_status

    assert answers == [400]  # refused once, never sent again
    assert delivery_status(db, config) == [
        {"channel": "refuses", "type": "webhook", "queued": 0, "dead_letters": 1},
        {"channel": "away", "type": "webhook", "queued": 0, "dead_letters": 1},
    ]


# --- API, console, audit ------------------------------------------------------------------------------------


@pytest.fixture
def app_client(tmp_path: Path) -> Iterator[tuple[TestClient, Storage, FakeClock]]:
    storage = migrated(f"sqlite:///{tmp_path / 'server.db'}")
    clock = FakeClock()
    settings = Settings(db_url=storage.url)
    with TestClient(create_app(settings, storage, clock)) as client:
        yield client, storage, clock
    storage.dispose()


def token(storage: Storage, role: str) -> tuple[str, accounts.TokenInfo]:
    return accounts.create_token(
        storage, name=f"{role}-1", role=role, expires_in_ms=None, actor="test", now=0
    )


def test_api_lists_filters_and_acknowledges_with_an_audit_entry(app_client: Any) -> None:
    client, storage, clock = app_client
    alert_store.raise_all(
        storage,
        [
            NewAlert("lock_failed:a", "lock_failed", "d1", 1, {"method": "logind", "reason": "refused"}),
            NewAlert("sequence_gap:d2:4", "sequence_gap", "d2", 2, {"first": 4, "last": 6, "missing": 3}),
        ],
        [],
        5,
    )
    admin_tok, _ = token(storage, "admin")
    viewer_tok, _ = token(storage, "viewer")
    admin = {"Authorization": f"Bearer {admin_tok}"}
    viewer = {"Authorization": f"Bearer {viewer_tok}"}
    assert client.get("/v1/admin/alerts").status_code == 401
    doc = client.get("/v1/admin/alerts", headers=viewer).json()
    assert doc["total"] == 2 and doc["rules"]["check_failing"] is True and doc["delivery"] == []
    gap = client.get("/v1/admin/alerts?rule=sequence_gap", headers=viewer).json()["alerts"]
    assert [a["detail"]["missing"] for a in gap] == [3]
    assert client.get("/v1/admin/alerts?rule=nope", headers=viewer).status_code == 422
    assert [
        a["device_id"] for a in client.get("/v1/admin/alerts?device=d1", headers=viewer).json()["alerts"]
    ] == ["d1"]
    alert_id = gap[0]["id"]
    refused = client.post(f"/v1/admin/alerts/{alert_id}/ack", headers=viewer)
    assert refused.status_code == 403 and "viewer" in refused.json()["detail"]
    acked = client.post(f"/v1/admin/alerts/{alert_id}/ack", headers=admin).json()
    assert acked["acked_by"] == "admin-1" and acked["acked_at"] == int(clock.now().timestamp() * 1000)
    assert client.post(f"/v1/admin/alerts/{alert_id}/ack", headers=admin).status_code == 200  # once is enough
    assert (
        client.post("/v1/admin/alerts/00000000-0000-4000-8000-000000000000/ack", headers=admin).status_code
        == 404
    )
    assert [a["rule"] for a in client.get("/v1/admin/alerts", headers=viewer).json()["alerts"]] == [
        "lock_failed"
    ]
    assert client.get("/v1/admin/alerts?state=all", headers=viewer).json()["total"] == 2
    later = client.get("/v1/admin/alerts?state=all&since=2099-01-01T00:00:00Z", headers=viewer).json()
    assert later["total"] == 0
    assert (
        client.get("/v1/admin/alerts?state=all&since=1970-01-01T00:00:00Z", headers=viewer).json()["total"]
        == 2
    )
    acks = audit.entries(storage, action="alert.ack")
    assert [(e.actor, e.target) for e in acks] == [("admin-1", alert_id)]
    assert audit.verify(storage)[1] is None


def test_console_page_lists_open_alerts_until_acknowledged(app_client: Any) -> None:
    client, storage, clock = app_client
    alert_store.raise_all(
        storage, [NewAlert("check_failing:u", "check_failing", "d1", 1, {"check_id": "vpn"}, "vpn")], [], 5
    )
    assert client.get("/alerts", follow_redirects=False).headers["location"].startswith("/login")
    _, info = token(storage, "admin")
    session = accounts.start_session(
        storage, info, client="testclient", now=int(clock.now().timestamp() * 1000)
    )
    client.cookies.set(COOKIE, session)
    page = client.get("/alerts?lang=ja").text
    assert "チェック「vpn」が不適合になりました" in page and "確認済みにする" in page
    assert "Check vpn started failing" in client.get("/alerts?lang=en").text
    (alert,) = alert_store.list_alerts(storage)[0]
    assert client.post(f"/console/alerts/{alert.id}/ack", data={"csrf": "wrong"}).status_code == 403
    principal_csrf = accounts.session(storage, session, int(clock.now().timestamp() * 1000)).csrf  # type: ignore[union-attr]
    done = client.post(
        f"/console/alerts/{alert.id}/ack", data={"csrf": principal_csrf}, follow_redirects=False
    )
    assert done.status_code == 303 and done.headers["location"] == "/alerts"
    assert "未確認のアラートはありません" in client.get("/alerts?lang=ja").text
    assert [e.target for e in audit.entries(storage, action="alert.ack")] == [alert.id]


# --- settings and words -------------------------------------------------------------------------------------


def test_server_toml_alerts_and_clear_errors(tmp_path: Path) -> None:
    config = tmp_path / "server.toml"
    (tmp_path / "smtp-password").write_text("pw\n")
    config.write_text(
        "[alerts]\nblock_minutes = 30\nsilent_minutes = 0\nlock_failed = false\n"
        '[[alerts.webhooks]]\nurl = "https://hooks.example.jp/mamori"\nsecret = "0123456789abcdef0123"\n'
        '[alerts.smtp]\nhost = "smtp.example.jp"\nusername = "mamori"\npassword_file = "smtp-password"\n'
        'from = "mamori@example.jp"\nto = ["it@example.jp"]\n'
    )
    alerts = load_settings(config).alerts
    assert alerts is not None
    assert (
        alerts.block_minutes == 30
        and not alerts.enabled("device_silent")
        and not alerts.enabled("lock_failed")
    )
    assert alerts.channels() == ["alert:webhook-1", "alert:smtp"]
    assert (
        alerts.smtp is not None
        and alerts.smtp.password_file == tmp_path / "smtp-password"
        and alerts.smtp.port == 587
    )
    for bad, message in (
        ('[[alerts.webhooks]]\nurl = "ftp://x"\nsecret = "0123456789abcdef"\n', "alerts.webhooks[0].url"),
        ('[[alerts.webhooks]]\nurl = "https://x"\nsecret = "short"\n', "alerts.webhooks[0].secret"),
        ("[alerts]\nblock_minutes = -1\n", "alerts.block_minutes"),
        (
            '[alerts.smtp]\nhost = "h"\nfrom = "a@b"\nto = "c@d"\npassword_file = "nowhere"\n',
            "nowhere not found",
        ),
        ("[alerts]\nsilence = 5\n", "unknown key(s) in [alerts]: silence"),
        (
            '[alerts.smtp]\nhost = "h"\nfrom = "a@b"\nto = "c@d"\nusername = "u"\npassword_file = "smtp-password"\nstarttls = false\n',
            "in clear",
        ),
    ):
        config.write_text(bad)
        with pytest.raises(SettingsError, match=re.escape(message)) as err:
            load_settings(config)
        assert "\n" not in str(err.value)


def test_mail_is_japanese_then_english() -> None:
    alert = {
        "id": "a1",
        "rule": "device_silent",
        "device_id": "dev-1",
        "hostname": "pc-07",
        "cause_at": 1_764_590_400_000,
        "detail": {"last_seen": 1_764_590_400_000, "minutes": 60},
    }
    config = SmtpConfig(host="h", sender="mamori@example.jp", to=("it@example.jp", "soc@example.jp"))
    message = mail_message(alert, config)
    assert message["Subject"] == "[Mamori] 端末から応答なし / Device silent: pc-07"
    assert message["To"] == "it@example.jp, soc@example.jp"
    body = message.get_content()
    ja, en = body.index("pc-07 から 60 分以上連絡がありません"), body.index("pc-07 has not been heard from")
    assert ja < en and "2025-12-01 21:00:00 JST" in body and "2025-12-01 12:00:00 UTC" in body


# --- the agent's stop check-in -------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_real_agent_stopping_under_a_no_quit_policy_raises_agent_stopped(tmp_path: Path) -> None:
    """The reporting service of the agent, enrolled with `mamori agent enroll`, under a policy without
    ``allow_quit``: its clean stop arrives at the webhook as agent_stopped."""
    import subprocess
    import sys

    from agent.config import AgentConfig
    from agent.report.service import ReportingService
    from agent.report.stream import EventStream
    from tests.harness.live_server import ROOT, signed_policy, signing_key
    from tests.harness.policies import write_agent_config

    storage = migrated(f"sqlite:///{tmp_path / 'server.db'}")
    key, pub = signing_key(tmp_path / "keys")
    hook, sink = Receivers(), SmtpSink()
    hook.start()
    sink.start()
    settings = replace(Settings(db_url=storage.url, trusted_keys=(pub,)), alerts=alert_config(hook, sink))
    admin = {"Authorization": f"Bearer {admin_token(storage)}"}
    try:
        with ThreadServer(settings, storage) as server:
            published = requests.post(
                server.url + "/v1/admin/policies", data=signed_policy(key, 1), headers=admin, timeout=10
            )
            assert published.status_code == 201, published.text
            state = tmp_path / "agent"
            config_file = write_agent_config(tmp_path, state_dir=state, trusted_keys=[pub])
            enrolled = subprocess.run(
                [sys.executable, "-m", "agent.cli", "agent", "enroll", "--insecure-http", "--server", server.url,
                 "--secret", enroll_secret(storage), "--config", str(config_file)],
                check=False, cwd=ROOT, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert enrolled.returncode == 0, enrolled.stderr
            stream = EventStream()
            service = ReportingService(
                AgentConfig(state_dir=state, trusted_keys=(pub,)), stream, SystemClock()
            )
            service.start()
            wait_for(lambda: service.summary()["policy_version"] == 1, 30, "the agent to apply the policy")
            service.stop()
            stopped = time.monotonic()
            wait_for(
                lambda: any(a["rule"] == "agent_stopped" for a in hook.alerts.values()), 10, "agent_stopped"
            )
            (alert,) = [a for a in hook.alerts.values() if a["rule"] == "agent_stopped"]
            assert hook.alert_arrivals[alert["id"]][0] - stopped < 5.0
            assert alert["detail"]["policy_version"] == 1 and hook.errors == []
    finally:
        hook.stop()
        sink.stop()
        storage.dispose()


def test_alert_settings_changes_are_audited(db: Storage) -> None:
    clock = FakeClock()
    quiet = AlertSettings()
    loud = AlertSettings(
        block_minutes=5, webhooks=(WebhookConfig(url="https://h.example.jp/a", secret=SECRET, name="soc"),)
    )
    for config in (quiet, quiet, loud, loud, quiet):
        service = AlertService(db, config, clock)
        service.start()
        service.stop()
    entries = audit.entries(db, action="alerts.settings")
    assert [e.detail["block_minutes"] for e in entries] == [15.0, 5.0, 15.0]
    assert entries[1].detail["webhooks"][0]["url"] == "https://h.example.jp/a"
    assert SECRET not in json.dumps([e.detail for e in entries])  # a digest of the secret, never the secret


def test_mail_over_starttls_with_a_login_and_a_wrong_password_waits(tmp_path: Path) -> None:
    """The SMTP channel as a mail relay expects it: STARTTLS (the relay's certificate checked against ``ca``),
    then AUTH LOGIN. A wrong password is not a dead letter: the mail waits and goes once the password is right."""
    import ssl

    from server.alerts import SmtpSender
    from server.forwarders import ForwarderConfig
    from tests.harness.pki import TestCA

    ca = TestCA(tmp_path)
    leaf = ca.issue("smtp", hosts=("127.0.0.1",))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(leaf.cert, leaf.key)
    sink = SmtpSink(tls=context, login=("mamori", "s3cret"))
    sink.start()
    password = tmp_path / "smtp-password"
    password.write_text("wrong\n")
    smtp = SmtpConfig(
        host="127.0.0.1",
        port=sink.port,
        sender="mamori@example.jp",
        to=("it@example.jp",),
        username="mamori",
        password_file=password,
        ca=str(ca.path),
    )
    sender = SmtpSender(ForwarderConfig(name="alert:smtp", type="smtp", timeout=5.0), smtp)
    alert = {"id": "a-1", "rule": "lock_failed", "device_id": "d", "cause_at": 0, "detail": {}}
    due = [Due("a-1", 0, json.dumps(alert))]
    (tmp_path / "other").mkdir()
    stranger = TestCA(tmp_path / "other", name="Another CA")
    try:
        untrusted = SmtpSender(
            ForwarderConfig(name="alert:smtp", type="smtp", timeout=5.0), replace(smtp, ca=str(stranger.path))
        ).send(due)
        assert (
            untrusted.retry == ["a-1"] and "SSL" in untrusted.error
        )  # a relay we cannot verify gets nothing
        refused = sender.send(due)
        assert refused.retry == ["a-1"] and not refused.dead and refused.error.startswith("SMTP 535")
        password.write_text("s3cret\n")
        assert sender.send(due).delivered == ["a-1"]
    finally:
        sink.stop()
    # smtplib tries each mechanism offered (PLAIN, LOGIN) before giving up on a password
    assert sink.logins[-1] == ("mamori", True) and all(not ok for _, ok in sink.logins[:-1])
    assert sink.messages["a-1"]["Subject"] == "[Mamori] 画面ロック失敗 / Screen lock failed: d"


@pytest.mark.slow
def test_two_server_processes_on_one_database_raise_and_send_each_alert_once(db: Storage) -> None:
    """Two servers behind a load balancer: both sweep, both deliver, and a batch resent to the other one is
    evaluated again; every alert is raised once and reaches the receivers once."""
    hook, sink = Receivers(), SmtpSink()
    hook.start()
    sink.start()
    settings = replace(Settings(db_url=db.url), alerts=alert_config(hook, sink))
    secret = enroll_secret(db, uses=2)
    other = Storage(db.url)
    try:
        with ThreadServer(settings, db) as one, ThreadServer(settings, other) as two:
            pc = Device(one.url, secret, "pc-01")
            quiet = Device(two.url, secret, "pc-02")
            quiet.checkin(state="online")
            record = build_record(
                AgentEvent(Kind.POSTURE_FINDING, SystemClock().now(), finding("fw", "fail", "block")),
                rule_context(),
            )
            record["metadata"]["sequence"] = 5  # 1-4 missing: a gap
            body = json.dumps(stamp_device(record, pc.id)).encode() + b"\n"
            for server in (one, two, one):  # the same batch resent, to either process
                answer = requests.post(
                    server.url + "/v1/events",
                    data=body,
                    headers={**pc.headers, "Content-Type": "application/x-ndjson"},
                    timeout=10,
                )
                assert answer.status_code == 200, answer.text
            expected = {
                ("check_failing", pc.id),
                ("block_long", pc.id),
                ("sequence_gap", pc.id),
                ("device_silent", pc.id),
                ("device_silent", quiet.id),
            }

            def seen() -> set[tuple[str, str]]:
                with hook.lock:
                    return {(a["rule"], a["device_id"]) for a in hook.alerts.values()}

            wait_for(lambda: seen() >= expected, 20, "every alert")
            time.sleep(2.0)  # both processes sweep several times more
            with hook.lock:
                assert sorted((a["rule"], a["device_id"]) for a in hook.alerts.values()) == sorted(expected)
                assert all(len(times) == 1 for times in hook.alert_arrivals.values()), hook.alert_arrivals
            assert sorted(sink.arrivals) == sorted(hook.alerts) and all(
                len(t) == 1 for t in sink.arrivals.values()
            )
            assert hook.errors == []
    finally:
        other.dispose()
        hook.stop()
        sink.stop()


def test_an_unmigrated_database_makes_the_alert_thread_wait_and_say_so_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    storage = Storage(f"sqlite:///{tmp_path / 'empty.db'}")
    service = AlertService(storage, AlertSettings(silent_minutes=0.0001), FakeClock())
    try:
        with caplog.at_level("WARNING", logger="server.alerts"):
            assert [service.step() for _ in range(3)] == [False, False, False]
    finally:
        storage.dispose()
    warnings = [r.getMessage() for r in caplog.records if r.name == "server.alerts"]
    assert len(warnings) == 1 and "database unavailable" in warnings[0], warnings


def test_check_state_follows_findings_in_order() -> None:
    """Pure: a check that fails, passes and fails again in one batch started failing twice; one that keeps
    failing (an agent restart reports it again) did not; a block starts when enforcement turns to block and
    ends without the failure ending."""
    from server.alert_store import Finding, advance

    def f(check: str, failing: bool, blocking: bool, at: int) -> Finding:
        return Finding(check, failing, blocking, at, f"{check}-{at}")

    after, started = advance(
        {"kept": (1, None), "blocked": (1, 5)},
        [
            f("vpn", True, False, 10),
            f("vpn", False, False, 11),
            f("vpn", True, False, 12),
            f("kept", True, False, 13),
            f("kept", True, True, 14),
            f("kept", True, True, 15),
            f("blocked", True, False, 16),
            f("gone", False, False, 17),
        ],
    )
    assert [s.event_uid for s in started] == ["vpn-10", "vpn-12"]
    assert after == {"vpn": (12, None), "kept": (1, 14), "blocked": (1, None), "gone": None}
