"""The live event stream over websockets, its commands, and the kiosk page, on one port.

`ws://<host>:<port>/events` sends a `hello` (assistant.event_snapshot), then every event
of the catalogue as one JSON message with exactly the JSONL fields (`Event.to_json()`), and
takes commands (assistant.event_commands). `GET /` is the kiosk page (assistant/kiosk/).
Who may connect is assistant.event_access.

The loop never waits for a client: the bus hands each event to a synchronous listener
that only appends the JSON text to every client's bounded queue (oldest dropped first);
each client has its own task that sends, and one that stops reading for `stall_timeout_s`
is cut off. A client that loses events is told how many (`{"kind": "dropped", "count":
n}`) before the ones it gets next. Every await here has a timeout, and nothing raises
into the loop: a server that cannot start is the caller's error event, not a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import json
import logging
import re
import time
from collections import deque
from http import HTTPStatus

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from assistant import events
from assistant.event_access import Access, RedactTokens, path_only, require_token_off_loopback
from assistant.event_commands import MAX_MESSAGE_BYTES, CommandControls, Commands, VolumeLevel
from assistant.event_snapshot import Snapshot
from assistant.settings import EventsSettings

log = logging.getLogger(__name__)
_ws_log = logging.getLogger(f"{__name__}.websockets")
_ws_log.addFilter(RedactTokens())

EVENTS_PATH = "/events"
PAGE_PATH = "/"
OWN_KINDS = ("hello", "dropped", "ok", "command_error")
"""Messages of the server's own, besides the catalogue's events."""
assert not set(OWN_KINDS) & set(events.CATALOGUE), "a server message shadows an event kind"

STALL_TIMEOUT_S = 10.0
"""A client that has not taken a message for this long is closed."""
CLIENT_QUEUE = 500
"""Messages waiting for one client; beyond, its oldest are dropped (and counted)."""
MAX_CLIENTS = 16
START_TIMEOUT_S = 5.0
STOP_TIMEOUT_S = 3.0
CLOSE_TIMEOUT_S = 2.0
PING_INTERVAL_S = 20.0
WIRE_LIMIT = 4 * MAX_MESSAGE_BYTES
"""A message up to this size is read and answered `too_large` (over MAX_MESSAGE_BYTES);
a bigger one closes the connection (1009): it is no command sent in good faith."""
_HOST_CHARS = re.compile(r"[A-Za-z0-9.:\[\]-]+")


class _Client:
    """One connection's outgoing messages: a bounded queue and the task that sends them."""

    def __init__(self, connection: ServerConnection, maxsize: int) -> None:
        self.connection = connection
        self._queue: deque[str] = deque()
        self._maxsize = maxsize
        self._wake = asyncio.Event()
        self.dropped = 0
        self.holding_talk = False
        """Its last talk command was talk_start: released for it if it goes."""

    def offer(self, text: str) -> None:
        """Queue a message; never blocks (the bus calls this)."""
        if len(self._queue) >= self._maxsize:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append(text)
        self._wake.set()

    async def pump(self, stall_timeout_s: float) -> None:
        """Send what is queued, in order; TimeoutError when the client stops reading."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                if self.dropped:
                    # The gap is before the oldest message still queued: say so there.
                    text = json.dumps(
                        {"t": round(time.monotonic(), 6), "kind": "dropped", "count": self.dropped}
                    )
                    self.dropped = 0
                else:
                    text = self._queue.popleft()
                async with asyncio.timeout(stall_timeout_s):
                    await self.connection.send(text)


class EventServer:
    """Serves the events of `bus` to websocket clients, and their commands to the loop."""

    def __init__(
        self,
        settings: EventsSettings,
        bus: events.EventBus,
        *,
        stall_timeout_s: float = STALL_TIMEOUT_S,
        client_queue: int = CLIENT_QUEUE,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        """Listens to `bus` from now on (so the hello is right from the first event);
        raises ConfigError when the address needs a token and has none. `start` binds."""
        require_token_off_loopback(settings.host, settings.token)
        self._settings = settings
        self._access = Access(settings.token)
        self._stall_timeout_s = stall_timeout_s
        self._client_queue = client_queue
        self._max_clients = max_clients
        self.snapshot = Snapshot()
        self._commands = Commands(None)
        self._clients: set[_Client] = set()
        self._server: Server | None = None
        self._page = _kiosk_page()
        bus.add_listener(self._on_event)

    @property
    def port(self) -> int:
        """The port it listens on (useful with `port = 0`)."""
        if self._server is None:
            raise RuntimeError("not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def client_count(self) -> int:
        return len(self._clients)

    async def start(
        self, controls: CommandControls | None = None, volume: VolumeLevel | None = None
    ) -> None:
        """Bind and serve; `controls` (the loop) takes the commands. OSError or TimeoutError
        when it cannot bind."""
        self._commands = Commands(controls, volume)
        self.snapshot.volume = volume
        async with asyncio.timeout(START_TIMEOUT_S):
            self._server = await serve(
                self._serve_client,
                self._settings.host,
                self._settings.port,
                process_request=self._process_request,
                logger=_ws_log,
                max_size=WIRE_LIMIT,
                # A Pi's core is better spent on audio than on deflating small JSON.
                compression=None,
                close_timeout=CLOSE_TIMEOUT_S,
                # What bounds the waits on an idle connection: a peer that is gone (a
                # kiosk unplugged) answers no ping and is closed within 40 s.
                ping_interval=PING_INTERVAL_S,
                ping_timeout=PING_INTERVAL_S,
            )
        log.info("event stream on ws://%s:%d%s", self._settings.host, self.port, EVENTS_PATH)

    async def stop(self) -> None:
        """Close every connection and stop listening; never raises."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await server.wait_closed()
        except TimeoutError:
            log.warning("the event server did not close in %.0f s; left behind", STOP_TIMEOUT_S)
            for client in list(self._clients):
                client.connection.transport.abort()
        except Exception:
            log.exception("the event server failed while closing")

    # -- events --------------------------------------------------------------------

    def _on_event(self, event: events.Event) -> None:
        """On the loop's thread, inside `bus.publish`: append only, never wait."""
        try:
            self.snapshot.on_event(event)
            if self._clients:
                text = event.to_json()
                for client in self._clients:
                    client.offer(text)
        except Exception:
            log.exception("the event server could not queue a %s event", event.kind)

    # -- connections ---------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Refuse what may not connect (before the upgrade); serve the page."""
        path = path_only(request.path)
        if path not in (EVENTS_PATH, PAGE_PATH):
            return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
        headers = {name.lower(): value for name, value in request.headers.raw_items()}
        refusal = self._access.check(request.path, headers)
        if refusal is not None:
            log.warning(
                "refused %s from %s: %d %s",
                path,
                _peer(connection),
                refusal.status,
                refusal.reason,
            )
            return connection.respond(refusal.status, f"{refusal.reason}\n")
        if path == PAGE_PATH:
            return self._page_response(connection, headers.get("host", ""))
        if len(self._clients) >= self._max_clients:
            log.warning("refused %s from %s: too many clients", path, _peer(connection))
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "too many clients\n")
        return None

    def _page_response(self, connection: ServerConnection, host: str) -> Response:
        if self._page is None:
            return connection.respond(HTTPStatus.NOT_FOUND, "no kiosk page installed\n")
        response = connection.respond(HTTPStatus.OK, "")
        response.body = self._page
        own = f" ws://{host} wss://{host}" if _HOST_CHARS.fullmatch(host) else ""
        for name, value in (
            ("Content-Type", "text/html; charset=utf-8"),
            ("Content-Length", str(len(self._page))),
            # The page loads nothing from anywhere: everything is inline, and it talks
            # only to this server.
            (
                "Content-Security-Policy",
                "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
                f"img-src data:; connect-src 'self'{own}; frame-ancestors 'none'",
            ),
            ("Cache-Control", "no-store"),
            # The page's address may carry the token: never send it on.
            ("Referrer-Policy", "no-referrer"),
        ):
            if name in response.headers:
                del response.headers[name]
            response.headers[name] = value
        return response

    async def _serve_client(self, connection: ServerConnection) -> None:
        client = _Client(connection, self._client_queue)
        # No await between the hello and joining: no event falls between the two.
        client.offer(json.dumps(self.snapshot.hello(self._commands.available)))
        self._clients.add(client)
        pump = asyncio.create_task(client.pump(self._stall_timeout_s))
        reader = asyncio.create_task(self._read_commands(client))
        try:
            await asyncio.wait({pump, reader}, return_when=asyncio.FIRST_COMPLETED)
            if pump.done() and isinstance(pump.exception(), TimeoutError):
                log.warning(
                    "closed the event client %s: it read nothing for %.0f s",
                    _peer(connection),
                    self._stall_timeout_s,
                )
                # A graceful close would wait on the same full buffer: cut it off.
                connection.transport.abort()
        finally:
            self._clients.discard(client)
            if client.holding_talk:
                # A page that left mid-press (closed, reloaded, network gone) must not leave
                # the device capturing until its length cap.
                log.info("released the on-screen talk button of %s: it left", _peer(connection))
                self._commands.handle('{"command": "talk_stop"}')
            for task in (pump, reader):
                task.cancel()
            for task in (pump, reader):
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed, Exception):
                    await task

    async def _read_commands(self, client: _Client) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in client.connection:
                reply = self._commands.handle(message)
                if reply["kind"] == "ok" and reply.get("command") in ("talk_start", "talk_stop"):
                    client.holding_talk = reply["command"] == "talk_start"
                client.offer(json.dumps(reply, default=str))


def _peer(connection: ServerConnection) -> str:
    try:
        host, port = connection.remote_address[:2]
    except (TypeError, ValueError):
        return "?"
    return f"{host}:{port}"


def _kiosk_page() -> bytes | None:
    """The page, read once (package data; None if it is not installed)."""
    try:
        return (importlib.resources.files("assistant") / "kiosk" / "index.html").read_bytes()
    except OSError:
        return None


async def start_event_server(
    server: EventServer | None,
    bus: events.EventBus,
    controls: CommandControls,
    volume: VolumeLevel | None,
) -> EventServer | None:
    """Start `server` for the running loop; a failure to bind is an `error` event (stage
    `startup`) and the assistant runs without it. The server, or None if it did not start."""
    if server is None:
        return None
    try:
        await server.start(controls, volume)
    except Exception as exc:
        # OSError (the port is taken, the address is not ours) or TimeoutError above all;
        # whatever it is, the assistant runs on without its stream.
        message = f"the event stream cannot listen: {exc or type(exc).__name__}"
        log.error("%s", message)
        bus.publish(events.Error(stage="startup", code="events_unavailable", message=message))
        return None
    return server
