"""Running the dev server: in-process for tests, or in the foreground for the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Sequence
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Middleware

from assistant.devserver.app import build_app
from assistant.devserver.middleware import API_PREFIX
from assistant.devserver.options import DevServerOptions
from assistant.devserver.state import STATE_KEY, DevServerState

DEFAULT_MIDDLEWARES: list[Middleware] = []
"""Put in front of every app `start_devserver` builds (the tests add an API contract check)."""


@dataclass(slots=True)
class RunningDevServer:
    """A started dev server. `state` is live: tests read its log and change its behaviour."""

    host: str
    port: int
    state: DevServerState
    _runner: web.AppRunner

    @property
    def base_url(self) -> str:
        """The API base a client is configured with, e.g. http://127.0.0.1:8750/v1."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{API_PREFIX}"

    async def serve_also(self, sock: socket.socket) -> None:
        """Answer on `sock` too, a bound socket that is not listening yet.

        Until then a client of that port has its connections refused: a test can point a
        client at it to play a service that is down, then bring the service back.
        """
        site = web.SockSite(self._runner, sock)
        await site.start()

    async def stop(self) -> None:
        """Stop listening and end open requests (streams are cut)."""
        await self._runner.cleanup()


async def start_devserver(
    host: str = "127.0.0.1",
    port: int = 0,
    options: DevServerOptions | None = None,
    middlewares: Sequence[Middleware] = (),
    *,
    control: bool = False,
) -> RunningDevServer:
    """Start listening on host:port (0 = a free port) and return at once.

    `middlewares` (after DEFAULT_MIDDLEWARES) run before the dev server's own, so they see
    each request exactly as the client sent it. `control`: serve the `/_dev/` levers too
    (tests and benchmarks); the state object steers the server in-process either way.
    """
    app = build_app(options or DevServerOptions(), control=control)
    for index, middleware in enumerate([*DEFAULT_MIDDLEWARES, *middlewares]):
        app.middlewares.insert(index, middleware)
    # A short shutdown timeout: a test stopping the server mid-stream must not wait.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_port = int(runner.addresses[0][1])
    return RunningDevServer(host, bound_port, app[STATE_KEY], runner)


def serve_forever(
    host: str = "127.0.0.1",
    port: int = 8750,
    options: DevServerOptions | None = None,
    *,
    control: bool = False,
) -> None:
    """Run until SIGINT or SIGTERM (blocking); prints the base URL once listening."""
    asyncio.run(_serve(host, port, options or DevServerOptions(), control))


async def _serve(host: str, port: int, options: DevServerOptions, control: bool) -> None:
    server = await start_devserver(host, port, options, control=control)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        # Not on every platform (Windows); Ctrl-C then ends asyncio.run instead.
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stopping.set)
    print(f"Dify-compatible dev server listening on {server.base_url}", flush=True)
    try:
        await stopping.wait()
    finally:
        await server.stop()
