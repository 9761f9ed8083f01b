"""The GPIO side through the whole assistant: status LEDs and buttons on gpiozero's
MockFactory, a question asked from a WAV file, the dev server answering over real HTTP.

A bus listener marks each `state` event; the LED's pins are sampled from then until the
next one, so each state's pattern is read off the pins themselves.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from audio_samples import concat, silence, speech_16k
from gpiozero import LED
from gpiozero.pins.mock import MockFactory

from assistant.app import RunOptions, run_assistant
from assistant.audio.wav import encode_wav
from assistant.config import ConfigError
from assistant.devserver import DevServerOptions, Fault, RunningDevServer
from assistant.events import Event, EventBus, StateChanged, Subscription
from assistant.settings import (
    AssistantSettings,
    ButtonSettings,
    DifySettings,
    LedKind,
    LedSettings,
    Secret,
    Settings,
    Trigger,
)

QUESTION = "What is the weather like on Mars?"
DEV_SERVER_OPTIONS = DevServerOptions(reply_sentences=1)
# Long enough to see a pulse (1 s a cycle) while transcribing and thinking.
DEV_SERVER_LATENCY = dict(stt_latency_ms=700, first_token_ms=700)
SETTLE_S = 0.03
"""Samples this soon after a state event are left out: blinking and pulsing start in
gpiozero's own thread, a moment after the light was told."""
BRIGHTNESS = 0.8
PINS = {
    LedKind.LED: {"pin": 12},
    LedKind.PWM: {"pin": 12},
    LedKind.RGB: {"red_pin": 22, "green_pin": 23, "blue_pin": 24},
}


@dataclass
class Segment:
    state: str
    start: float
    samples: list[tuple[float, tuple[float, ...]]] = field(default_factory=list)

    def levels(self, *, after: float = 0.0, before: float = float("inf")) -> set[tuple[float, ...]]:
        """The pin levels seen from SETTLE_S after the state began, between the times."""
        return {
            values
            for t, values in self.samples
            if t >= self.start + SETTLE_S and after <= t < before
        }


class PinWatch:
    """Samples the LED's pins at each state event and every 10 ms until the next one."""

    def __init__(self, pins: MockFactory, numbers: list[int]) -> None:
        self._pins = pins
        self._numbers = numbers
        self.segments: list[Segment] = []

    def on_event(self, event: Event) -> None:
        if isinstance(event, StateChanged):
            self.segments.append(Segment(event.state, time.monotonic()))
            # Once every listener has run, the status light included.
            asyncio.get_running_loop().call_soon(self.sample)

    def sample(self) -> None:
        if self.segments:
            values = tuple(round(float(self._pins.pin(n).state), 3) for n in self._numbers)
            self.segments[-1].samples.append((time.monotonic(), values))

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(0.01)

    def during(self, *states: str) -> Iterator[Segment]:
        return (s for s in self.segments if s.state in states)


def _settings(server: RunningDevServer, tmp_path: Path, **sections: Any) -> Settings:
    return Settings(
        assistant=AssistantSettings(state_dir=str(tmp_path)),
        dify=DifySettings(base_url=server.base_url, api_key=Secret("app-x")),
        **sections,
    )


def _leds(kind: LedKind, **more: Any) -> LedSettings:
    return LedSettings(kind=kind, brightness=BRIGHTNESS, **PINS[kind], **more)


def _mic(tmp_path: Path, after_s: float) -> Path:
    path = tmp_path / "mic.wav"
    path.write_bytes(
        encode_wav(concat(silence(300), speech_16k(QUESTION), silence(after_s * 1000)), 16_000)
    )
    return path


async def _run_watched(
    settings: Settings, tmp_path: Path, pins: MockFactory, mic: Path
) -> tuple[PinWatch, list[Event]]:
    numbers = [getattr(settings.leds, key) for key in settings.leds.pin_keys()]
    watch = PinWatch(pins, numbers)
    bus = EventBus()
    events = bus.subscribe()
    bus.add_listener(watch.on_event)
    sampler = asyncio.create_task(watch.run())
    try:
        await asyncio.wait_for(
            run_assistant(settings, RunOptions(mic, tmp_path / "out.wav"), bus), 90
        )
    finally:
        sampler.cancel()
    return watch, _drain(events)


def _drain(events: Subscription) -> list[Event]:
    seen = []
    while (event := events.get_nowait()) is not None:
        seen.append(event)
    return seen


def _steady(kind: LedKind, colour: tuple[float, float, float]) -> tuple[float, ...]:
    """The pins' levels of a steady light in `colour`."""
    if kind is LedKind.LED:
        return (1.0,)
    if kind is LedKind.PWM:
        return (BRIGHTNESS,)
    return tuple(round(c * BRIGHTNESS, 3) for c in colour)


def _assert_pulsing(kind: LedKind, levels: set[tuple[float, ...]], colour: Any) -> None:
    top = _steady(kind, colour)
    off = tuple(0.0 for _ in top)
    if kind is LedKind.LED:
        assert levels == {top, off}, "a plain LED blinks slowly instead"
        return
    assert off in levels and top in levels, levels
    between = {v for v in levels if v not in (off, top)}
    assert len(between) >= 3, f"it fades: {sorted(levels)}"
    assert all(max(v) <= max(top) for v in levels)


@pytest.mark.parametrize("kind", [LedKind.LED, LedKind.PWM, LedKind.RGB])
async def test_a_turn_shows_each_state_on_the_led(
    server: RunningDevServer, mock_pwm_pins: MockFactory, tmp_path: Path, kind: LedKind
) -> None:
    leds = _leds(kind)
    settings = _settings(server, tmp_path, leds=leds)
    watch, events = await _run_watched(settings, tmp_path, mock_pwm_pins, _mic(tmp_path, 5.0))

    assert [e.kind for e in events if e.kind == "answer"] == ["answer"]
    states = [s.state for s in watch.segments]
    assert states[:5] == ["listening", "transcribing", "thinking", "speaking", "listening"]
    for segment in watch.during("listening"):
        assert segment.levels() == {_steady(kind, leds.colour("listening"))}, segment
    working = set().union(*(s.levels() for s in watch.during("transcribing", "thinking")))
    _assert_pulsing(kind, working, leds.colour("thinking"))
    [speaking] = watch.during("speaking")
    assert speaking.levels() == {_steady(kind, leds.colour("speaking"))}
    # At the end of the run the light is off and its pins released.
    numbers = [getattr(leds, key) for key in leds.pin_keys()]
    assert all(mock_pwm_pins.pin(n).state == 0 for n in numbers)
    LED(numbers[0], pin_factory=mock_pwm_pins).close()


async def test_a_failed_turn_blinks_for_a_while_after(
    server: RunningDevServer, mock_pwm_pins: MockFactory, tmp_path: Path
) -> None:
    hold_s = 5.0
    leds = _leds(LedKind.RGB, error_hold_s=hold_s)
    server.state.faults.add(Fault("completion-messages", status=500, count=5))
    settings = _settings(server, tmp_path, leds=leds)
    watch, events = await _run_watched(settings, tmp_path, mock_pwm_pins, _mic(tmp_path, 8.0))

    [error] = [e for e in events if e.kind == "error"]
    states = [s.state for s in watch.segments]
    assert states[:5] == ["listening", "transcribing", "thinking", "error", "listening"]
    red = _steady(LedKind.RGB, leds.colour("error"))
    blinking = {red, (0.0, 0.0, 0.0)}
    [failed] = watch.during("error")
    assert failed.levels() == blinking, "blinks red, fast"
    after = watch.segments[4]
    hold_ends = error.t + hold_s
    assert after.start < hold_ends - 0.5, "the error was said quickly: the hold outlasts it"
    assert after.levels(before=hold_ends - 0.05) == blinking, "still blinking in listening"
    listening = _steady(LedKind.RGB, leds.colour("listening"))
    assert after.levels(after=hold_ends + 0.1) == {listening}, "then listening again"


async def test_an_led_pin_in_use_is_logged_once_and_the_assistant_runs(
    server: RunningDevServer,
    mock_pins: MockFactory,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    held = LED(12, pin_factory=mock_pins)  # something else has the pin
    settings = _settings(server, tmp_path, leds=LedSettings(kind=LedKind.LED, pin=12))
    bus = EventBus()
    events = bus.subscribe()
    with caplog.at_level(logging.ERROR):
        await asyncio.wait_for(
            run_assistant(settings, RunOptions(_mic(tmp_path, 1.0), tmp_path / "out.wav"), bus),
            60,
        )
    kinds = [e.kind for e in _drain(events)]
    assert "ready" in kinds and "transcript" in kinds
    [logged] = [r.getMessage() for r in caplog.records if "status LED" in r.getMessage()]
    assert logged.startswith("running without the status LED: leds.pin = 12: already in use")
    assert held.value == 0  # left alone
    held.close()


@pytest.mark.parametrize(("key", "pin"), [("pin", 5), ("cancel_pin", 6), ("volume_down_pin", 13)])
async def test_a_button_pin_in_use_is_a_config_error(
    server: RunningDevServer, mock_pins: MockFactory, tmp_path: Path, key: str, pin: int
) -> None:
    held = LED(pin, pin_factory=mock_pins)
    trigger = Trigger.PUSH_TO_TALK if key == "pin" else Trigger.HANDS_FREE
    settings = Settings(
        assistant=AssistantSettings(trigger=trigger, state_dir=str(tmp_path)),
        dify=DifySettings(base_url=server.base_url, api_key=Secret("app-x")),
        button=ButtonSettings(**{key: pin}),
    )
    mic = tmp_path / "mic.wav"
    mic.write_bytes(encode_wav(silence(500), 16_000))
    with pytest.raises(ConfigError, match=rf"^config error: button\.{key} = {pin}: already in use"):
        await run_assistant(settings, RunOptions(mic, tmp_path / "out.wav"))
    held.close()
    # Everything opened before the failure was released again.
    for n in (17, 5, 6, 13):
        LED(n, pin_factory=mock_pins).close()


async def test_each_button_reaches_the_loop(
    server: RunningDevServer, mock_pins: MockFactory, tmp_path: Path
) -> None:
    wired = {"cancel_pin": 5, "mute_pin": 6, "volume_up_pin": 13, "volume_down_pin": 26}
    settings = _settings(server, tmp_path, button=ButtonSettings(**wired))
    mic = tmp_path / "mic.wav"
    mic.write_bytes(encode_wav(silence(3000), 16_000))
    bus = EventBus()
    events = bus.subscribe()
    assistant = asyncio.create_task(
        run_assistant(settings, RunOptions(mic, tmp_path / "out.wav"), bus)
    )
    await _next(events, "ready")
    expected = [
        ("volume_up_pin", "volume", {"changed": True}),
        ("volume_down_pin", "volume", {"changed": True}),
        ("mute_pin", "mute", {"muted": True}),
        ("mute_pin", "mute", {"muted": False}),
        ("cancel_pin", "cancelled", {"by": "button"}),
    ]
    for key, kind, fields in expected:
        pin = mock_pins.pin(wired[key])
        pin.drive_low()
        pin.drive_high()
        event = await _next(events, kind)
        assert {name: event.data[name] for name in fields} == fields, (key, event)
    await asyncio.wait_for(assistant, 30)


async def _next(events: Subscription, kind: str) -> Event:
    async with asyncio.timeout(10):
        while (event := await events.get()).kind != kind:
            pass
    return event
