"""The way out to the speaker: every sound the device plays passes here.

`OutputSink` wraps the real sink (a PyAudio speaker or a WAV file): it applies the
volume, and notes on the PlaybackTimeline when what it queued will be audible, so the
capture side can keep the device's own sounds out of what it hears.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from assistant.audio.self_sound import PlaybackTimeline
from assistant.ports import AudioSink, Pausable, Preparable
from assistant.volume import Volume, apply_gain


class OutputSink:
    """An AudioSink in front of the real one: volume applied, playback timed."""

    def __init__(self, inner: AudioSink, volume: Volume, timeline: PlaybackTimeline) -> None:
        self.inner = inner
        self.volume = volume
        self.timeline = timeline
        self.on_flush: Callable[[float], None] | None = None
        """Told when playback is cut off (the echo canceller's reference drops the rest)."""
        self._paused_since: float | None = None
        self._paused_s = 0.0
        """Time spent paused before the current pause (drain waits that much longer)."""

    @property
    def sample_rate(self) -> int:
        return self.inner.sample_rate

    @property
    def is_playing(self) -> bool:
        return self.inner.is_playing

    async def start(self) -> None:
        await self.inner.start()

    async def play(self, samples: np.ndarray, timeout: float) -> None:
        # Timed from the call: a full buffer makes play() wait, but these samples sound
        # right after what is already queued, not after the wait.
        queued_at = time.monotonic()
        await self.inner.play(apply_gain(samples, self.volume.gain), timeout)
        self.timeline.played(len(samples) / self.inner.sample_rate, now=queued_at)

    def flush(self) -> None:
        self.resume()
        self.inner.flush()
        self.timeline.flushed()
        if self.on_flush is not None:
            self.on_flush(time.monotonic())

    @property
    def pausable(self) -> bool:
        return isinstance(self.inner, Pausable)

    def pause(self) -> None:
        """Hold what is playing (silence from the next period); nothing is dropped."""
        if isinstance(self.inner, Pausable) and self._paused_since is None:
            self._paused_since = time.monotonic()
            self.inner.pause()

    def resume(self) -> None:
        if isinstance(self.inner, Pausable) and self._paused_since is not None:
            self._paused_s += time.monotonic() - self._paused_since
            self._paused_since = None
            self.inner.resume()

    async def drain(self, timeout: float) -> None:
        """Wait until everything queued has played; time spent paused meanwhile does not
        count against `timeout` (a stalled device still times out)."""
        while True:
            paused_before = self.paused_s
            try:
                await self.inner.drain(timeout)
                return
            except TimeoutError:
                if self.paused_s - paused_before < 0.1:
                    raise

    @property
    def paused_s(self) -> float:
        """Seconds spent paused so far, the current pause included."""
        now = time.monotonic()
        return self._paused_s + (now - self._paused_since if self._paused_since else 0.0)

    def prepare(self) -> None:
        if isinstance(self.inner, Preparable):
            self.inner.prepare()

    async def close(self) -> None:
        await self.inner.close()
