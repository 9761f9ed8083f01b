"""Keeping the device's own sounds out of what it hears (half-duplex).

Without echo cancellation, a microphone in the same room as the speaker hears every
earcon, every thinking cue and every answer. `PlaybackTimeline` keeps the stretches of
time during which something the device played is audible (from the moment audio is
queued until it has played out, cut short by a flush); `SelfSoundGate` replaces what the
microphone captured during those stretches, plus `tail_s` for the speaker's own latency
and the room's echo, with digital silence before anything else sees it. Timing is kept,
so the endpointer's clock and pre-roll stay right; what is silenced can never open an
utterance, interrupt an answer or be uploaded.
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np

from assistant.ports import CAPTURE_RATE, AudioBlock


class PlaybackTimeline:
    """When what the device played is audible, on the monotonic clock."""

    def __init__(self, keep_s: float = 10.0) -> None:
        self._spans: deque[list[float]] = deque()
        self._keep_s = keep_s

    @property
    def audible_until(self) -> float:
        """When the last queued sample will have played (0 if nothing was played yet)."""
        return self._spans[-1][1] if self._spans else 0.0

    def played(self, seconds: float, now: float | None = None) -> None:
        """`seconds` of audio were queued now: audible after what is already queued."""
        now = time.monotonic() if now is None else now
        if self._spans and self._spans[-1][1] >= now:
            self._spans[-1][1] += seconds  # continues what is playing
        else:
            self._spans.append([now, now + seconds])
        while self._spans and self._spans[0][1] < now - self._keep_s:
            self._spans.popleft()

    def flushed(self, now: float | None = None) -> None:
        """Everything queued was dropped: nothing more is audible after now."""
        now = time.monotonic() if now is None else now
        while self._spans and self._spans[-1][0] > now:
            self._spans.pop()
        if self._spans and self._spans[-1][1] > now:
            self._spans[-1][1] = now

    def spans(self, since: float) -> list[tuple[float, float]]:
        """The audible stretches that end after `since`."""
        return [(start, end) for start, end in self._spans if end >= since]


class SelfSoundGate:
    """Silences captured audio while the device's own sound can reach the microphone."""

    def __init__(self, timeline: PlaybackTimeline, tail_s: float, lead_s: float = 0.02) -> None:
        """`tail_s`: how long after the last sample played the room may still carry it
        (output latency + echo); `lead_s`: slack for the capture timestamps."""
        self._timeline = timeline
        self._tail_s = tail_s
        self._lead_s = lead_s
        self.silenced_s = 0.0
        """Audio replaced by silence so far (for tests and benchmarks)."""

    def __call__(self, block: AudioBlock) -> AudioBlock:
        spans = self._timeline.spans(block.t_start - self._tail_s)
        if not spans:
            return block
        n = len(block.samples)
        times = block.t_start + np.arange(n) / CAPTURE_RATE
        heard = np.zeros(n, dtype=bool)
        for start, end in spans:
            heard |= (times >= start - self._lead_s) & (times <= end + self._tail_s)
        if not heard.any():
            return block
        samples = block.samples.copy()
        samples[heard] = 0
        self.silenced_s += int(heard.sum()) / CAPTURE_RATE
        return AudioBlock(samples, block.t_start)
