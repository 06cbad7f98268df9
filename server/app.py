"""The Mamori server: ``create_app(settings, storage, clock)`` builds the FastAPI application (SPEC.md, Server API).

Stateless apart from the database (and per-process overload counters), so several processes can run behind a
load balancer on PostgreSQL. Handlers that touch the database are synchronous code run in Starlette's thread
pool; ``POST /v1/events`` reads its body asynchronously with a size limit first.
"""

import logging
import math
import sys
import threading
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from core import __version__
from core.clock import Clock
from agent.report.events import validate_record
from server import auth
from server.settings import Settings
from server.status import device_status
from server.storage import (
    Device,
    EnrollRefusedError,
    EventRow,
    PolicyConflictError,
    Storage,
    ms,
)

logger = logging.getLogger(__name__)

NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"
GROUP_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
COOKIE = "mamori_admin"

_bearer = HTTPBearer(auto_error=False, description="device token (mdt_...) or admin token (mat_...)")


# --- request / response models (the OpenAPI document) ----------------------------------------------------------


class EnrollRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    secret: str = Field(min_length=1, max_length=200, pattern=NO_CONTROL)
    hostname: str | None = Field(default=None, max_length=255, pattern=NO_CONTROL)
    os: str | None = Field(default=None, max_length=32, pattern=NO_CONTROL)


class EnrollResponse(BaseModel):
    device_id: str
    token: str
    group: str


class CheckinRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    state: Literal["online", "away", "non_compliant"] | None = None
    stage: str | None = Field(default=None, max_length=32, pattern=NO_CONTROL)
    failing: list[Annotated[str, Field(max_length=64, pattern=NO_CONTROL)]] | None = Field(
        default=None, max_length=64
    )
    policy_id: str | None = Field(default=None, max_length=64, pattern=NO_CONTROL)
    policy_version: int | None = Field(default=None, ge=0, le=2**62)
    uptime_s: float | None = Field(default=None, ge=0, le=1e12, allow_inf_nan=False)
    agent_version: str | None = Field(default=None, max_length=32, pattern=NO_CONTROL)
    hostname: str | None = Field(default=None, max_length=255, pattern=NO_CONTROL)
    heartbeat_s: float | None = Field(default=None, gt=0, le=7 * 86400, allow_inf_nan=False)
    last_sequence: int | None = Field(default=None, ge=0, le=2**62)
    stopping: bool = False
    os: str | None = Field(default=None, max_length=32, pattern=NO_CONTROL)


class CheckinResponse(BaseModel):
    status: str
    heartbeat_s: float | None = None


class RejectedEvent(BaseModel):
    index: int
    uid: str | None = None
    reason: str


class IngestResponse(BaseModel):
    accepted: int
    duplicate: int
    rejected: list[RejectedEvent]


class PolicyPublished(BaseModel):
    group: str
    policy_id: str
    version: int
    etag: str


# --- overload ---------------------------------------------------------------------------------------------------


class Overload:
    """Concurrent-ingest ceiling (-> 503) and a per-device token bucket of events (-> 429)."""

    def __init__(self, settings: Settings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        self._lock = threading.Lock()
        self._inflight = 0
        self._buckets: dict[str, tuple[float, float]] = {}

    def enter(self) -> bool:
        with self._lock:
            if self._inflight >= self.settings.max_concurrent_ingest:
                return False
            self._inflight += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self._inflight -= 1

    def take(self, device_id: str, events: int) -> float:
        """Take ``events`` tokens; 0.0 when allowed, else seconds until the bucket would allow it."""
        rate, burst = self.settings.device_rate_eps, self.settings.device_burst
        now = self.clock.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(device_id, (burst, now))
            tokens = min(burst, tokens + max(0.0, now - last) * rate)
            if events <= tokens:
                self._buckets[device_id] = (tokens - events, now)
                return 0.0
            self._buckets[device_id] = (tokens, now)
            needed = min(events, burst) - tokens
            return max(1.0, needed / rate) if rate > 0 else 60.0


def _retry(status: int, seconds: float, detail: str) -> JSONResponse:
    return JSONResponse(
        {"detail": detail}, status_code=status, headers={"Retry-After": str(max(1, math.ceil(seconds)))}
    )


# --- ingest parsing ---------------------------------------------------------------------------------------------


@dataclass
class ParsedBatch:
    rows: list[EventRow]
    rejected: list[dict[str, Any]]
    foreign_device: bool


def parse_batch(raw: bytes, device_id: str, max_event_bytes: int) -> ParsedBatch:
    """NDJSON -> validated rows; each bad line is rejected alone (index = position among non-empty lines).

    Lines are decoded with orjson (strict RFC 8259 UTF-8: no NaN/Infinity, no lone surrogates, integers within
    64 bits, all of which ``validate_record`` would refuse anyway) and stored as received, never re-serialised.
    """
    rows: list[EventRow] = []
    rejected: list[dict[str, Any]] = []
    foreign = False
    loads = orjson.loads
    index = -1
    for line in raw.split(b"\n"):
        if not line.strip():
            continue
        index += 1
        if len(line) > max_event_bytes:
            rejected.append(
                {"index": index, "uid": None, "reason": f"(top): event larger than {max_event_bytes} bytes"}
            )
            continue
        try:
            record = loads(line)
        except orjson.JSONDecodeError:
            rejected.append({"index": index, "uid": None, "reason": "(top): not a JSON object"})
            continue
        problems = validate_record(record)
        if problems:
            uid = None
            if type(record) is dict:
                meta = record.get("metadata")
                if type(meta) is dict and type(meta.get("uid")) is str:
                    uid = meta["uid"][:64]
            rejected.append({"index": index, "uid": uid, "reason": "; ".join(problems[:3])[:500]})
            device = record.get("device") if type(record) is dict else None
            if type(device) is dict and type(device.get("uid")) is str and device["uid"] != device_id:
                foreign = True
            continue
        meta = record["metadata"]
        if record["device"]["uid"] != device_id:  # validated: device.uid is a string
            foreign = True
        rows.append(
            EventRow(  # uid, sequence, class_uid, type_uid, severity_id, event_code, time, body
                meta["uid"],
                meta["sequence"],
                record["class_uid"],
                record["type_uid"],
                record["severity_id"],
                meta["event_code"],
                record["time"],
                line.decode("utf-8"),  # validated JSON, stored as sent
            )
        )
    return ParsedBatch(rows, rejected, foreign)


def _decompress(raw: bytes, limit: int) -> bytes:
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = decoder.decompress(raw, limit + 1)
    except zlib.error as err:
        raise HTTPException(400, "body is not valid gzip") from err
    if len(out) > limit:
        raise HTTPException(413, f"decompressed body larger than {limit} bytes")
    if not decoder.eof or decoder.unused_data:
        raise HTTPException(400, "body is truncated or has several gzip members")
    return out


# --- the application --------------------------------------------------------------------------------------------


def create_app(settings: Settings, storage: Storage, clock: Clock) -> FastAPI:
    app = FastAPI(
        title="Mamori server",
        version=__version__,
        description="Enrollment, policy distribution and event ingest for Mamori agents (docs/server-api.md).",
    )
    app.state.settings = settings
    app.state.storage = storage
    app.state.clock = clock
    overload = Overload(settings, clock)
    app.state.overload = overload
    trusted = _load_trusted(settings)

    def now_ms() -> int:
        return ms(clock.now())

    def _token(request: Request, creds: HTTPAuthorizationCredentials | None) -> str | None:
        if creds is not None and creds.credentials:
            return creds.credentials[:512]
        return auth.bearer(request.headers.get("authorization"))

    def device_auth(
        request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> Device:
        token = _token(request, creds)
        if token is None:
            raise HTTPException(401, "device token required", headers={"WWW-Authenticate": "Bearer"})
        hashed = auth.token_hash(token)
        device = storage.device_by_token(hashed)
        if device is not None and not device.revoked:
            return device
        if storage.is_admin(hashed):
            raise HTTPException(403, "an admin token cannot act as a device")
        raise HTTPException(401, "unknown or revoked device token", headers={"WWW-Authenticate": "Bearer"})

    def admin_auth(
        request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> None:
        token = _token(request, creds)
        if token is None:
            raise HTTPException(401, "admin token required", headers={"WWW-Authenticate": "Bearer"})
        hashed = auth.token_hash(token)
        if storage.is_admin(hashed):
            return
        if storage.device_by_token(hashed) is not None:
            raise HTTPException(403, "a device token cannot use admin endpoints")
        raise HTTPException(401, "unknown admin token", headers={"WWW-Authenticate": "Bearer"})

    def ingest_batch(raw: bytes, gzipped: bool, device: Device) -> Response:
        """Decompress, parse and validate, store; the 200 is built only after ``storage.ingest`` committed."""
        if gzipped:
            raw = _decompress(raw, settings.max_decompressed_bytes)
        parsed = parse_batch(raw, device.id, settings.max_event_bytes)
        total = len(parsed.rows) + len(parsed.rejected)
        if total > settings.max_batch_events:
            raise HTTPException(
                413, f"batch larger than {settings.max_batch_events} events; send smaller batches"
            )
        if parsed.foreign_device:
            raise HTTPException(403, "the batch holds events of another device")
        wait = overload.take(device.id, total)
        if wait > 0:
            return _retry(429, wait, "device over its event rate; retry later")
        try:
            accepted, duplicate = storage.ingest(device.id, parsed.rows, now_ms())
        except Exception as err:
            import sqlalchemy as sa

            if isinstance(err, sa.exc.SQLAlchemyError):
                logger.warning("ingest failed: %s", type(err).__name__)
                return _retry(503, 5, "database unavailable; retry later")
            raise
        body = {"accepted": accepted, "duplicate": duplicate, "rejected": parsed.rejected}
        return Response(orjson.dumps(body), media_type="application/json")

    # --- health ---------------------------------------------------------------------------------------------

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz", tags=["health"], responses={503: {"description": "database unreachable or not migrated"}}
    )
    def readyz() -> JSONResponse:
        from server.migrate import is_current

        if storage.ping() and is_current(storage.engine):
            return JSONResponse({"status": "ready"})
        return _retry(503, 5, "database unreachable or not migrated (run `mamori server migrate`)")

    # --- device API -----------------------------------------------------------------------------------------

    @app.post(
        "/v1/enroll",
        tags=["device"],
        response_model=EnrollResponse,
        responses={401: {"description": "unknown secret"}, 403: {"description": "secret used up or expired"}},
    )
    def enroll(body: EnrollRequest) -> EnrollResponse:
        device_id = auth.new_device_id()
        token = auth.new_token(auth.DEVICE_PREFIX)
        info = {"hostname": body.hostname, "os": body.os}
        try:
            group = storage.enroll(
                auth.token_hash(body.secret), device_id, auth.token_hash(token), info, now_ms()
            )
        except EnrollRefusedError as err:
            status = 401 if err.reason == "unknown" else 403
            raise HTTPException(status, f"enrollment secret {err.reason}; ask IT for a new one") from err
        logger.info("device %s enrolled in group %s", device_id, group)
        return EnrollResponse(device_id=device_id, token=token, group=group)

    @app.get(
        "/v1/policy",
        tags=["device"],
        responses={
            200: {"content": {"application/json": {}}, "description": "the signed bundle (DSSE envelope)"},
            304: {"description": "not modified"},
            404: {"description": "no policy for the device's group"},
        },
    )
    def get_policy(request: Request, device: Annotated[Device, Depends(device_auth)]) -> Response:
        row = storage.current_policy(device.group) or storage.current_policy(settings.default_group)
        if row is None:
            raise HTTPException(404, f"no policy published for group {device.group}")
        etag = f'"{row.etag}"'
        tags = [t.strip() for t in request.headers.get("if-none-match", "").split(",")]
        if etag in tags or "*" in tags or f"W/{etag}" in tags:
            return Response(status_code=304, headers={"ETag": etag})
        return Response(content=bytes(row.bundle), media_type="application/json", headers={"ETag": etag})

    @app.post(
        "/v1/events",
        tags=["device"],
        response_model=IngestResponse,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/x-ndjson": {"schema": {"type": "string"}},
                },
                "description": "one OCSF event per line; Content-Encoding: gzip allowed",
            }
        },
        responses={
            403: {"description": "events of another device"},
            413: {"description": "body, batch or decompressed size too large"},
            429: {"description": "device over its event rate; see Retry-After"},
            503: {"description": "server overloaded or database unavailable; see Retry-After"},
        },
    )
    async def post_events(request: Request, device: Annotated[Device, Depends(device_auth)]) -> Response:
        if not overload.enter():
            return _retry(503, 1, "server busy; retry later")
        try:
            raw = await _read_body(request, settings.max_body_bytes)
            gzipped = "gzip" in request.headers.get("content-encoding", "").lower()
            if not gzipped and len(raw) > settings.max_decompressed_bytes:
                raise HTTPException(413, "body too large")
            # One trip to the thread pool for the CPU and database work of the batch (each trip costs a
            # context switch and a queue wait under load).
            return await run_in_threadpool(ingest_batch, raw, gzipped, device)
        finally:
            overload.leave()

    @app.post("/v1/checkin", tags=["device"], response_model=CheckinResponse)
    def checkin(body: CheckinRequest, device: Annotated[Device, Depends(device_auth)]) -> CheckinResponse:
        storage.checkin(device.id, body.model_dump(exclude_none=True), now_ms())
        return CheckinResponse(status="ok", heartbeat_s=body.heartbeat_s)

    # --- admin API ------------------------------------------------------------------------------------------

    def _devices() -> list[dict[str, Any]]:
        now = now_ms()
        items = storage.devices()
        for item in items:
            item["status"] = device_status(
                last_seen_ms=item["last_seen"],
                stopped=bool(item["stopped"]),
                state=item["state"],
                heartbeat_s=item["heartbeat_s"],
                now_ms=now,
                silence_factor=settings.silence_factor,
                min_silence_s=settings.min_silence_s,
            )
        return items

    @app.get("/v1/admin/devices", tags=["admin"], dependencies=[Depends(admin_auth)])
    def admin_devices() -> dict[str, Any]:
        return {"devices": _devices()}

    @app.get("/v1/admin/events", tags=["admin"], dependencies=[Depends(admin_auth)])
    def admin_events(
        device: Annotated[str | None, Query(max_length=64, pattern=NO_CONTROL)] = None,
        class_uid: Annotated[int | None, Query(alias="class", ge=0, le=99999)] = None,
        since: Annotated[
            datetime | None, Query(description="RFC 3339 instant; events at or after it")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        since_ms = None
        if since is not None:
            since = since if since.tzinfo else since.replace(tzinfo=UTC)
            try:
                since_ms = max(0, min(ms(since), 2**53))
            except (OverflowError, ValueError, OSError) as err:
                raise HTTPException(422, "since is out of range") from err
        return {"events": storage.events(device=device, class_uid=class_uid, since_ms=since_ms, limit=limit)}

    @app.post(
        "/v1/admin/policies",
        tags=["admin"],
        status_code=201,
        response_model=PolicyPublished,
        dependencies=[Depends(admin_auth)],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"type": "object"}}},
                "description": "a signed policy bundle (DSSE envelope) made by `mamori policy sign`",
            }
        },
        responses={409: {"description": "version not newer"}, 422: {"description": "bundle rejected"}},
    )
    async def admin_publish(
        request: Request, group: Annotated[str, Query(pattern=GROUP_PATTERN)] = settings.default_group
    ) -> PolicyPublished:
        from policy.dsse import MAX_BUNDLE_BYTES

        bundle = await _read_body(request, MAX_BUNDLE_BYTES)
        return await run_in_threadpool(publish_policy, storage, trusted, bundle, group, clock.now())

    # --- dashboard ------------------------------------------------------------------------------------------

    @app.get("/", include_in_schema=False, response_class=HTMLResponse)
    def dashboard(request: Request, lang: str | None = None) -> HTMLResponse:
        from server.dashboard import render_dashboard, render_login

        language = _language(request, lang)
        token = request.cookies.get(COOKIE) or auth.bearer(request.headers.get("authorization"))
        if not token or not storage.is_admin(auth.token_hash(token)):
            return HTMLResponse(render_login(language, failed=bool(token)), status_code=401 if token else 200)
        recent = storage.events(limit=50)
        return HTMLResponse(render_dashboard(language, _devices(), recent, clock.now()))

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        from urllib.parse import parse_qs

        form = parse_qs((await _read_body(request, 4096)).decode("utf-8", "replace"))
        token = (form.get("token") or [""])[0].strip()
        if not token or not await run_in_threadpool(storage.is_admin, auth.token_hash(token)):
            return RedirectResponse("/?failed=1", status_code=303)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            COOKIE,
            token,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            max_age=8 * 3600,
        )
        return response

    return app


def publish_policy(
    storage: Storage, trusted: list[Any], bundle: bytes, group: str, now: datetime
) -> PolicyPublished:
    """Verify a signed bundle against the org's trusted keys and store it for ``group``. The server never holds a
    signing key: it can only pass on what IT signed offline."""
    import hashlib

    from policy.errors import BundleRejectedError
    from policy.verify import verify_bundle

    if not trusted:
        raise HTTPException(
            422, "the server has no trusted_keys configured; add the policy public key to server.toml"
        )
    try:
        verified = verify_bundle(bundle, trusted, now)
    except BundleRejectedError as err:
        # err.detail, not str(err): str(err) already starts "policy rejected (reason): ".
        raise HTTPException(422, f"bundle rejected ({err.reason}): {err.detail}") from err
    etag = hashlib.sha256(bundle).hexdigest()
    try:
        storage.store_policy(group, verified.id, verified.version, bundle=bundle, etag=etag, now=ms(now))
    except PolicyConflictError as err:
        raise HTTPException(409, str(err)) from err
    return PolicyPublished(group=group, policy_id=verified.id, version=verified.version, etag=etag)


# Longest time a thread waiting for the GIL lets a CPU-bound thread run on. The default, 5 ms, is paid by the
# ingest thread each time it takes the GIL back from a thread parsing the next batch (the SQLite driver releases
# the GIL around every database call, a dozen per transaction, while the write lock is held).
GIL_SWITCH_INTERVAL_S = 0.0005


def shorten_gil_switch_interval() -> None:
    """Called by the server process entry points (``mamori server run``, server/asgi.py), not by create_app:
    it is a process-wide setting."""
    if sys.getswitchinterval() > GIL_SWITCH_INTERVAL_S:
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)


def _load_trusted(settings: Settings) -> list[Any]:
    if not settings.trusted_keys:
        return []
    from policy.keys import load_trusted_keys

    return list(load_trusted_keys(settings.trusted_keys))


def _language(request: Request, lang: str | None) -> str:
    if lang in ("ja", "en"):
        return lang
    accept = request.headers.get("accept-language", "").lower()
    return "ja" if accept.startswith("ja") else "en"


async def _read_body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise HTTPException(413, f"body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


__all__ = ["create_app", "parse_batch", "publish_policy"]
