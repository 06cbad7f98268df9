"""API fuzzing from the server's own OpenAPI document (schemathesis): no input, with or without valid
credentials, makes the server answer 5xx."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.report.events import build_record, rule_context, stamp_device
from agent.report.stream import AgentEvent, Kind
from core.clock import FakeClock
from core.records import KINDS
from server import auth
from server.app import create_app
from server.settings import Settings
from server.storage import Storage, devices
from tests.harness.live_server import admin_token, migrated, pg_url, reset_pg, signed_policy, signing_key

DEVICE_ID = "dfuzz0000000000000000001"
DEVICE_TOKEN = "mdt_fuzz-device-token"
NOW = FakeClock().now()


def _line(kind: Kind, seq: int, mutate: dict[str, Any]) -> bytes:
    record = stamp_device(build_record(AgentEvent(kind, NOW, {}), rule_context()), DEVICE_ID)
    record["metadata"]["sequence"] = seq
    record.update(mutate)
    return json.dumps(record).encode()


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=10,
)
LINES = st.lists(
    st.builds(
        _line,
        st.sampled_from(sorted(KINDS)).map(Kind),
        st.integers(min_value=-5, max_value=2**64),
        st.dictionaries(
            st.sampled_from(["time", "type_uid", "class_uid", "metadata", "device", "unmapped", "x"]),
            JSONISH,
            max_size=2,
        ),
    )
    | st.binary(max_size=200),
    max_size=20,
)
NDJSON = st.one_of(
    LINES.map(b"\n".join),
    LINES.map(lambda lines: gzip.compress(b"\n".join(lines))),
    st.binary(max_size=2000),
)
schemathesis.openapi.media_type("application/x-ndjson", NDJSON)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def api(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Any, dict[str, str]]]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    if request.param == "postgres":
        url = pg_url()
        reset_pg(url)
    else:
        url = f"sqlite:///{tmp / 'fuzz.db'}"
    storage: Storage = migrated(url)
    with storage.write() as conn:
        conn.execute(
            devices.insert().values(
                id=DEVICE_ID, token_hash=auth.token_hash(DEVICE_TOKEN), group_name="default", enrolled_at=0
            )
        )
    private, pub = signing_key(tmp / "keys")
    app = create_app(Settings(db_url=storage.url, trusted_keys=(pub,)), storage, FakeClock())
    tokens = {"none": "", "device": DEVICE_TOKEN, "admin": admin_token(storage)}
    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        headers = {"Authorization": f"Bearer {tokens['admin']}"}
        assert (
            client.post("/v1/admin/policies", content=signed_policy(private, 1), headers=headers).status_code
            == 201
        )
    app.state.fuzz_storage = storage
    yield app, tokens
    storage.dispose()


def _operations(app: Any) -> dict[str, Any]:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    return {op.ok().label: op.ok() for op in schema.get_all_operations()}


OPERATIONS = [
    "POST /v1/enroll",
    "GET /v1/policy",
    "POST /v1/events",
    "POST /v1/checkin",
    "GET /v1/admin/devices",
    "GET /v1/admin/events",
    "GET /v1/admin/events/export",
    "GET /v1/admin/forwarders",
    "GET /v1/admin/devices/{device_id}/compliance",
    "POST /v1/admin/policies",
    "GET /v1/admin/devices/{device_id}",
    "DELETE /v1/admin/devices/{device_id}",
    "POST /v1/admin/devices/{device_id}/revoke",
    "POST /v1/admin/devices/{device_id}/replaced",
    "GET /v1/admin/tokens",
    "POST /v1/admin/tokens",
    "POST /v1/admin/tokens/{token_id}/revoke",
    "GET /v1/admin/enroll-secrets",
    "POST /v1/admin/enroll-secrets/{secret_id}/revoke",
    "GET /v1/admin/audit",
    "GET /v1/admin/audit/verify",
    "GET /v1/admin/alerts",
    "POST /v1/admin/alerts/{alert_id}/ack",
    "GET /healthz",
    "GET /readyz",
]


def test_the_fuzzed_operations_are_all_of_the_api(api: tuple[Any, dict[str, str]]) -> None:
    assert sorted(_operations(api[0])) == sorted(OPERATIONS)


@pytest.mark.parametrize("label", OPERATIONS)
def test_no_input_makes_the_server_fail(label: str, api: tuple[Any, dict[str, str]]) -> None:
    app, tokens = api
    operation = _operations(app)[label]

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(case=operation.as_strategy())
    def fuzz(case: Any) -> None:
        for who, token in tokens.items():
            headers = dict(case.headers or {})
            if token:
                headers["Authorization"] = f"Bearer {token}"
            response = case.call(headers=headers)
            assert response.status_code < 500, f"{who}: {label}: {response.status_code} {response.text[:300]}"

    fuzz()
    if label == "POST /v1/events":
        # the generated batches are not only noise: valid events among them were stored
        assert app.state.fuzz_storage.count_events(DEVICE_ID) > 0
