"""The Mamori server: ``create_app(settings, storage, clock)`` builds the FastAPI application (SPEC.md, Server API).

Stateless apart from the database (and per-process overload counters), so several processes can run behind a
load balancer on PostgreSQL. Handlers that touch the database are synchronous code run in Starlette's thread
pool; ``POST /v1/events`` reads its body asynchronously with a size limit first. The routes are in
``server/routes/``; what they share is one :class:`~server.context.ServerContext`.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from core import __version__
from core.clock import Clock
from server.context import ServerContext
from server.overload import Overload
from server.publish import load_trusted
from server.routes import admin, alerts, console, device, health, lifecycle, signin
from server.settings import Settings
from server.storage import Storage


def create_app(settings: Settings, storage: Storage, clock: Clock) -> FastAPI:
    from server.alerts import alert_service, arrival_rules
    from server.console.state import derive
    from server.forwarders import ForwardingService
    from server.retention import RetentionService

    # In each batch's ingest transaction, in this order: the console's device state, then the alert rules.
    # Assigned, not appended: a second app on the same storage (tests) must not run them twice.
    storage.after_insert = (derive, arrival_rules(settings))
    forwarding = ForwardingService(storage, settings.forwarders, clock)
    alerting = alert_service(storage, settings, clock)
    retention = RetentionService(storage, settings.retention, clock)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        forwarding.start()  # installs (or, with no forwarders, removes) the capture trigger
        alerting.start()
        retention.start()
        try:
            yield
        finally:
            retention.stop()
            alerting.stop()
            forwarding.stop()

    app = FastAPI(
        title="Mamori server",
        version=__version__,
        description="Enrollment, policy distribution and event ingest for Mamori agents (docs/server-api.md).",
        lifespan=lifespan,
    )
    app.state.alerting = alerting
    app.state.context = ServerContext(
        settings=settings,
        storage=storage,
        clock=clock,
        overload=Overload(settings, clock),
        trusted=load_trusted(settings),
        forwarding=forwarding,
    )
    # Inclusion order is the order of the paths in the OpenAPI document.
    app.include_router(health.router)
    app.include_router(device.router)
    app.include_router(admin.router(settings.default_group))
    app.include_router(lifecycle.router())
    app.include_router(signin.router)
    app.include_router(console.router)
    app.include_router(alerts.router())
    return app


# Longest time a thread waiting for the GIL lets a CPU-bound thread run on. The default, 5 ms, is paid by the
# ingest thread each time it takes the GIL back from a thread parsing the next batch (the SQLite driver releases
# the GIL around every database call, a dozen per transaction, while the write lock is held).
GIL_SWITCH_INTERVAL_S = 0.0005


def shorten_gil_switch_interval() -> None:
    """Called by the server process entry points (``mamori server run``, server/asgi.py), not by create_app:
    it is a process-wide setting."""
    if sys.getswitchinterval() > GIL_SWITCH_INTERVAL_S:
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)


__all__ = ["create_app", "shorten_gil_switch_interval"]
