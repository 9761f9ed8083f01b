"""Warm connections: each service's pool holds as many open connections as a turn uses
at once, before the turn needs them.

A turn that finds its connection cold pays a TCP (and, on a real service, a TLS)
handshake on the critical path. The pool is filled at start with concurrent cheap
requests (one connection each), and again when the user starts speaking after a
long quiet spell, since servers close idle keep-alive connections (nginx after 75 s).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Protocol

from assistant.aio import cancel_and_wait
from assistant.events import Event
from assistant.providers.base import ServiceError
from assistant.settings import HttpSettings

log = logging.getLogger(__name__)

REWARM_AFTER_S = 45.0
"""Quiet time after which the connections are assumed closed by the server."""
_HTTP_DEFAULTS = HttpSettings()
"""Where the defaults of a warmer built without settings (tests) come from."""


class WarmableClient(Protocol):
    async def warm(self) -> None:
        """One cheap authenticated request (it leaves its connection in the pool)."""


class ConnectionWarmer:
    def __init__(
        self,
        clients: Mapping[str, WarmableClient],
        connections: Mapping[str, int],
        rewarm_after_s: float = REWARM_AFTER_S,
        *,
        timeout_s: float = _HTTP_DEFAULTS.warm_up_timeout_s,
    ) -> None:
        """`connections`: how many connections to open per service name in `clients`.
        `timeout_s`: a service whose connections take longer is given up on, its turn
        will connect by itself (`http.warm_up_timeout_s`).
        """
        self._clients = dict(clients)
        self._connections = dict(connections)
        self._timeout_s = timeout_s
        self._rewarm_after_s = rewarm_after_s
        self._last_active = time.monotonic()
        self._rewarming: asyncio.Task[None] | None = None

    async def warm(self) -> dict[str, ServiceError | TimeoutError]:
        """Open the connections; returns the failures by service (none is fatal)."""
        self._last_active = time.monotonic()
        services = list(self._clients)
        results = await asyncio.gather(
            *(self._warm_service(name) for name in services), return_exceptions=True
        )
        failures: dict[str, ServiceError | TimeoutError] = {}
        for name, result in zip(services, results, strict=True):
            if isinstance(result, ServiceError | TimeoutError):
                failures[name] = result
            elif isinstance(result, BaseException):
                raise result
        return failures

    async def _warm_service(self, name: str) -> None:
        client = self._clients[name]
        count = max(1, self._connections.get(name, 1))
        # Concurrent, so that each request takes a connection of its own.
        async with asyncio.timeout(self._timeout_s):
            results = await asyncio.gather(
                *(client.warm() for _ in range(count)), return_exceptions=True
            )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    def on_event(self, event: Event) -> None:
        """Bus listener: re-warm when speech starts after a quiet spell."""
        if event.kind == "marks":
            self._last_active = event.t
        elif event.kind == "speech_started":
            quiet = event.t - self._last_active
            self._last_active = event.t
            if quiet >= self._rewarm_after_s and self._rewarming is None:
                self._rewarming = asyncio.get_running_loop().create_task(self._rewarm())

    async def _rewarm(self) -> None:
        try:
            failures = await self.warm()
        finally:
            self._rewarming = None
        for name, exc in failures.items():
            log.warning("re-warming %s failed: %s", name, exc or type(exc).__name__)

    async def aclose(self) -> None:
        if self._rewarming is not None:
            await cancel_and_wait(self._rewarming)
