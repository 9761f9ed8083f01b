"""The kiosk page's on-screen talk button, as a Button port the loop reads like a real one.

The event socket's `talk_start` and `talk_stop` commands arrive on the event loop's thread;
each becomes a timestamped edge in a small queue, exactly as gpiozero's edges do for the
GPIO talk button (hardware.buttons.TalkButton). The loop treats it as press-and-hold in
every trigger mode (assistant.trigger).
"""

from __future__ import annotations

import time
from typing import Literal

from assistant.ports import ButtonEvent, EdgeQueue


class ScreenButton:
    """Edges pushed by commands; read by the loop through the Button port."""

    def __init__(self) -> None:
        self._edges = EdgeQueue("on-screen talk button", size=16)
        self._pressed = False

    @property
    def is_pressed(self) -> bool:
        return self._pressed

    def press(self) -> None:
        """A `talk_start`: ignored while already held (a page that sent it twice)."""
        if not self._pressed:
            self._pressed = True
            self._put("pressed")

    def release(self) -> None:
        """A `talk_stop`: ignored when not held (a release with no press is no edge)."""
        if self._pressed:
            self._pressed = False
            self._put("released")

    async def next_event(self, timeout: float) -> ButtonEvent:
        return await self._edges.next_event(timeout)

    def pending_events(self) -> list[ButtonEvent]:
        return self._edges.pending_events()

    def close(self) -> None:
        """Nothing to release: it has no pin."""

    def _put(self, kind: Literal["pressed", "released"]) -> None:
        self._edges.put(ButtonEvent(kind, time.monotonic()))
