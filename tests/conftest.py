"""Fixtures of general use: the PulseAudio sound card, gpiozero mock pins, API contracts."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import AsyncIterator, Iterator

import pytest
from browser import Browser, BrowserMissing
from contracts import ContractChecker, Violation
from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockPWMPin
from pipewire import PipeWireServer
from pulse import PulseServer

from assistant.devserver import DevServerOptions, RunningDevServer, start_devserver
from assistant.devserver.server import DEFAULT_MIDDLEWARES
from assistant.event_server import EventServer
from assistant.states import STRICT_ENV

# An illegal state change raises in every test, in this process and in the assistants
# the tests start as subprocesses (in the field it is logged and refused).
os.environ[STRICT_ENV] = "1"
# Every assistant a test starts (in this process or as a subprocess) serves its event
# stream on a free port: the default 8765 would be taken by another test's assistant,
# or by a real one on this machine.
os.environ["VOICE_ASSISTANT_EVENTS_PORT"] = "0"


@pytest.fixture
def event_servers() -> list[EventServer]:
    """Every event server an assistant started in this process made, in order: its `port`
    is where it listens once the assistant is `ready` (the port was 0, see below)."""
    return []


@pytest.fixture(autouse=True)
def _event_server_on_a_free_port(
    monkeypatch: pytest.MonkeyPatch, event_servers: list[EventServer]
) -> None:
    """Tests that build Settings() themselves (not from the environment) get port 0 too."""
    import assistant.app as app_module

    def on_free_port(settings, bus, **kwargs):  # type: ignore[no-untyped-def]
        server = EventServer(dataclasses.replace(settings, port=0), bus, **kwargs)
        event_servers.append(server)
        return server

    monkeypatch.setattr(app_module, "EventServer", on_free_port)


@pytest.fixture(scope="session")
def contract_violations() -> Iterator[list[Violation]]:
    """Where requests that break their API document land, from every dev server started.

    The contract check (tests/contracts.py) is added in front of every app
    `start_devserver` builds for the whole session.
    """
    violations: list[Violation] = []
    middleware = ContractChecker().middleware(violations)
    DEFAULT_MIDDLEWARES.append(middleware)
    try:
        yield violations
    finally:
        DEFAULT_MIDDLEWARES.remove(middleware)


@pytest.fixture(autouse=True)
def api_contracts(
    request: pytest.FixtureRequest, contract_violations: list[Violation]
) -> Iterator[list[Violation]]:
    """Fail the test if a request it made the dev server receive, or a JSON answer the dev
    server gave it, does not validate.

    Autouse, so it is set up first and torn down last: requests sent while the test's
    other fixtures stop count too. Tests that send broken requests on purpose are marked
    `invalid_requests`; the violations of their requests are dropped, not those of answers.
    """
    contract_violations.clear()
    yield contract_violations
    found = list(contract_violations)
    contract_violations.clear()
    if request.node.get_closest_marker("invalid_requests") is not None:
        # Broken requests on purpose; the dev server's answers to them must still be right.
        found = [violation for violation in found if violation.kind == "response"]
    if found:
        listed = "\n\n".join(str(violation) for violation in found)
        pytest.fail(
            f"{len(found)} request(s) or answer(s) do not match the API documents in "
            f"tests/contracts/:\n{listed}",
            pytrace=False,
        )


SESSION_SOUND_SERVERS: list[PulseServer] = []
"""The session's sound servers that are running: each test checks they outlived it."""


@pytest.fixture(autouse=True)
def _sound_servers_survive() -> Iterator[None]:
    """Fail the test during which a session sound server died, with its log, and start it
    again for the tests after it (which would otherwise all fail, connection refused)."""
    yield
    for server in SESSION_SOUND_SERVERS:
        if (why := server.exited()) is not None:
            server.restart()
            pytest.fail(f"the session's sound server died during this test: {why}")


@contextlib.contextmanager
def _for_the_session(server: PulseServer) -> Iterator[PulseServer]:
    try:
        server.start()
        SESSION_SOUND_SERVERS.append(server)
        yield server
    finally:
        if server in SESSION_SOUND_SERVERS:
            SESSION_SOUND_SERVERS.remove(server)
        server.stop()


@pytest.fixture(scope="session")
def pulse() -> Iterator[PulseServer]:
    """A private PulseAudio server for the whole session, with va_mic and va_speaker.

    While it runs, PULSE_SERVER, PULSE_SOURCE (va_mic.monitor), PULSE_SINK
    (va_speaker) and PULSE_CLIENTCONFIG are set in os.environ, so PyAudio's
    "default"/"pulse" devices capture what `pulse.play_into_mic` plays and
    play into what `pulse.start_recording_speaker` records. Restored after.
    """
    server = PulseServer()
    with pytest.MonkeyPatch.context() as patch:
        for key, value in server.env.items():
            patch.setenv(key, value)
        with _for_the_session(server):
            yield server


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """One headless Chromium (Debian's, through Playwright) for the whole session.

    Missing, it fails the tests that need it with what to install: never a skip.
    """
    running = Browser()
    try:
        running.start()
    except BrowserMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def pipewire_server() -> Iterator[PipeWireServer]:
    """A private PipeWire (with pipewire-pulse and WirePlumber) for the whole session, with
    the same sinks as `pulse`. Its variables are set per test by `sound_server`."""
    with _for_the_session(PipeWireServer()) as server:
        yield server


SOUND_SERVERS = ("pulseaudio", "pipewire")
"""What the real-part integration tests run on: PulseAudio, and PipeWire (what Raspberry
Pi OS desktop runs; clients reach it through its PulseAudio side, as they do there)."""


@pytest.fixture(params=SOUND_SERVERS)
def sound_server(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> PulseServer:
    """The `pulse` harness, once per sound server: the test runs on each.

    PipeWire's variables override PulseAudio's for the test only, so PyAudio's default
    devices are its sinks while the test runs.
    """
    if request.param == "pulseaudio":
        server: PulseServer = request.getfixturevalue("pulse")
        return server
    server = request.getfixturevalue("pipewire_server")
    for key, value in server.env.items():
        monkeypatch.setenv(key, value)
    return server


@pytest.fixture
def mock_pins() -> Iterator[MockFactory]:
    """A fresh gpiozero MockFactory, also installed as the default pin factory.

    Drive a button with `mock_pins.pin(17).drive_low()` / `.drive_high()`.
    Devices still open at the end are closed and the previous factory restored.
    """
    yield from _installed(MockFactory())


@pytest.fixture
def mock_pwm_pins() -> Iterator[MockFactory]:
    """`mock_pins` with PWM (MockPWMPin): dimmable and RGB LEDs work on it; read a pin's
    level with `mock_pwm_pins.pin(12).state` (0.0 to 1.0)."""
    yield from _installed(MockFactory(pin_class=MockPWMPin))


def _installed(factory: MockFactory) -> Iterator[MockFactory]:
    previous = Device.pin_factory
    Device.pin_factory = factory
    try:
        yield factory
    finally:
        # gpiozero's own shutdown does the same: close whatever still holds a pin.
        with factory._res_lock:
            devices = {
                device
                for refs in factory._reservations.values()
                for ref in refs
                if (device := ref()) is not None
            }
        for device in devices:
            device.close()
        factory.close()
        Device.pin_factory = previous


@pytest.fixture
async def server(request: pytest.FixtureRequest) -> AsyncIterator[RunningDevServer]:
    """The dev server on a free loopback port, for one test.

    A test module sets `DEV_SERVER_OPTIONS` (a DevServerOptions) and/or
    `DEV_SERVER_LATENCY` (live latency fields) to shape it.
    """
    options = getattr(request.module, "DEV_SERVER_OPTIONS", DevServerOptions())
    # The /_dev/ levers are served only on request: a test bench is one.
    running = await start_devserver(options=options, control=True)
    latency = getattr(request.module, "DEV_SERVER_LATENCY", None)
    if latency:
        running.state.set_latency(**latency)
    yield running
    await running.stop()
