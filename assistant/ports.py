"""The ports: what the loop needs from a microphone, a speaker and a button.

`assistant/` defines them; `hardware/` implements them (PyAudio, gpiozero, WAV files)
and imports nothing else from `assistant/`. Nothing here loads a device library, so
the core can be imported and tested without one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import numpy as np

CAPTURE_RATE = 16_000
"""Every source delivers 16 kHz mono int16: what webrtcvad and the STT uploads want."""


@dataclass(frozen=True, slots=True)
class AudioBlock:
    """A run of captured samples, already converted to 16 kHz mono int16."""

    samples: np.ndarray
    """int16, one dimension, at CAPTURE_RATE."""
    t_start: float
    """time.monotonic() of the first sample (best estimate from the device's timing)."""

    @property
    def duration(self) -> float:
        return len(self.samples) / CAPTURE_RATE


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
