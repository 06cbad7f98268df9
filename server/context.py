"""What the routes share, as one typed object: :class:`ServerContext`, built by ``create_app`` and kept on
``app.state``; routes receive it through the :func:`server_context` dependency."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import Request

from core.clock import Clock
from server.overload import Overload
from server.settings import Settings
from server.storage import Storage, ms

if TYPE_CHECKING:
    from policy.keys import TrustedKey


@dataclass(frozen=True)
class ServerContext:
    settings: Settings
    storage: Storage
    clock: Clock
    overload: Overload
    trusted: Sequence[TrustedKey]  # the org's policy public keys (server.toml trusted_keys)
    forwarding: Any = None  # server.forwarders.ForwardingService when [[forwarders]] are configured

    def now_ms(self) -> int:
        return ms(self.clock.now())


async def server_context(request: Request) -> ServerContext:
    """The route dependency. ``async`` so that FastAPI calls it on the event loop: a plain ``def`` dependency
    would cost each request a trip to the thread pool."""
    context = request.app.state.context
    if not isinstance(context, ServerContext):
        raise TypeError("app.state.context is not a ServerContext: build the app with server.app.create_app")
    return context
