"""What the speaker actually played, on the monotonic clock: the echo canceller's reference.

The output device hands over every period it plays, as it plays it (the PortAudio
callback, or the WAV sink's clock), with the moment it becomes audible: the time of the
callback plus the stream's output latency. Pauses, underruns and flushes are therefore
in the reference as they were heard, not as the audio was queued. The capture side then
asks for the stretch that matches a microphone block's own timestamps (the capture
stream's latency is already in those), so the canceller only has to find the room's
delay, which AEC3's delay estimator does.

`played` runs on the device's thread and only appends under a lock; resampling and
assembly happen on the reading side.
"""

from __future__ import annotations

import threading
from collections import deque

import numpy as np
import soxr

from assistant.ports import CAPTURE_RATE

KEEP_S = 2.0
"""How far back the reference is kept: the longest room delay plus the capture's lag."""


RESYNC_S = 0.040
"""Periods of a running stream are laid end to end, sample-exact, from the stretch's first
timestamp: a callback's own time jitters by a few ms (tens under load), and a reference
with gaps or overlaps from that jitter is no signal the canceller can follow. Only a
period that is this far off where the stretch says it should be (the stream was closed,
restarted, paused by the device, or drifted) starts a new stretch at its own time."""


REALIGN_S = 0.3
"""A new stretch (a stream opened: at start, after a flush that cut sound off, after the
devices were reopened; the speaker keeps its stream otherwise) is timed by its own first
callbacks, a few ms off the last one (±7 ms measured on PulseAudio): AEC3 then
needs ~100 ms of echo to find the room's delay again, and lets that echo through
meanwhile. This long from the stretch's start covers the room's delay (120 ms tested) and
that re-convergence."""


class FarEnd:
    """Periods as played, with when each became audible; read back at the capture rate."""

    def __init__(self, keep_s: float = KEEP_S) -> None:
        self._keep_s = keep_s
        self._lock = threading.Lock()
        self._pending: deque[tuple[float, np.ndarray, int]] = deque()
        """(audible at, int16 mono samples, rate) handed over by the device, not yet read."""
        self._pieces: deque[tuple[float, np.ndarray]] = deque()
        """(audible at, float32 samples at the capture rate), oldest first."""
        self._out_t = 0.0
        """Where the next converted piece of the running stretch starts."""
        self._resampler: soxr.ResampleStream | None = None
        self._rate = 0
        self._next_t = -1.0
        """When the last converted period ended: where a continuing period starts."""
        self._stretch_t = -1.0
        """When the running stretch became audible."""

    def played(self, samples: np.ndarray, rate: int, audible_at: float) -> None:
        """Device thread: `samples` (int16 mono at `rate`) are heard from `audible_at`."""
        with self._lock:
            self._pending.append((audible_at, samples.copy(), rate))
            while self._pending and self._pending[0][0] < audible_at - self._keep_s:
                self._pending.popleft()

    def flushed(self, now: float) -> None:
        """Playback was cut off at `now`: what was handed over to be heard later never
        was, and must not be cancelled from what the microphone hears. When nothing
        audible was still to come (a paused answer, or one that had ended) the speaker
        kept its stream, which plays on with the same timing: nothing changes here."""
        self._convert()
        if not any(
            samples[max(0, round((now - start) * CAPTURE_RATE)) :].any()
            for start, samples in reversed(self._pieces)
            if start + len(samples) / CAPTURE_RATE > now
        ):
            return
        while self._pieces and self._pieces[-1][0] >= now:
            self._pieces.pop()
        if self._pieces:
            start, samples = self._pieces[-1]
            self._pieces[-1] = (start, samples[: max(0, round((now - start) * CAPTURE_RATE))])
        self._next_t = -1.0  # what plays next starts a new stretch

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()
        self._pieces.clear()
        self._next_t = -1.0

    def realigning(self, t: float) -> bool:
        """Whether `t` is within REALIGN_S of the start of the stretch playing then: the
        canceller may still be finding this stream's timing."""
        self._convert()
        return 0.0 <= t - self._stretch_t < REALIGN_S

    def window(self, t_start: float, n: int) -> np.ndarray:
        """The reference for `n` capture-rate samples from `t_start`: int16, silence where
        nothing was playing."""
        self._convert()
        out = np.zeros(n, dtype=np.float32)
        t_end = t_start + n / CAPTURE_RATE
        # Newest first: the block asked for is recent, so the walk stops early.
        for audible_at, samples in reversed(self._pieces):
            if audible_at + len(samples) / CAPTURE_RATE <= t_start:
                break
            if audible_at >= t_end:
                continue
            first = round((audible_at - t_start) * CAPTURE_RATE)
            lo, hi = max(0, first), min(n, first + len(samples))
            if lo < hi:
                out[lo:hi] = samples[lo - first : hi - first]
        return np.clip(out, -32768, 32767).astype(np.int16)

    def _convert(self) -> None:
        """Move what the device handed over into capture-rate pieces (loop side). A period
        that continues the stretch is placed right after the piece before it, whatever its
        own timestamp says; each piece is kept as it came (no growing array to copy)."""
        with self._lock:
            pending, self._pending = self._pending, deque()
        for audible_at, samples, rate in pending:
            continuing = (
                self._resampler is not None
                and rate == self._rate
                and abs(audible_at - self._next_t) <= RESYNC_S
            )
            if not continuing:
                self._resampler = soxr.ResampleStream(rate, CAPTURE_RATE, 1, dtype="float32")
                self._rate = rate
                self._out_t = self._stretch_t = audible_at
            assert self._resampler is not None
            converted = self._resampler.resample_chunk(samples.astype(np.float32))
            if len(converted):
                self._pieces.append((self._out_t, converted))
                self._out_t += len(converted) / CAPTURE_RATE
            self._next_t = (self._next_t if continuing else audible_at) + len(samples) / rate
        while self._pieces and (
            self._pieces[0][0] + len(self._pieces[0][1]) / CAPTURE_RATE
            < self._next_t - self._keep_s
        ):
            self._pieces.popleft()
