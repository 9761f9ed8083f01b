"""The talk button: gpiozero edges turned into timestamped events on the asyncio loop."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Literal

from gpiozero import Button, GPIOZeroError
from gpiozero.pins import Factory
from gpiozero.pins.mock import MockFactory

from assistant.ports import ButtonEvent, DeviceError

_LOG = logging.getLogger(__name__)

_QUEUE_SIZE = 64
"""Far more edges than anyone presses between two reads; beyond it the oldest go."""


def pin_factory_for(name: str) -> Factory | None:
    """The gpiozero pin factory `name` names: "" = None (gpiozero's choice), "mock"."""
    if name == "":
        return None
    if name == "mock":
        return MockFactory()
    raise DeviceError(f"unknown pin_factory {name!r}: use '' (gpiozero's default) or 'mock'")


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
        pin_factory: Factory | str = "",
    ) -> None:
        """`pin`: the BCM number of the pin the button pulls to ground.
        `bounce_ms`: contact debounce time; 0 = none.
        `pin_factory`: a gpiozero pin factory name ("" = gpiozero's choice, "mock"), in
        which case the button creates it and closes it with itself; or a factory object,
        which stays the caller's (tests share one MockFactory between buttons).
        """
        self._loop = loop
        self._queue: asyncio.Queue[ButtonEvent] = asyncio.Queue(_QUEUE_SIZE)
        self._own_factory: Factory | None = None
        factory: Factory | None
        if isinstance(pin_factory, str):
            factory = self._own_factory = pin_factory_for(pin_factory)
        else:
            factory = pin_factory
        bounce = bounce_ms / 1000 if bounce_ms > 0 else None
        try:
            self._button = Button(pin, pull_up=True, bounce_time=bounce, pin_factory=factory)
        except (GPIOZeroError, OSError) as exc:
            self._close_factory()
            raise DeviceError(f"cannot open the talk button on GPIO{pin}: {exc}") from exc
        self._button.when_pressed = self._on_pressed
        self._button.when_released = self._on_released
        self._closed = False
        _LOG.info("talk button on GPIO%d (bounce %d ms)", pin, bounce_ms)

    @property
    def is_pressed(self) -> bool:
        return not self._closed and bool(self._button.is_pressed)

    async def next_event(self, timeout: float) -> ButtonEvent:
        """The next press or release; raises TimeoutError if none comes in time."""
        async with asyncio.timeout(timeout):
            return await self._queue.get()

    def pending_events(self) -> list[ButtonEvent]:
        """Every press and release not yet read, oldest first, without waiting."""
        events: list[ButtonEvent] = []
        while not self._queue.empty():
            events.append(self._queue.get_nowait())
        return events

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
            self._loop.call_soon_threadsafe(self._put, event)
        except RuntimeError:
            _LOG.warning("talk button %s after the event loop closed; dropped", kind)

    def _put(self, event: ButtonEvent) -> None:
        if self._queue.full():
            dropped = self._queue.get_nowait()
            _LOG.warning(
                "talk button events not read; dropped the %s at %.3f", dropped.kind, dropped.t
            )
        self._queue.put_nowait(event)
