"""What the status light shows: a pattern per state, and an error held for a few seconds.

| state                    | pattern                                   |
| ------------------------ | ----------------------------------------- |
| idle                     | off                                       |
| listening                | on                                        |
| transcribing, thinking   | pulsing, 1 s a cycle (a plain LED blinks) |
| speaking                 | on                                        |
| error                    | blinking fast, for at least error_hold_s  |
| muted                    | a short flash every 2 s                   |

An RGB LED shows each in its colour from [leds]. `StatusLightFollower` is a synchronous bus
listener: it only tells the light what to do next (gpiozero blinks and pulses in its own
thread), so it costs the loop next to nothing. An `error` event, or the `error` state, makes
the light blink for `error_hold_s` even when the loop has already moved on, so a quick
failure is still seen. A light that raises is logged once and then left alone: the
assistant keeps running without it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from assistant.events import Error, Event, StateChanged
from assistant.ports import LightEffect, LightPattern, StatusLight
from assistant.settings import LedSettings
from assistant.states import State

log = logging.getLogger(__name__)

OFF = LightPattern(LightEffect.OFF)


def patterns(leds: LedSettings) -> dict[State, LightPattern]:
    """The pattern of each state, in the colours `leds` gives."""
    thinking = LightPattern(LightEffect.PULSE, leds.colour("thinking"), on_s=0.5, off_s=0.5)
    return {
        State.IDLE: OFF,
        State.LISTENING: LightPattern(LightEffect.ON, leds.colour("listening")),
        State.TRANSCRIBING: thinking,
        State.THINKING: thinking,
        State.SPEAKING: LightPattern(LightEffect.ON, leds.colour("speaking")),
        State.ERROR: LightPattern(LightEffect.BLINK, leds.colour("error"), on_s=0.1, off_s=0.1),
        State.MUTED: LightPattern(LightEffect.BLINK, leds.colour("muted"), on_s=0.1, off_s=1.9),
    }


class StatusLightFollower:
    """Shows the loop's state on a StatusLight; subscribe `on_event` to the bus."""

    def __init__(
        self,
        light: StatusLight,
        patterns: Mapping[State, LightPattern],
        *,
        error_hold_s: float,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        """`loop`: where the end of an error's hold is timed (default: the running one)."""
        self._light = light
        self._patterns = patterns
        self._error_hold_s = error_hold_s
        self._loop = loop or asyncio.get_running_loop()
        self._state = State.IDLE
        self._hold: asyncio.TimerHandle | None = None
        self._shown: LightPattern | None = None
        self._failed = False
        self._closed = False
        self._show(patterns.get(State.IDLE, OFF))

    def on_event(self, event: Event) -> None:
        if self._failed or self._closed:
            return
        if isinstance(event, StateChanged):
            try:
                self._state = State(event.state)
            except ValueError:
                return  # a state this table does not know yet: keep what it shows
            if self._state is State.ERROR:
                self._hold_error()
        elif isinstance(event, Error):
            self._hold_error()
        else:
            return
        self._update()

    def close(self) -> None:
        """Stop following; turn the light off and release its pins (even a failed one's)."""
        if self._closed:
            return
        self._closed = True
        if self._hold is not None:
            self._hold.cancel()
            self._hold = None
        try:
            self._light.close()
        except Exception as exc:
            # Said once: a light that failed before has had its traceback logged.
            log.warning("the status light could not be closed: %s", exc)

    def _hold_error(self) -> None:
        if self._hold is not None:
            self._hold.cancel()
        self._hold = self._loop.call_later(self._error_hold_s, self._hold_over)

    def _hold_over(self) -> None:
        self._hold = None
        self._update()

    def _update(self) -> None:
        state = State.ERROR if self._hold is not None else self._state
        self._show(self._patterns.get(state, OFF))

    def _show(self, pattern: LightPattern) -> None:
        # The same pattern again (transcribing, then thinking) is not restarted: the
        # pulse goes on smoothly.
        if self._failed or self._closed or pattern == self._shown:
            return
        try:
            self._light.show(pattern)
        except Exception:
            self._failed = True
            log.exception("the status light failed; it is left as it is from now on")
            return
        self._shown = pattern
