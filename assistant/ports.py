"""The ports: what the loop needs from a microphone, a speaker, a button and a status light.

`assistant/` defines them; `hardware/` implements them (PyAudio, gpiozero, WAV files)
and imports nothing else from `assistant/`. Nothing here loads a device library, so
the core can be imported and tested without one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, Protocol, runtime_checkable

import numpy as np

_log = logging.getLogger(__name__)

CAPTURE_RATE = 16_000
"""Every source delivers 16 kHz mono int16: what webrtcvad and the STT uploads want."""


@dataclass(frozen=True, slots=True)
class AudioBlock:
    """A run of captured samples, already converted to 16 kHz mono int16."""

    samples: np.ndarray
    """int16, one dimension, at CAPTURE_RATE."""
    t_start: float
    """time.monotonic() of the first sample (best estimate from the device's timing)."""
    heard: np.ndarray | None = None
    """What detection (the VAD, the wake word) should go by when it differs from
    `samples`: the echo canceller's output with its blocks of nothing but the device's
    own echo silenced. `samples` stays what is recorded and uploaded, so that the first
    moments of a user talking over the device are kept, not zeroed with the echo. None:
    the same as `samples`."""

    @property
    def duration(self) -> float:
        return len(self.samples) / CAPTURE_RATE

    @property
    def detected(self) -> np.ndarray:
        """The samples detection goes by (`heard`, or `samples`)."""
        return self.samples if self.heard is None else self.heard


class DeviceError(RuntimeError):
    """A device could not be opened or stopped working; the loop reopens with backoff."""


class DeviceWedged(DeviceError):
    """A call into the audio library never returned: no device can be opened again in this
    process. The assistant exits so that its service manager starts a fresh one."""


class AudioSource(Protocol):
    """A microphone, or a WAV file played in real time as if it were one."""

    async def start(self) -> None:
        """Open the device; raises DeviceError when it cannot."""

    async def read(self, timeout: float) -> AudioBlock | None:
        """The next block; None once a finite source is exhausted.

        Raises TimeoutError when no block arrives within `timeout` seconds
        (a live device that stopped delivering is a fault, not silence).
        """

    async def close(self) -> None:
        """Release the device; safe to call twice."""


class AudioSink(Protocol):
    """A speaker, or a WAV file written on the microphone's timeline."""

    @property
    def sample_rate(self) -> int:
        """Rate the sink plays at; writers resample to it. Known after start()."""

    async def start(self) -> None:
        """Open the device; raises DeviceError when it cannot."""

    async def play(self, samples: np.ndarray, timeout: float) -> None:
        """Queue int16 mono samples at `sample_rate`.

        Returns as soon as they fit in the ring buffer, waiting for room when it
        is full (backpressure); raises TimeoutError if no room appears in time.
        """

    def flush(self) -> None:
        """Drop everything queued: playback stops within one device period."""

    async def drain(self, timeout: float) -> None:
        """Wait until everything queued has been played."""

    @property
    def is_playing(self) -> bool:
        """True while queued audio remains."""

    async def close(self) -> None:
        """Release the device; safe to call twice."""


@runtime_checkable
class BatchedHandover(Protocol):
    """A source that can hand its blocks over in batches (optional: the loop checks)."""

    def set_handover(self, seconds: float) -> None:
        """Let up to `seconds` of blocks collect before a waiting read() wakes.

        0 (the default, and again after each start()) wakes it for every block.
        While nobody is speaking the loop allows more, waking a few times a
        second instead of fifty; blocks keep their own timestamps either way.
        """


PlayedListener = Callable[[np.ndarray, int, float], None]
"""Told of each period a sink plays: (int16 mono samples, their rate, the time.monotonic()
at which they are heard). Called on the device's own thread: it must only hand them on."""


@runtime_checkable
class Monitored(Protocol):
    """A sink that tells what it actually plays, as it plays it (optional: the loop checks);
    the echo canceller's reference."""

    def monitor(self, listener: PlayedListener | None) -> None:
        """Hand every period played from now on to `listener` (None: stop)."""


@runtime_checkable
class Pausable(Protocol):
    """A sink that can hold what it is playing and go on later (optional)."""

    def pause(self) -> None:
        """Play silence from the next period on, dropping nothing."""

    def resume(self) -> None:
        """Play on from where it paused."""


@runtime_checkable
class Preparable(Protocol):
    """A sink that can get ready before it is needed (optional: the loop checks)."""

    def prepare(self) -> None:
        """Speech has begun: an answer may follow, so reopen what idling released.

        Never raises and never waits; a failure shows at the next play().
        """


@dataclass(frozen=True, slots=True)
class ButtonEvent:
    """One edge of a push button."""

    kind: Literal["pressed", "released"]
    t: float
    """time.monotonic() at the edge, taken in the driver's thread before any queueing."""


class EdgeQueue:
    """A talk button's edges, oldest first, waiting for the loop: bounded (beyond `size`
    the oldest go, with a warning naming `label`). Used on the event loop's thread only."""

    def __init__(self, label: str, size: int = 64) -> None:
        self._label = label
        self._queue: asyncio.Queue[ButtonEvent] = asyncio.Queue(size)

    def put(self, event: ButtonEvent) -> None:
        if self._queue.full():
            dropped = self._queue.get_nowait()
            _log.warning(
                "%s edges not read; dropped the %s at %.3f", self._label, dropped.kind, dropped.t
            )
        self._queue.put_nowait(event)

    async def next_event(self, timeout: float) -> ButtonEvent:
        """The next edge; raises TimeoutError if none comes in time."""
        async with asyncio.timeout(timeout):
            return await self._queue.get()

    def pending_events(self) -> list[ButtonEvent]:
        """Every edge not yet read, oldest first, without waiting."""
        edges: list[ButtonEvent] = []
        while not self._queue.empty():
            edges.append(self._queue.get_nowait())
        return edges


class Button(Protocol):
    """A push button (the talk button): its edges, timestamped, on the asyncio loop."""

    @property
    def is_pressed(self) -> bool:
        """Whether it is held down now."""

    async def next_event(self, timeout: float) -> ButtonEvent:
        """The next press or release; raises TimeoutError if none comes in time."""

    def pending_events(self) -> list[ButtonEvent]:
        """Every press and release not yet read, oldest first, without waiting."""

    def close(self) -> None:
        """Release the pin; safe to call twice."""


class LightEffect(StrEnum):
    OFF = "off"
    ON = "on"
    """Steady."""
    BLINK = "blink"
    """On for `on_s`, off for `off_s`, over and over."""
    PULSE = "pulse"
    """Fades in over `on_s` and out over `off_s`; a light that cannot fade blinks with
    those times instead."""


Colour = tuple[float, float, float]
"""Red, green, blue, each 0 to 1."""


@dataclass(frozen=True, slots=True)
class LightPattern:
    """What a status light does until it is told otherwise."""

    effect: LightEffect
    colour: Colour = (1.0, 1.0, 1.0)
    """What a colour light shows; a single-colour light ignores it."""
    on_s: float = 0.5
    off_s: float = 0.5


class StatusLight(Protocol):
    """A status LED: a plain one, a dimmable one, or an RGB one."""

    def show(self, pattern: LightPattern) -> None:
        """Do `pattern` from now on. Returns at once: blinking and pulsing run in the
        driver's own thread. Raises what the driver raises when a pin fails."""

    def close(self) -> None:
        """Turn it off and release its pins; safe to call twice."""
