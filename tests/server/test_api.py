"""The server API in-process (httpx ASGI transport): enrollment, auth matrix, ingest rules, policies, admin."""

from __future__ import annotations

import gzip
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from agent.report.events import build_record, rule_context, stamp_device
from agent.report.stream import AgentEvent, Kind
from core.clock import FakeClock
from server.app import create_app
from server.session import COOKIE
from server.settings import Settings
from server.storage import Storage, ms
from tests.harness.live_server import admin_token, enroll_secret, signed_policy, signing_key


def event(
    device_id: str, seq: int, clock: FakeClock, kind: Kind = Kind.POSTURE_FINDING, **data: Any
) -> dict[str, Any]:
    if kind == Kind.POSTURE_FINDING and not data:
        data = {"check_id": f"check-{seq}", "status": "fail", "mode": "warn", "enforcement": "warn"}
    record = build_record(AgentEvent(kind, clock.now(), data), rule_context())
    record["metadata"]["sequence"] = seq
    return stamp_device(record, device_id)


def ndjson(records: list[Any]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def enroll(client: TestClient, storage: Storage, **kwargs: Any) -> tuple[str, dict[str, str]]:
    secret = enroll_secret(storage, **kwargs)
    response = client.post("/v1/enroll", json={"secret": secret, "hostname": "pc-01", "os": "linux"})
    assert response.status_code == 200, response.text
    doc = response.json()
    assert doc["token"].startswith("mdt_") and doc["group"] == "default"
    return doc["device_id"], {"Authorization": f"Bearer {doc['token']}"}


def post_events(client: TestClient, headers: dict[str, str], body: bytes, gz: bool = False) -> Any:
    h = {**headers, "Content-Type": "application/x-ndjson"}
    if gz:
        h["Content-Encoding"] = "gzip"
        body = gzip.compress(body)
    return client.post("/v1/events", content=body, headers=h)


# --- enrollment ---------------------------------------------------------------------------------------------------


def test_enroll_stores_only_token_hashes(client: TestClient, storage: Storage, db_url: str) -> None:
    secret = enroll_secret(storage)
    response = client.post("/v1/enroll", json={"secret": secret})
    token = response.json()["token"]
    raw = Path(db_url.removeprefix("sqlite:///")).read_bytes()
    assert token.encode() not in raw and secret.encode() not in raw


def test_used_up_secret_is_refused(client: TestClient, storage: Storage) -> None:
    secret = enroll_secret(storage, uses=2)
    assert client.post("/v1/enroll", json={"secret": secret}).status_code == 200
    assert client.post("/v1/enroll", json={"secret": secret}).status_code == 200
    third = client.post("/v1/enroll", json={"secret": secret})
    assert third.status_code == 403 and "used up" in third.json()["detail"]
    assert len(storage.devices()) == 2


def test_expired_secret_is_refused(client: TestClient, storage: Storage, clock: FakeClock) -> None:
    secret = enroll_secret(storage, uses=5, expires_at=ms(clock.now() + timedelta(hours=1)))
    assert client.post("/v1/enroll", json={"secret": secret}).status_code == 200
    clock.advance(3601)
    late = client.post("/v1/enroll", json={"secret": secret})
    assert late.status_code == 403 and "expired" in late.json()["detail"]


def test_unknown_secret_is_refused(client: TestClient) -> None:
    assert client.post("/v1/enroll", json={"secret": "mes_nope"}).status_code == 401


# --- auth matrix --------------------------------------------------------------------------------------------------

DEVICE_ENDPOINTS = [("GET", "/v1/policy"), ("POST", "/v1/events"), ("POST", "/v1/checkin")]
ADMIN_ENDPOINTS = [("GET", "/v1/admin/devices"), ("GET", "/v1/admin/events"), ("POST", "/v1/admin/policies")]


def _call(client: TestClient, method: str, path: str, headers: dict[str, str]) -> int:
    body: dict[str, Any] = {"content": b"{}"} if method == "POST" else {}
    return client.request(
        method, path, headers={**headers, "Content-Type": "application/json"}, **body
    ).status_code


def test_auth_matrix(client: TestClient, storage: Storage, clock: FakeClock) -> None:
    device_a, headers_a = enroll(client, storage)
    _device_b, headers_b = enroll(client, storage)
    admin = {"Authorization": f"Bearer {admin_token(storage)}"}
    wrong = {"Authorization": "Bearer mdt_not-a-real-token"}
    for method, path in DEVICE_ENDPOINTS:
        assert _call(client, method, path, {}) == 401, path
        assert _call(client, method, path, wrong) == 401, path
        assert _call(client, method, path, {"Authorization": "Basic Zm9vOmJhcg=="}) == 401, path
        assert _call(client, method, path, admin) == 403, path
    for method, path in ADMIN_ENDPOINTS:
        assert _call(client, method, path, {}) == 401, path
        assert _call(client, method, path, wrong) == 401, path
        assert _call(client, method, path, headers_a) == 403, path
    # another device's token cannot send this device's events
    response = post_events(client, headers_b, ndjson([event(device_a, 1, clock)]))
    assert response.status_code == 403
    assert storage.count_events() == 0
    # 401 answers say how to authenticate
    assert client.get("/v1/policy").headers["WWW-Authenticate"] == "Bearer"


def test_dashboard_requires_admin_and_speaks_ja_en(client: TestClient, storage: Storage) -> None:
    device_id, _ = enroll(client, storage)
    anonymous = client.get("/")
    assert "admin" in anonymous.text.lower() and device_id not in anonymous.text
    client.cookies.set(COOKIE, "mdt_wrong")  # not a session id (and never a token)
    refused = client.get("/", follow_redirects=False)
    assert refused.status_code == 303 and refused.headers["location"] == "/login?next=%2F"
    client.cookies.clear()
    token = admin_token(storage)
    login = client.post(
        "/login", content=f"token={token}", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert login.status_code == 200  # followed the redirect to the dashboard
    english = client.get("/?lang=en")
    assert device_id in english.text and "Devices" in english.text and "never seen" in english.text
    client.cookies.delete("lang")  # ?lang=en is remembered; without it the browser's language decides
    japanese = client.get("/", headers={"Accept-Language": "ja-JP"})
    assert "端末" in japanese.text and "未接続" in japanese.text


# --- ingest -------------------------------------------------------------------------------------------------------


def test_malformed_event_is_rejected_alone(client: TestClient, storage: Storage, clock: FakeClock) -> None:
    device_id, headers = enroll(client, storage)
    good = [event(device_id, i, clock) for i in range(1, 6)]
    bad_type = event(device_id, 6, clock)
    bad_type["type_uid"] = 1
    leaking = event(device_id, 7, clock)
    leaking["unmapped"]["title"] = "顧客 山田太郎"
    lines = ndjson(good[:2]) + b"{not json\n" + ndjson([bad_type]) + ndjson(good[2:]) + ndjson([leaking])
    response = post_events(client, headers, lines, gz=True)
    assert response.status_code == 200
    doc = response.json()
    assert doc["accepted"] == 5 and doc["duplicate"] == 0
    assert [r["index"] for r in doc["rejected"]] == [2, 3, 7]
    assert "type_uid" in doc["rejected"][1]["reason"]
    assert "privacy" in doc["rejected"][2]["reason"]
    assert storage.count_events(device_id) == 5
    assert "山田" not in json.dumps(storage.events(limit=100), ensure_ascii=False)


def test_resent_events_are_stored_once(client: TestClient, storage: Storage, clock: FakeClock) -> None:
    device_id, headers = enroll(client, storage)
    batch = [event(device_id, i, clock) for i in range(1, 11)]
    first = post_events(client, headers, ndjson(batch)).json()
    again = post_events(client, headers, ndjson(batch + batch[:3]), gz=True).json()
    assert (first["accepted"], first["duplicate"]) == (10, 0)
    assert (again["accepted"], again["duplicate"]) == (0, 13)
    assert storage.count_events() == 10


def test_sequence_gaps_are_recorded_and_filled(
    client: TestClient, storage: Storage, clock: FakeClock
) -> None:
    device_id, headers = enroll(client, storage)
    batch = {i: event(device_id, i, clock) for i in range(1, 11)}
    post_events(client, headers, ndjson([batch[i] for i in (1, 2, 6, 7, 10)]))
    assert [(g.first, g.last) for g in storage.gaps_of(device_id)] == [(3, 5), (8, 9)]
    post_events(client, headers, ndjson([batch[4], batch[8], batch[9]]))
    assert [(g.first, g.last) for g in storage.gaps_of(device_id)] == [(3, 3), (5, 5)]
    device = storage.devices()[0]
    assert device["gaps"] == 2 and device["missing_events"] == 2 and device["max_sequence"] == 10


def test_oversize_bodies_get_413(storage: Storage, clock: FakeClock, db_url: str) -> None:
    settings = Settings(
        db_url=db_url, max_body_bytes=2000, max_decompressed_bytes=50_000, max_batch_events=20
    )
    with TestClient(create_app(settings, storage, clock)) as client:
        device_id, headers = enroll(client, storage)
        assert post_events(client, headers, b"x" * 2001).status_code == 413
        bomb = gzip.compress(b" " * 60_000)  # small on the wire, too large unpacked
        assert len(bomb) < 2000
        response = client.post("/v1/events", content=bomb, headers={**headers, "Content-Encoding": "gzip"})
        assert response.status_code == 413
        many = ndjson([event(device_id, i, clock) for i in range(1, 22)])
        assert post_events(client, headers, many, gz=True).status_code == 413
        assert (
            post_events(client, headers, b"\x1f\x8bnot gzip", gz=False).status_code == 200
        )  # plain: 1 bad line
        assert (
            client.post(
                "/v1/events", content=b"garbage", headers={**headers, "Content-Encoding": "gzip"}
            ).status_code
            == 400
        )
        assert storage.count_events() == 0


def test_overload_answers_429_and_503_with_retry_after(
    storage: Storage, clock: FakeClock, db_url: str
) -> None:
    settings = Settings(db_url=db_url, device_rate_eps=10, device_burst=20)
    with TestClient(create_app(settings, storage, clock)) as client:
        device_id, headers = enroll(client, storage)
        assert (
            post_events(
                client, headers, ndjson([event(device_id, i, clock) for i in range(1, 16)])
            ).status_code
            == 200
        )
        limited = post_events(client, headers, ndjson([event(device_id, i, clock) for i in range(16, 31)]))
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
        clock.advance(2)  # 20 tokens back
        assert (
            post_events(
                client, headers, ndjson([event(device_id, i, clock) for i in range(16, 31)])
            ).status_code
            == 200
        )
    busy = Settings(db_url=db_url, max_concurrent_ingest=0)
    with TestClient(create_app(busy, storage, clock)) as client:
        response = post_events(client, headers, ndjson([event(device_id, 40, clock)]))
        assert response.status_code == 503 and response.headers["Retry-After"] == "1"
        # The ceiling comes before the token is looked up: over it, no request costs a database read.
        stranger = post_events(client, {"Authorization": "Bearer not-a-token"}, ndjson([]))
        assert stranger.status_code == 503 and stranger.json()["detail"] == "server busy; retry later"
    one = Settings(db_url=db_url, max_concurrent_ingest=1)
    with TestClient(create_app(one, storage, clock)) as client:
        for seq in (41, 42, 43):  # each request gives its place back, whatever its answer
            assert post_events(client, headers, ndjson([event(device_id, seq, clock)])).status_code == 200
            assert post_events(client, {"Authorization": "Bearer x"}, ndjson([])).status_code == 401


def test_checkin_silence_and_clean_stop(client: TestClient, storage: Storage, clock: FakeClock) -> None:
    _device_id, headers = enroll(client, storage)
    admin = {"Authorization": f"Bearer {admin_token(storage)}"}

    def status() -> str:
        return str(client.get("/v1/admin/devices", headers=admin).json()["devices"][0]["status"])

    assert status() == "never_seen"
    body = {"state": "non_compliant", "failing": ["network.vpn"], "heartbeat_s": 60, "hostname": "pc-01"}
    assert client.post("/v1/checkin", json=body, headers=headers).status_code == 200
    assert status() == "non_compliant"
    clock.advance(179)
    assert status() == "non_compliant"
    clock.advance(2)  # 3 heartbeats without a word and no clean stop
    assert status() == "silent"
    client.post("/v1/checkin", json={"state": "online", "heartbeat_s": 60, "stopping": True}, headers=headers)
    clock.advance(3600)
    assert status() == "stopped"


def test_admin_events_filters(client: TestClient, storage: Storage, clock: FakeClock) -> None:
    device_a, headers_a = enroll(client, storage)
    device_b, headers_b = enroll(client, storage)
    post_events(
        client,
        headers_a,
        ndjson([event(device_a, 1, clock), event(device_a, 2, clock, Kind.VPN_DOWN, interface="tun0")]),
    )
    clock.advance(60)
    since = clock.now()
    post_events(
        client, headers_b, ndjson([event(device_b, 1, clock, Kind.SESSION_LOCKED, method="loginctl")])
    )
    admin = {"Authorization": f"Bearer {admin_token(storage)}"}
    get = lambda **q: client.get("/v1/admin/events", params=q, headers=admin).json()["events"]  # noqa: E731
    assert len(get()) == 3
    assert {e["device"]["uid"] for e in get(device=device_a)} == {device_a}
    assert [e["class_uid"] for e in get(**{"class": 4014})] == [4014]
    assert [e["device"]["uid"] for e in get(since=since.isoformat())] == [device_b]
    assert len(get(limit=1)) == 1
    assert client.get("/v1/admin/events", params={"limit": 0}, headers=admin).status_code == 422


# --- policies -----------------------------------------------------------------------------------------------------


def test_policy_upload_is_verified_and_served_with_etag(
    storage: Storage, clock: FakeClock, db_url: str, tmp_path: Path
) -> None:
    key, pub = signing_key(tmp_path / "keys")
    other_key, _ = signing_key(tmp_path / "other")
    settings = Settings(db_url=db_url, trusted_keys=(pub,))
    with TestClient(create_app(settings, storage, clock)) as client:
        admin = {"Authorization": f"Bearer {admin_token(storage)}"}
        _device, headers = enroll(client, storage)
        assert client.get("/v1/policy", headers=headers).status_code == 404
        forged = client.post("/v1/admin/policies", content=signed_policy(other_key, 1), headers=admin)
        assert forged.status_code == 422
        detail = forged.json()["detail"]
        assert detail.startswith("bundle rejected (unknown_key): ") and "policy rejected" not in detail
        tampered = bytearray(signed_policy(key, 1))
        tampered[tampered.index(b'"payload"') + 15] ^= 1
        assert client.post("/v1/admin/policies", content=bytes(tampered), headers=admin).status_code == 422
        bundle = signed_policy(key, 2)
        published = client.post("/v1/admin/policies", content=bundle, headers=admin)
        assert published.status_code == 201 and published.json()["version"] == 2
        assert (
            client.post("/v1/admin/policies", content=signed_policy(key, 1), headers=admin).status_code == 409
        )
        fetched = client.get("/v1/policy", headers=headers)
        assert fetched.status_code == 200 and fetched.content == bundle
        etag = fetched.headers["ETag"]
        cached = client.get("/v1/policy", headers={**headers, "If-None-Match": etag})
        assert cached.status_code == 304 and cached.content == b""
        newer = signed_policy(key, 3)
        client.post("/v1/admin/policies", content=newer, headers=admin)
        refreshed = client.get("/v1/policy", headers={**headers, "If-None-Match": etag})
        assert refreshed.status_code == 200 and refreshed.content == newer


def test_health_and_readiness(storage: Storage, clock: FakeClock, tmp_path: Path) -> None:
    empty = Storage(f"sqlite:///{tmp_path / 'empty.db'}")
    with TestClient(create_app(Settings(db_url=empty.url), empty, clock)) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        not_ready = client.get("/readyz")
        assert not_ready.status_code == 503 and "migrate" in not_ready.json()["detail"]
    with TestClient(create_app(Settings(db_url=storage.url), storage, clock)) as client:
        assert client.get("/readyz").status_code == 200


def test_openapi_document_lists_the_api(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/v1/enroll",
        "/v1/policy",
        "/v1/events",
        "/v1/checkin",
        "/v1/admin/devices",
        "/v1/admin/events",
        "/v1/admin/policies",
        "/healthz",
        "/readyz",
    ):
        assert path in paths


@pytest.mark.parametrize("kind", list(Kind))
def test_every_agent_kind_is_accepted_by_the_server(
    kind: Kind, client: TestClient, storage: Storage, clock: FakeClock
) -> None:
    device_id, headers = enroll(client, storage)
    record = event(
        device_id,
        1,
        clock,
        kind,
        **({"check_id": "x", "status": "pass"} if kind == Kind.POSTURE_FINDING else {}),
    )
    doc = post_events(client, headers, ndjson([record])).json()
    assert doc["accepted"] == 1, doc
