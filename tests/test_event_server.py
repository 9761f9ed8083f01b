"""The event stream over real websockets on 127.0.0.1: hello, delivery, slow clients,
commands, and every refusal of assistant.event_access."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from audio_samples import speech_16k
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from assistant import events
from assistant.app import RunOptions, run_assistant
from assistant.config import ConfigError, load_config
from assistant.devserver import RunningDevServer
from assistant.event_commands import MAX_MESSAGE_BYTES
from assistant.event_server import EventServer
from assistant.settings import AssistantSettings, DifySettings, EventsSettings, Secret, Settings
from bench.soak import ScriptedMic

TOKEN = "correct-horse-battery-staple"
WAIT_S = 5.0


class FakeControls:
    """The loop's controls as they are today (no talk, no say)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def cancel(self, by: str = "button") -> None:
        self.calls.append(("cancel", by))

    def toggle_mute(self) -> None:
        self.calls.append(("toggle_mute",))

    def set_muted(self, muted: bool) -> None:
        self.calls.append(("set_muted", muted))

    def volume_step(self, steps: int) -> None:
        self.calls.append(("volume_step", steps))

    def reset_conversation(self, by: str = "button") -> None:
        self.calls.append(("reset_conversation", by))


class FullControls(FakeControls):
    """With the methods asked of the loop: talk_start, talk_stop, say."""

    def talk_start(self) -> None:
        self.calls.append(("talk_start",))

    def talk_stop(self) -> None:
        self.calls.append(("talk_stop",))

    def say(self, text: str, *, interrupt: bool = False) -> None:
        self.calls.append(("say", text, interrupt))


class Level:
    db = -6.0
    step_db = 3.0


@contextlib.asynccontextmanager
async def serving(
    bus: events.EventBus | None = None,
    controls: object | None = None,
    token: str = "",
    **options: Any,
) -> AsyncIterator[EventServer]:
    settings = EventsSettings(host="127.0.0.1", port=0, token=Secret(token))
    server = EventServer(settings, bus or events.EventBus(), **options)
    await server.start(controls or FakeControls(), Level())  # type: ignore[arg-type]
    try:
        yield server
    finally:
        await server.stop()


def url(server: EventServer, path: str = "/events") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


async def receive(ws: ClientConnection) -> dict[str, Any]:
    async with asyncio.timeout(WAIT_S):
        message = json.loads(await ws.recv())
    assert isinstance(message, dict)
    return message


async def command(ws: ClientConnection, message: str | dict[str, Any]) -> dict[str, Any]:
    await ws.send(message if isinstance(message, str) else json.dumps(message))
    return await receive(ws)


async def http_get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """A plain HTTP request (any Host header): status and body."""
    async with asyncio.timeout(WAIT_S):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        lines = [f"GET {path} HTTP/1.1", *(f"{k}: {v}" for k, v in (headers or {}).items())]
        if not any(k.lower() == "host" for k in headers or {}):
            lines.append(f"Host: 127.0.0.1:{port}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await writer.drain()
        raw = await reader.read()
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


# -- the stream ------------------------------------------------------------------------


async def test_hello_carries_the_state_the_app_and_the_last_marks() -> None:
    bus = events.EventBus()
    async with serving(bus) as server:
        server.snapshot.app = "Weather desk"
        bus.publish(events.StateChanged(state="listening", turn=0))
        bus.publish(events.UtteranceCaptured(turn=1, duration_s=1.0, speech_ms=800))
        bus.publish(events.Transcript(turn=1, text="Hello there"))
        bus.publish(events.Marks(turn=1, speech_end=0.0, first_audio=412.5))
        bus.publish(events.StateChanged(state="thinking", turn=1))
        bus.publish(events.Sentence(turn=1, text="Hi."))
        async with connect(url(server)) as ws:
            hello = await receive(ws)
    assert hello["kind"] == "hello"
    assert hello["state"] == "thinking" and hello["turn"] == 1
    assert hello["app"] == "Weather desk"
    assert hello["marks"] == {"turn": 1, "speech_end": 0.0, "first_audio": 412.5}
    assert hello["transcript"] == "Hello there" and hello["sentences"] == ["Hi."]
    assert hello["volume_db"] == -6.0 and hello["muted"] is False
    assert set(hello["commands"]) == {"cancel", "reset_conversation", "volume", "mute"}


async def test_every_event_reaches_two_clients_as_its_jsonl_line() -> None:
    bus = events.EventBus()
    sent = [
        events.StateChanged(state="listening", turn=0),
        events.Transcript(turn=1, text="What time is it?"),
        events.Error(stage="tts", code="timeout", message="took too long", turn=1),
        events.Marks(turn=1, speech_end=0.0, transcript=120.0),
    ]
    async with serving(bus) as server, connect(url(server)) as a, connect(url(server)) as b:
        for ws in (a, b):
            assert (await receive(ws))["kind"] == "hello"
        for event in sent:
            bus.publish(event)
        for ws in (a, b):
            got = [await receive(ws) for _ in sent]
            assert got == [json.loads(event.to_json()) for event in sent]


async def test_a_burst_beyond_the_queue_is_counted_as_dropped() -> None:
    bus = events.EventBus()
    async with serving(bus, client_queue=10) as server, connect(url(server)) as ws:
        await receive(ws)
        # No await between publishes: the client's task cannot send during the burst.
        for i in range(50):
            bus.publish(events.Info(turn=1, message=f"n{i}"))
        dropped = await receive(ws)
        assert dropped["kind"] == "dropped" and dropped["count"] == 40
        rest = [(await receive(ws))["message"] for _ in range(10)]
        assert rest == [f"n{i}" for i in range(40, 50)]


async def test_a_stalled_client_never_slows_the_bus_and_is_closed() -> None:
    bus = events.EventBus()
    big = "x" * 20_000  # fills the socket buffers in a few hundred events
    async with (
        serving(bus, stall_timeout_s=0.5, client_queue=50) as server,
        connect(url(server)) as reader,
        # max_queue=1: the client library stops reading its socket at once.
        connect(url(server), max_queue=1) as stalled,
    ):
        await receive(reader)
        slowest = 0.0
        got = 0
        for i in range(600):
            start = time.perf_counter()
            bus.publish(events.Transcript(turn=i, text=big))
            slowest = max(slowest, time.perf_counter() - start)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.001):
                    while True:
                        await reader.recv()
                        got += 1
        assert slowest < 0.05, f"a publish took {slowest:.3f} s"
        async with asyncio.timeout(WAIT_S):
            # The server has no event for this: a short poll, bounded above.
            while server.client_count > 1:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        # The one that reads is still served, up to the last event.
        bus.publish(events.Info(turn=0, message="last"))
        async with asyncio.timeout(WAIT_S):
            while json.loads(await reader.recv()).get("message") != "last":
                pass
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(WAIT_S):
                while True:
                    await stalled.recv()


# -- commands --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "call"),
    [
        ({"command": "cancel"}, ("cancel", "command")),
        ({"command": "reset_conversation"}, ("reset_conversation", "command")),
        ({"command": "mute", "muted": True}, ("set_muted", True)),
        ({"command": "mute"}, ("toggle_mute",)),
        ({"command": "volume", "step": -2}, ("volume_step", -2)),
        ({"command": "volume", "db": 0}, ("volume_step", 2)),  # -6 dB + 2 steps of 3 dB
    ],
)
async def test_each_command_reaches_the_controls_and_is_answered_ok(
    message: dict[str, Any], call: tuple[Any, ...]
) -> None:
    controls = FakeControls()
    async with serving(controls=controls) as server, connect(url(server)) as ws:
        await receive(ws)
        reply = await command(ws, {**message, "id": 7})
    assert reply == {"kind": "ok", "command": message["command"], "id": 7}
    assert controls.calls == [call]


@pytest.mark.parametrize(
    ("message", "command_name"),
    [
        ({"command": "talk_start"}, "talk_start"),
        ({"command": "talk_stop"}, "talk_stop"),
        ({"command": "say", "text": "Dinner is ready."}, "say"),
    ],
)
async def test_talk_and_say_are_not_available_until_the_loop_has_them(
    message: dict[str, Any], command_name: str
) -> None:
    controls = FakeControls()
    async with serving(controls=controls) as server, connect(url(server)) as ws:
        await receive(ws)
        reply = await command(ws, message)
    assert reply["kind"] == "command_error" and reply["code"] == "not_available"
    assert reply["command"] == command_name and command_name in reply["message"]
    assert controls.calls == []


async def test_talk_and_say_reach_a_loop_that_has_them() -> None:
    controls = FullControls()
    async with serving(controls=controls) as server, connect(url(server)) as ws:
        hello = await receive(ws)
        assert {"talk_start", "talk_stop", "say"} <= set(hello["commands"])
        for message in (
            {"command": "talk_start"},
            {"command": "talk_stop"},
            {"command": "say", "text": " Dinner is ready. ", "interrupt": True},
        ):
            assert (await command(ws, message))["kind"] == "ok"
    assert controls.calls == [
        ("talk_start",),
        ("talk_stop",),
        ("say", "Dinner is ready.", True),
    ]


async def test_a_client_that_leaves_while_holding_the_talk_button_releases_it() -> None:
    controls = FullControls()
    async with serving(controls=controls) as server:
        async with connect(url(server)) as ws:
            await receive(ws)
            assert (await command(ws, {"command": "talk_start"}))["kind"] == "ok"
        async with connect(url(server)) as ws:  # pressed and released: nothing to undo
            await receive(ws)
            await command(ws, {"command": "talk_start"})
            await command(ws, {"command": "talk_stop"})
        async with asyncio.timeout(WAIT_S):
            while server.client_count:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    assert controls.calls == [("talk_start",), ("talk_stop",)] * 2


@pytest.mark.parametrize(
    ("message", "code", "field"),
    [
        ("{not json", "bad_json", None),
        ("[1, 2]", "bad_message", None),
        ({"id": 1}, "missing_field", "command"),
        ({"command": "launch"}, "unknown_command", "command"),
        ({"command": "cancel", "now": True}, "unknown_field", "now"),
        ({"command": "mute", "muted": "yes"}, "bad_field", "muted"),
        ({"command": "volume"}, "missing_field", "step"),
        ({"command": "volume", "step": 1.5}, "bad_field", "step"),
        ({"command": "volume", "step": 99}, "bad_field", "step"),
        ({"command": "volume", "db": "loud"}, "bad_field", "db"),
        ({"command": "say", "text": ""}, "bad_field", "text"),
        ({"command": "say", "text": "hi", "interrupt": 1}, "bad_field", "interrupt"),
        (json.dumps({"command": "say", "text": "a" * MAX_MESSAGE_BYTES}), "too_large", None),
    ],
)
async def test_bad_messages_get_an_error_and_never_reach_the_controls(
    message: str | dict[str, Any], code: str, field: str | None
) -> None:
    controls = FullControls()
    async with serving(controls=controls) as server, connect(url(server)) as ws:
        await receive(ws)
        reply = await command(ws, message)
        assert reply["kind"] == "command_error" and reply["code"] == code
        assert reply.get("field") == field
        # The connection goes on.
        assert (await command(ws, {"command": "cancel"}))["kind"] == "ok"
    assert controls.calls == [("cancel", "command")]


async def test_a_control_that_raises_is_answered_failed() -> None:
    class Broken(FakeControls):
        def cancel(self, by: str = "button") -> None:
            raise RuntimeError("boom")

    async with serving(controls=Broken()) as server, connect(url(server)) as ws:
        await receive(ws)
        assert (await command(ws, {"command": "cancel"}))["code"] == "failed"
        assert (await command(ws, {"command": "mute"}))["kind"] == "ok"


# -- access ----------------------------------------------------------------------------


def test_an_address_off_loopback_needs_a_token() -> None:
    with pytest.raises(ConfigError) as caught:
        EventServer(EventsSettings(host="0.0.0.0", port=0), events.EventBus())
    assert caught.value.key == "events.token"
    EventServer(EventsSettings(host="0.0.0.0", port=0, token=Secret(TOKEN)), events.EventBus())


@pytest.mark.parametrize(
    "how",
    [
        {},
        {"additional_headers": {"Authorization": "Bearer wrong-token-wrong-token"}},
        {"path": "/events?token=wrong"},
    ],
)
async def test_a_missing_or_wrong_token_is_refused_401_and_not_logged(
    how: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with serving(token=TOKEN) as server:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(
                url(server, how.get("path", "/events")),
                additional_headers=how.get("additional_headers"),
            ):
                pass
    assert refused.value.response.status_code == 401
    ours = _server_log(caplog)
    assert "refused /events" in ours
    assert "wrong-token" not in ours and "token=wrong" not in ours and TOKEN not in ours


@pytest.mark.parametrize("where", ["header", "query"])
async def test_the_right_token_is_let_in(where: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with serving(token=TOKEN) as server:
        if where == "header":
            target, headers = url(server), {"Authorization": f"Bearer {TOKEN}"}
        else:
            target, headers = url(server, f"/events?token={TOKEN}"), {}
        async with connect(target, additional_headers=headers) as ws:
            assert (await receive(ws))["kind"] == "hello"
    assert TOKEN not in _server_log(caplog)


def _server_log(caplog: pytest.LogCaptureFixture) -> str:
    """What the server logged (the websockets client logs its own headers, token and all),
    with the websockets library's debug lines through the server's redacting filter."""
    return "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("assistant"))


async def test_a_foreign_origin_is_refused_403_and_the_own_page_let_in() -> None:
    async with serving() as server:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url(server), origin="http://evil.example"):  # type: ignore[arg-type]
                pass
        assert refused.value.response.status_code == 403
        own = f"http://127.0.0.1:{server.port}"
        async with connect(url(server), origin=own) as ws:  # type: ignore[arg-type]
            assert (await receive(ws))["kind"] == "hello"


async def test_a_foreign_host_is_refused_without_a_token() -> None:
    """DNS rebinding: a page at evil.example whose name now points at 127.0.0.1."""
    async with serving() as server:
        status, _ = await http_get(
            server.port,
            "/events",
            {"Host": f"evil.example:{server.port}", "Origin": f"http://evil.example:{server.port}"},
        )
        assert status == 403
        status, _ = await http_get(server.port, "/", {"Host": f"evil.example:{server.port}"})
        assert status == 403


async def test_other_paths_are_not_found() -> None:
    async with serving() as server:
        assert (await http_get(server.port, "/secrets"))[0] == 404


async def test_a_port_in_use_is_an_error_event_not_a_crash() -> None:
    from assistant.event_server import start_event_server

    bus = events.EventBus()
    seen = bus.subscribe()
    async with serving(bus) as first:
        taken = EventsSettings(host="127.0.0.1", port=first.port)
        started = await start_event_server(EventServer(taken, bus), bus, FakeControls(), None)
    assert started is None
    error = seen.get_nowait()
    assert isinstance(error, events.Error)
    assert (error.stage, error.code) == ("startup", "events_unavailable")


# -- wired into the assistant ----------------------------------------------------------


async def _bound_port(event_servers: list[EventServer]) -> int:
    """The port of the assistant's event server, once it listens."""
    async with asyncio.timeout(30):
        while True:
            with contextlib.suppress(IndexError, RuntimeError):  # not made, not started
                return event_servers[-1].port
            await asyncio.sleep(0.05)


async def test_the_running_assistant_streams_its_turn_and_takes_commands(
    server: RunningDevServer, tmp_path: Path, event_servers: list[EventServer]
) -> None:
    settings = Settings(
        assistant=AssistantSettings(state_dir=str(tmp_path)),
        dify=DifySettings(base_url=server.base_url, api_key=Secret("app-x")),
    )
    mic = ScriptedMic(seed=4)
    options = RunOptions(source=mic, speaker_wav=tmp_path / "out.wav")
    assistant = asyncio.create_task(run_assistant(settings, options))
    try:
        # Port 0 (conftest): the server it made says where it listens once started.
        port = await _bound_port(event_servers)
        ws = await connect(f"ws://127.0.0.1:{port}/events")
        async with ws:
            hello = await receive(ws)
            assert hello["kind"] == "hello" and hello["volume_db"] == 0.0
            mic.say(speech_16k("What is the weather like on Mars?"))
            async with asyncio.timeout(30):
                while (message := await receive(ws))["kind"] != "transcript":
                    pass
            assert "mars" in message["text"].lower()
            await ws.send(json.dumps({"command": "volume", "step": -1, "id": "v"}))
            seen: dict[str, dict[str, Any]] = {}
            async with asyncio.timeout(30):
                while not {"ok", "volume"} <= seen.keys():
                    message = await receive(ws)
                    seen[message["kind"]] = message
            assert seen["ok"] == {"kind": "ok", "command": "volume", "id": "v"}
            assert seen["volume"]["db"] == -3.0
    finally:
        assistant.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await assistant
    # Stopped with the assistant: the port is free again.
    with pytest.raises(OSError):
        await connect(f"ws://127.0.0.1:{port}/events", open_timeout=2)


# -- the kiosk page --------------------------------------------------------------------


async def test_the_page_is_served_and_loads_nothing_from_elsewhere() -> None:
    async with serving() as server:
        status, page = await http_get(server.port, "/")
    assert status == 200
    assert "<title>Voice assistant</title>" in page and "/events" in page
    lowered = page.lower()
    assert "http://" not in lowered and "https://" not in lowered, "an absolute URL"
    assert not re.search(r"""(src|href|action)\s*=|@import|url\(|<link|<iframe""", lowered)
    assert not re.search(r"""["'`(]\s*//""", page), "a protocol-relative URL"


async def test_the_page_needs_the_token_when_there_is_one() -> None:
    async with serving(token=TOKEN) as server:
        assert (await http_get(server.port, "/"))[0] == 401
        assert (await http_get(server.port, f"/?token={TOKEN}"))[0] == 200


# -- configuration ---------------------------------------------------------------------


def test_the_token_comes_from_the_environment_and_is_never_shown() -> None:
    settings = load_config(None, environ={"VOICE_ASSISTANT_EVENTS_TOKEN": TOKEN})
    assert settings.events.token == Secret(TOKEN)
    assert TOKEN not in repr(settings.events)
    assert (settings.events.enabled, settings.events.host, settings.events.port) == (
        True,
        "127.0.0.1",
        8765,
    )


@pytest.mark.parametrize(
    ("environ", "reason"),
    [
        ({"VOICE_ASSISTANT_EVENTS_HOST": "0.0.0.0"}, "reachable from other machines"),
        ({"VOICE_ASSISTANT_EVENTS_TOKEN": "short-secret"}, "at least 16 characters"),
    ],
)
def test_a_bad_events_config_names_events_token(environ: dict[str, str], reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, environ=environ)
    assert caught.value.key == "events.token" and reason in str(caught.value)
    assert "short-secret" not in str(caught.value)


def test_off_loopback_with_a_token_or_disabled_is_fine() -> None:
    load_config(
        None, {"VOICE_ASSISTANT_EVENTS_HOST": "0.0.0.0", "VOICE_ASSISTANT_EVENTS_TOKEN": TOKEN}
    )
    load_config(
        None, {"VOICE_ASSISTANT_EVENTS_HOST": "0.0.0.0", "VOICE_ASSISTANT_EVENTS_ENABLED": "0"}
    )
