"""The interfaces every audio source, audio sink and talk button offers to the loop."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

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
