"""Console sign-in and the admin API's roles, on SQLite and the real PostgreSQL: named tokens hashed at rest, a
server-side session (never the token in the cookie), cookie flags, CSRF, sign-out that ends the session on the
server, idle and absolute expiry, revoked and expired tokens, a visible ja/en error, and failed sign-ins
throttled per address and overall through the database (429 + Retry-After), shared by two server apps."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from core.clock import FakeClock
from server import accounts, audit, auth
from server.app import create_app
from server.settings import Settings
from server.storage import Storage, admin_tokens
from tests.harness.live_server import admin_token

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def app_client(store: Storage, clock: FakeClock) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(db_url=store.url), store, clock), follow_redirects=False) as c:
        yield c


def now(clock: FakeClock) -> int:
    return int(clock.now().timestamp() * 1000)


def named(
    store: Storage, clock: FakeClock, name: str = "alice", role: str = "admin", expires: str | None = None
) -> str:
    token, _ = accounts.create_token(
        store,
        name=name,
        role=role,
        expires_in_ms=accounts.parse_duration_ms(expires) if expires else None,
        actor="test",
        now=now(clock),
    )
    return token


def sign_in(client: TestClient, token: str, lang: str = "en") -> httpx.Response:
    return client.post("/login", content=f"token={token}&lang={lang}", headers=FORM)


def signed_in(client: TestClient) -> bool:
    """GET /login sends a signed-in browser on to the console."""
    return bool(client.get("/login").status_code == 303)


def csrf_of(store: Storage, clock: FakeClock, client: TestClient) -> str:
    from server.session import COOKIE

    live = accounts.session(store, client.cookies[COOKIE], now(clock))
    assert live is not None
    return live.csrf


def test_session_cookie_is_a_random_id_never_the_token(
    app_client: TestClient, store: Storage, clock: FakeClock
) -> None:
    from server.session import COOKIE

    token = named(store, clock)
    response = sign_in(app_client, token)
    assert response.status_code == 303 and response.headers["location"].startswith("/")
    cookie = response.headers["set-cookie"]
    session_id = app_client.cookies[COOKIE]
    assert token not in cookie and session_id != token and len(session_id) >= 40
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert "Secure" not in cookie  # plain http in this test; https below
    with store.engine.connect() as conn:
        dumped = repr(conn.execute(sa.text("SELECT * FROM console_sessions")).all())
        stored_tokens = [r.token_hash for r in conn.execute(sa.select(admin_tokens.c.token_hash))]
    # The database holds hashes only: neither the session id nor the token.
    assert session_id not in dumped and auth.token_hash(session_id) in dumped
    assert token not in repr(stored_tokens) and auth.token_hash(token) in stored_tokens
    assert signed_in(app_client)
    assert [(e.actor, e.action) for e in audit.entries(store, action="signin")] == [("alice", "signin")]


def test_cookie_is_secure_over_https(store: Storage, clock: FakeClock) -> None:
    app = create_app(Settings(db_url=store.url), store, clock)
    with TestClient(app, base_url="https://console.example", follow_redirects=False) as client:
        response = sign_in(client, named(store, clock))
    assert response.status_code == 303 and "Secure" in response.headers["set-cookie"]


@pytest.mark.parametrize(("lang", "words"), [("en", "Sign-in failed"), ("ja", "サインインできませんでした")])
def test_failed_sign_in_shows_its_error_in_ja_and_en(
    app_client: TestClient, store: Storage, lang: str, words: str
) -> None:
    response = sign_in(app_client, "mat_not-a-token", lang=lang)
    assert response.status_code == 401
    assert 'id="signin-error"' in response.text and words in response.text
    assert not signed_in(app_client)
    failures = audit.entries(store, action="signin.fail")
    assert len(failures) == 1 and failures[0].detail["reason"] == "unknown"


def test_revoked_and_expired_tokens_cannot_sign_in_and_revocation_ends_sessions(
    app_client: TestClient, store: Storage, clock: FakeClock
) -> None:
    token = named(store, clock, "bob")
    assert sign_in(app_client, token).status_code == 303 and signed_in(app_client)
    info = accounts.token_by_hash(store, auth.token_hash(token))
    assert info is not None
    accounts.revoke_token(store, info.id, actor="test", now=now(clock))
    assert not signed_in(app_client)  # the session died with its token
    assert sign_in(app_client, token).status_code == 401

    short = named(store, clock, "carol", expires="1h")
    assert sign_in(app_client, short).status_code == 303
    clock.advance(3601)
    assert not signed_in(app_client)
    assert sign_in(app_client, short).status_code == 401
    reasons = [e.detail["reason"] for e in audit.entries(store, action="signin.fail")]
    assert reasons == ["revoked", "expired"]


def test_session_idle_and_absolute_expiry(app_client: TestClient, store: Storage, clock: FakeClock) -> None:
    token = named(store, clock)
    sign_in(app_client, token)
    clock.advance(accounts.SESSION_IDLE_MS / 1000 - 60)
    assert signed_in(app_client)  # in use: the idle timer restarts
    clock.advance(accounts.SESSION_IDLE_MS / 1000 - 60)
    assert signed_in(app_client)
    clock.advance(accounts.SESSION_IDLE_MS / 1000 + 1)
    assert not signed_in(app_client)  # idle too long

    sign_in(app_client, token)
    for _ in range(accounts.SESSION_ABSOLUTE_MS // (20 * 60 * 1000) - 1):
        clock.advance(20 * 60)
        assert signed_in(app_client)
    clock.advance(20 * 60)
    assert not signed_in(app_client)  # never past the absolute lifetime, however busy


def test_logout_needs_the_csrf_token_and_ends_the_session_on_the_server(
    app_client: TestClient, store: Storage, clock: FakeClock
) -> None:
    from server.session import COOKIE

    sign_in(app_client, named(store, clock))
    session_id = app_client.cookies[COOKIE]
    forged = app_client.post("/logout", content="csrf=guess", headers=FORM)
    assert forged.status_code == 403 and "CSRF" in forged.text
    assert signed_in(app_client)
    csrf = csrf_of(store, clock, app_client)
    out = app_client.post("/logout", content=f"csrf={csrf}", headers=FORM)
    assert out.status_code == 303 and out.headers["location"] == "/login"
    # A copy of the old cookie is worth nothing now: the session row is gone.
    app_client.cookies.set(COOKIE, session_id)
    assert not signed_in(app_client)
    assert accounts.session(store, session_id, now(clock)) is None
    assert [e.action for e in audit.entries(store)][-2:] == ["signin", "signout"]


def test_failed_sign_ins_are_throttled_per_address(
    app_client: TestClient, store: Storage, clock: FakeClock
) -> None:
    good = named(store, clock)
    for _ in range(accounts.FAILS_PER_CLIENT):
        assert sign_in(app_client, "mat_wrong").status_code == 401
    refused = sign_in(app_client, good, lang="ja")  # even the right token waits
    assert refused.status_code == 429
    retry = int(refused.headers["retry-after"])
    assert 0 < retry <= accounts.FAIL_WINDOW_MS // 1000
    assert "サインインの失敗が続いた" in refused.text and re.search(r"\d+ 分後", refused.text)
    assert "Too many failed sign-ins" in sign_in(app_client, good).text
    clock.advance(retry)
    assert sign_in(app_client, good).status_code == 303


def test_throttling_is_shared_through_the_database_and_counts_all_addresses(
    store: Storage, clock: FakeClock
) -> None:
    # Two server apps on one database stand for two processes behind a load balancer.
    second = Storage(store.url)
    try:
        one = TestClient(create_app(Settings(db_url=store.url), store, clock), follow_redirects=False)
        two = TestClient(create_app(Settings(db_url=store.url), second, clock), follow_redirects=False)
        with one, two:
            for _ in range(accounts.FAILS_PER_CLIENT):
                assert sign_in(one, "mat_wrong").status_code == 401
            assert sign_in(two, "mat_wrong").status_code == 429
            clock.advance(accounts.FAIL_WINDOW_MS / 1000)
            # Many addresses, each under its own limit, together reach the overall one.
            for i in range(accounts.FAILS_OVERALL):
                accounts.record_failed_signin(
                    store, f"10.0.{i // 250}.{i % 250}", reason="unknown", now=now(clock)
                )
            assert sign_in(two, named(store, clock)).status_code == 429
    finally:
        second.dispose()


def test_admin_api_roles_expiry_and_revocation(
    app_client: TestClient, store: Storage, clock: FakeClock
) -> None:
    viewer = {"Authorization": f"Bearer {named(store, clock, 'dana', role='viewer')}"}
    admin = {"Authorization": f"Bearer {named(store, clock, 'erin', role='admin', expires='1d')}"}
    assert app_client.get("/v1/admin/devices", headers=viewer).status_code == 200
    assert app_client.get("/v1/admin/tokens", headers=viewer).status_code == 200
    denied = app_client.post("/v1/admin/tokens", headers=viewer, json={"name": "x", "role": "admin"})
    assert denied.status_code == 403 and "viewer" in denied.json()["detail"]
    made = app_client.post("/v1/admin/tokens", headers=admin, json={"name": "frank", "role": "viewer"})
    assert made.status_code == 201 and made.json()["token"].startswith("mat_")
    frank = {"Authorization": f"Bearer {made.json()['token']}"}
    assert app_client.get("/v1/admin/devices", headers=frank).status_code == 200
    revoked = app_client.post(f"/v1/admin/tokens/{made.json()['id']}/revoke", headers=admin)
    assert revoked.status_code == 200 and revoked.json()["active"] is False
    gone = app_client.get("/v1/admin/devices", headers=frank)
    assert gone.status_code == 401 and "revoked" in gone.json()["detail"]
    clock.advance(86401)
    expired = app_client.get("/v1/admin/devices", headers=admin)
    assert expired.status_code == 401 and "expired" in expired.json()["detail"]
    listed = {t["name"]: t for t in app_client.get("/v1/admin/tokens", headers=viewer).json()["tokens"]}
    assert listed["erin"]["active"] is False and listed["frank"]["revoked_at"] is not None
    assert "token" not in listed["dana"]  # the token itself is shown once, at creation


def test_tokens_made_before_names_work_as_admin_named_legacy(
    app_client: TestClient, store: Storage, clock: FakeClock
) -> None:
    legacy = admin_token(store)  # an admin_tokens row without details, as before migration 0003
    headers = {"Authorization": f"Bearer {legacy}"}
    tokens = app_client.get("/v1/admin/tokens", headers=headers).json()["tokens"]
    assert [(t["name"], t["role"], t["legacy"]) for t in tokens] == [
        (f"legacy-{tokens[0]['id']}", "admin", True)
    ]
    made = app_client.post("/v1/admin/tokens", headers=headers, json={"name": "gina", "expires": None})
    assert made.status_code == 201 and made.json()["expires_at"] is None
    assert audit.entries(store, action="token.create")[0].actor == tokens[0]["name"]
    bad = app_client.post("/v1/admin/tokens", headers=headers, json={"name": "legacy-9"})
    assert bad.status_code == 400 and "reserved" in bad.json()["detail"]
    assert sign_in(app_client, legacy).status_code == 303


def test_a_viewer_session_cannot_act_in_the_console(
    app_client: TestClient, store: Storage, clock: FakeClock
) -> None:
    sign_in(app_client, named(store, clock, "hana", role="viewer"))
    csrf = csrf_of(store, clock, app_client)
    refused = app_client.post("/console/devices/d1/revoke", content=f"csrf={csrf}", headers=FORM)
    assert refused.status_code == 403 and "viewer" in refused.text


def test_sign_in_returns_to_the_page_asked_for_and_only_on_this_server(
    app_client: TestClient, store: Storage, clock: FakeClock
) -> None:
    form = app_client.get("/login", params={"next": "/devices/d1?lang=ja"})
    assert 'name="next" value="/devices/d1?lang=ja"' in form.text
    token = named(store, clock)
    back = app_client.post("/login", content=f"token={token}&next=%2Fdevices%2Fd1", headers=FORM)
    assert back.status_code == 303 and back.headers["location"] == "/devices/d1"
    assert app_client.get("/login", params={"next": "/events"}).headers["location"] == "/events"
    for evil in ("//evil.example/", "https://evil.example/", "/\\evil.example", "javascript:alert(1)"):
        app_client.cookies.clear()
        sent = app_client.post("/login", content=f"token={token}&next={quote(evil, safe='')}", headers=FORM)
        assert sent.headers["location"] == "/", evil
