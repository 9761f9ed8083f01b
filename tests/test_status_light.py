"""The status light's policy: which pattern each state shows, an error held for a few
seconds, and a light that fails left alone. On a recording light; the gpiozero adapter and
the whole assistant are tested in test_gpio.py and test_gpio_in_loop.py."""

from __future__ import annotations

import asyncio
import logging

import pytest

from assistant.events import Error, EventBus, StateChanged, Transcript
from assistant.ports import LightEffect, LightPattern
from assistant.settings import LedKind, LedSettings
from assistant.states import State, StateMachine
from assistant.status_light import OFF, StatusLightFollower, patterns

LEDS = LedSettings(kind=LedKind.RGB, red_pin=5, green_pin=6, blue_pin=13)
PATTERNS = patterns(LEDS)


class RecordingLight:
    def __init__(self, fail_after: int | None = None) -> None:
        self.shown: list[LightPattern] = []
        self.closed = 0
        self._fail_after = fail_after

    def show(self, pattern: LightPattern) -> None:
        if self._fail_after is not None and len(self.shown) >= self._fail_after:
            raise OSError("pin gone")
        self.shown.append(pattern)

    def close(self) -> None:
        self.closed += 1


def _follow(light: RecordingLight, hold_s: float = 0.2) -> tuple[EventBus, StatusLightFollower]:
    bus = EventBus()
    follower = StatusLightFollower(light, PATTERNS, error_hold_s=hold_s)
    bus.add_listener(follower.on_event)
    return bus, follower


def _state(bus: EventBus, state: State) -> None:
    bus.publish(StateChanged(state=state.value, turn=1))


def test_the_pattern_of_each_state() -> None:
    effects = {state: PATTERNS[state].effect for state in State}
    assert effects == {
        State.IDLE: LightEffect.OFF,
        State.LISTENING: LightEffect.ON,
        State.TRANSCRIBING: LightEffect.PULSE,
        State.THINKING: LightEffect.PULSE,
        State.SPEAKING: LightEffect.ON,
        State.ERROR: LightEffect.BLINK,
        State.MUTED: LightEffect.BLINK,
    }
    assert PATTERNS[State.LISTENING].colour == (0.0, 0.0, 1.0)
    assert PATTERNS[State.MUTED].colour == (1.0, 128 / 255, 0.0)
    error, muted = PATTERNS[State.ERROR], PATTERNS[State.MUTED]
    assert error.on_s + error.off_s < 0.5, "an error blinks fast"
    assert muted.on_s < 0.2 and muted.off_s >= 1.5, "muted: a short flash now and then"


async def test_the_light_follows_the_states_without_restarting_a_pattern() -> None:
    light = RecordingLight()
    bus, follower = _follow(light)
    states = StateMachine(bus)
    for state in (State.LISTENING, State.TRANSCRIBING, State.THINKING, State.SPEAKING):
        states.to(state)
    states.to(State.MUTED)
    states.to(State.IDLE)
    bus.publish(Transcript(turn=1, text="not a state"))
    # Transcribing and thinking look the same: the pulse goes on, not restarted.
    assert light.shown == [
        OFF,
        PATTERNS[State.LISTENING],
        PATTERNS[State.THINKING],
        PATTERNS[State.SPEAKING],
        PATTERNS[State.MUTED],
        OFF,
    ]
    follower.close()
    assert light.closed == 1


async def test_an_error_blinks_on_after_the_state_moved_on() -> None:
    light = RecordingLight()
    bus, follower = _follow(light, hold_s=0.5)
    _state(bus, State.THINKING)
    _state(bus, State.ERROR)
    _state(bus, State.LISTENING)  # said what failed, quickly
    assert light.shown[-1] == PATTERNS[State.ERROR]
    await asyncio.sleep(0.1)
    _state(bus, State.TRANSCRIBING)
    assert light.shown[-1] == PATTERNS[State.ERROR], "held the whole time"
    await asyncio.sleep(0.5)
    assert light.shown[-1] == PATTERNS[State.TRANSCRIBING], "then the state's own"
    follower.close()


async def test_an_error_event_alone_blinks_too_and_a_new_one_holds_longer() -> None:
    light = RecordingLight()
    bus, follower = _follow(light, hold_s=0.4)
    _state(bus, State.LISTENING)
    bus.publish(Error(stage="startup", code="unreachable", message="timed out"))
    assert light.shown[-1] == PATTERNS[State.ERROR]
    await asyncio.sleep(0.3)
    bus.publish(Error(stage="device", code="device_error", message="gone"))
    await asyncio.sleep(0.2)  # past the first one's hold, within the second's
    assert light.shown[-1] == PATTERNS[State.ERROR]
    await asyncio.sleep(0.3)
    assert light.shown[-1] == PATTERNS[State.LISTENING]
    follower.close()


async def test_close_ends_the_hold_and_ignores_what_comes_after() -> None:
    light = RecordingLight()
    bus, follower = _follow(light, hold_s=0.05)
    _state(bus, State.ERROR)
    follower.close()
    follower.close()
    shown = len(light.shown)
    _state(bus, State.LISTENING)
    await asyncio.sleep(0.1)
    assert len(light.shown) == shown
    assert light.closed == 1


async def test_a_failing_light_is_logged_once_and_left_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    light = RecordingLight(fail_after=2)
    bus, follower = _follow(light)
    with caplog.at_level(logging.WARNING, logger="assistant.status_light"):
        for state in (State.LISTENING, State.TRANSCRIBING, State.THINKING, State.SPEAKING):
            _state(bus, state)  # the bus goes on: nothing raises into the loop
        bus.publish(Error(stage="stt", code="timeout", message="slow"))
        follower.close()
    assert light.shown == [OFF, PATTERNS[State.LISTENING]]
    failures = [r for r in caplog.records if "status light failed" in r.getMessage()]
    assert len(failures) == 1 and failures[0].exc_info is not None
    assert light.closed == 1, "its pins are still released at the end"


async def test_a_state_it_does_not_know_changes_nothing() -> None:
    light = RecordingLight()
    bus, follower = _follow(light)
    _state(bus, State.LISTENING)
    bus.publish(StateChanged(state="dreaming", turn=1))
    assert light.shown[-1] == PATTERNS[State.LISTENING]
    follower.close()


def test_colours_of_the_settings() -> None:
    leds = LedSettings(kind=LedKind.RGB, speaking_colour="#FF0080")
    assert patterns(leds)[State.SPEAKING].colour == (1.0, 0.0, 128 / 255)
