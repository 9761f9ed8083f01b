"""The buttons: gpiozero's edges handed over to the asyncio loop.

The talk button's edges become timestamped events in a queue the loop reads; each of the
other buttons (cancel, mute, volume) calls one function on the loop's thread when pressed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Literal

from gpiozero.pins import Factory

from assistant.ports import ButtonEvent, EdgeQueue
from hardware.gpio import open_button, pin_factory_for

_LOG = logging.getLogger(__name__)

_QUEUE_SIZE = 64
"""Far more edges than anyone presses between two reads; beyond it the oldest go."""


class TalkButton:
    """A push button wired from a GPIO pin to ground, using the internal pull-up.

    gpiozero calls back on its own thread; each edge is stamped there and
    handed to the loop with `call_soon_threadsafe`, so nothing blocks the loop
    and the event's time is the edge's, not the moment the loop got to it.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        pin: int,
        bounce_ms: int,
        pin_factory: Factory | str | None = "",
        label: str = "button.pin",
    ) -> None:
        """`pin`: the BCM number of the pin the button pulls to ground.
        `bounce_ms`: contact debounce time; 0 = none.
        `pin_factory`: a gpiozero pin factory name ("" = gpiozero's choice, "mock", ...), in
        which case the button creates it and closes it with itself; or a factory object
        (None: gpiozero's default), which stays the caller's (every GPIO device of the
        assistant shares one). `label`: how errors name the pin (its config key).
        Raises PinFactoryError or PinError (DeviceErrors) when it cannot be opened.
        """
        self._loop = loop
        self._edges = EdgeQueue("talk button", _QUEUE_SIZE)
        self._own_factory: Factory | None = None
        factory: Factory | None
        if isinstance(pin_factory, str):
            factory = self._own_factory = pin_factory_for(pin_factory)
        else:
            factory = pin_factory
        try:
            self._button = open_button(pin, bounce_ms, factory, label)
        except BaseException:
            self._close_factory()
            raise
        self._button.when_pressed = self._on_pressed
        self._button.when_released = self._on_released
        self._closed = False
        _LOG.info("talk button on GPIO%d (bounce %d ms)", pin, bounce_ms)

    @property
    def is_pressed(self) -> bool:
        return not self._closed and bool(self._button.is_pressed)

    async def next_event(self, timeout: float) -> ButtonEvent:
        """The next press or release; raises TimeoutError if none comes in time."""
        return await self._edges.next_event(timeout)

    def pending_events(self) -> list[ButtonEvent]:
        """Every press and release not yet read, oldest first, without waiting."""
        return self._edges.pending_events()

    def close(self) -> None:
        """Release the pin; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._button.when_pressed = None
        self._button.when_released = None
        try:
            self._button.close()
        finally:
            self._close_factory()

    def _close_factory(self) -> None:
        factory, self._own_factory = self._own_factory, None
        if factory is not None:
            factory.close()

    def _on_pressed(self) -> None:
        self._edge("pressed")

    def _on_released(self) -> None:
        self._edge("released")

    def _edge(self, kind: Literal["pressed", "released"]) -> None:
        """gpiozero's thread (or the caller's, for mock pins)."""
        event = ButtonEvent(kind, time.monotonic())
        try:
            self._loop.call_soon_threadsafe(self._edges.put, event)
        except RuntimeError:
            _LOG.warning("talk button %s after the event loop closed; dropped", kind)


class PressButton:
    """A button that does one thing when pressed: cancel, mute, a volume step.

    Wired from its pin to ground like the talk button (internal pull-up, debounced).
    gpiozero calls back on its own thread; the action is handed to the asyncio loop with
    `call_soon_threadsafe` and runs there, so it may touch the loop's objects.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        pin: int,
        bounce_ms: int,
        action: Callable[[], object],
        label: str,
        pin_factory: Factory | None = None,
    ) -> None:
        """`action`: called on the loop's thread at each press; `label`: what the button
        is called in logs and errors (its config key). Raises PinFactoryError or PinError
        (DeviceErrors) when the pin cannot be opened."""
        self._loop = loop
        self._action = action
        self.label = label
        self._button = open_button(pin, bounce_ms, pin_factory, label)
        self._button.when_pressed = self._pressed
        self._closed = False
        _LOG.info("%s: button on GPIO%d (bounce %d ms)", label, pin, bounce_ms)

    def _pressed(self) -> None:
        """gpiozero's thread (or the caller's, for mock pins)."""
        try:
            self._loop.call_soon_threadsafe(self._action)
        except RuntimeError:
            _LOG.warning("%s pressed after the event loop closed; ignored", self.label)

    def close(self) -> None:
        """Release the pin; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._button.when_pressed = None
        self._button.close()
