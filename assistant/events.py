"""The event bus: how the loop tells the world what it is doing.

The loop publishes; LEDs, logs, the JSONL writer and (later) the kiosk page
subscribe. Publishing never blocks and never fails because a subscriber is
slow: each subscriber has a bounded queue and loses its oldest events first.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Event:
    kind: str
    """state | transcript | answer | sentence | marks | error | utterance_dropped | info |
    speculation | ..."""
    data: dict[str, Any] = field(default_factory=dict)
    t: float = field(default_factory=time.monotonic)
    """time.monotonic() when it happened."""

    def to_json(self) -> str:
        return json.dumps({"t": round(self.t, 6), "kind": self.kind, **self.data}, default=str)


class Subscription:
    """One subscriber's bounded mailbox."""

    def __init__(self, bus: EventBus, maxsize: int) -> None:
        self._bus = bus
        self._queue: asyncio.Queue[Event] = asyncio.Queue(maxsize)
        self.dropped = 0

    def _offer(self, event: Event) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(event)

    async def get(self) -> Event:
        return await self._queue.get()

    def get_nowait(self) -> Event | None:
        try:
            return self._queue.get_nowait()
        except asyncio.QueueEmpty:
            return None

    def close(self) -> None:
        self._bus._subscriptions.discard(self)


class EventBus:
    def __init__(self) -> None:
        self._subscriptions: set[Subscription] = set()
        self._listeners: list[Callable[[Event], None]] = []

    def subscribe(self, maxsize: int = 1000) -> Subscription:
        sub = Subscription(self, maxsize)
        self._subscriptions.add(sub)
        return sub

    def add_listener(self, listener: Callable[[Event], None]) -> None:
        """A synchronous listener, called in publish order (for cheap sinks like a file)."""
        self._listeners.append(listener)

    def publish(self, kind: str, **data: Any) -> Event:
        event = Event(kind, data)
        for sub in self._subscriptions:
            sub._offer(event)
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                # A broken listener must not take the loop down with it.
                log.exception("event listener failed on %s", kind)
        return event


class JsonlWriter:
    """Writes every event as one JSON line; flushed per line so a crash loses nothing."""

    def __init__(self, path: Path) -> None:
        self._file: TextIO = path.open("w", encoding="utf-8")

    def __call__(self, event: Event) -> None:
        self._file.write(event.to_json() + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()
