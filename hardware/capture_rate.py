"""Device-rate capture chunks in, fixed-size 16 kHz blocks with steady timestamps out."""

from __future__ import annotations

import numpy as np
import soxr

from assistant.ports import CAPTURE_RATE, AudioBlock

_RESYNC_S = 0.1
"""A block timestamp this far off the running timeline restarts it."""
_ENVELOPE_S = 2.0
"""The timeline is steered by the least late of the callbacks' timestamps over this long:
their noise is lateness (the callback waits for the GIL before it reads the clock), so
the earliest of a hundred is near where the samples really were."""
SLEW_S_PER_S = 0.0001
"""... at most this fast (0.1 ms per second): otherwise the timeline counts samples. The
echo canceller looks up the speaker's reference (itself counted in samples) by these
timestamps, so any move is a change in the room's delay as it sees it, and it lets echo
through while it re-finds it. In a busy process even the least late of half a second's
timestamps wanders by a few ms (measured on PulseAudio): following it faster, or snapping
to an early one, moved the delay the canceller saw by several ms, and each move let echo
through. Steered this slowly, a first timestamp a few ms off is right within a minute."""
_RESAMPLE_QUALITY = "LQ"
"""soxr's 16-bit recipe: ample for speech, and its output lags ~15 ms less than HQ's."""


class ToCaptureRate:
    """Device-rate chunks in, fixed-size CAPTURE_RATE blocks with their start times out.

    soxr emits in bursts (nothing for one chunk, two chunks' worth the next);
    re-blocking here costs no latency overall, because the VAD needs whole
    frames anyway, and it gives every consumer regular blocks.
    """

    def __init__(self, rate: int, channels: int, block: int) -> None:
        self._rate = rate
        self._channels = channels
        self._block = block
        self._resampler: soxr.ResampleStream | None = None
        self._in_count = 0
        self._out_count = 0
        self._pending = np.zeros(0, dtype=np.int16)
        self._t_next: float | None = None
        self._least_late = float("inf")
        """The least lateness of a callback's timestamp in the running envelope window."""
        self._window_frames = 0
        self._slew = 0.0
        """Seconds per frame the timeline is being moved by (set once per window)."""
        self.reset()

    def reset(self) -> None:
        """Forget the stream so far (after a gap, so the filter does not smear across it)."""
        if self._rate != CAPTURE_RATE:
            self._resampler = soxr.ResampleStream(
                self._rate, CAPTURE_RATE, 1, dtype="int16", quality=_RESAMPLE_QUALITY
            )
        self._in_count = 0
        self._out_count = 0
        self._pending = np.zeros(0, dtype=np.int16)
        self._t_next = None
        self._steer_afresh()

    def _steer_afresh(self) -> None:
        self._least_late, self._window_frames, self._slew = float("inf"), 0, 0.0

    def _smooth(self, measured: float, frames: int) -> float:
        """A steady timeline through noisy callback timestamps: sample-counted, steered
        slowly (SLEW_S_PER_S at most) towards the least late timestamps of each
        `_ENVELOPE_S`; a large jump (a stall, lost samples) restarts it."""
        t = self._t_next
        if t is None or abs(measured - t) > _RESYNC_S:
            self._steer_afresh()
            t = measured
        else:
            self._least_late = min(self._least_late, measured - t)
            self._window_frames += frames
            if self._window_frames >= _ENVELOPE_S * self._rate:
                # Spread the correction over the next window, no faster than the slew limit.
                most = SLEW_S_PER_S * self._window_frames / self._rate
                slew = min(most, max(-most, self._least_late)) / self._window_frames
                self._steer_afresh()
                self._slew = slew
            t += self._slew * frames
        self._t_next = t + frames / self._rate
        return t

    def push(self, data: bytes, t_start: float) -> list[AudioBlock]:
        samples = np.frombuffer(data, dtype=np.int16)
        if self._channels > 1:
            samples = samples[:: self._channels]  # the first channel of interleaved frames
        samples = np.ascontiguousarray(samples)
        t_start = self._smooth(t_start, len(samples))
        if self._resampler is None:
            out, t_out = samples, t_start
        else:
            out = self._resampler.resample_chunk(samples)
            # soxr aligns output sample j with input sample j*ratio; anchoring
            # that on this chunk's own timestamp keeps device clock drift out.
            ratio = self._rate / CAPTURE_RATE
            t_out = t_start + (self._out_count * ratio - self._in_count) / self._rate
            self._in_count += len(samples)
        self._out_count += len(out)
        if not len(out):
            return []
        # Pending samples come right before `out`: date them from the newest anchor too.
        t_first = t_out - len(self._pending) / CAPTURE_RATE
        pending = np.concatenate([self._pending, out]) if len(self._pending) else out
        full = len(pending) // self._block
        blocks = [
            AudioBlock(
                pending[i * self._block : (i + 1) * self._block].copy(),
                t_first + i * self._block / CAPTURE_RATE,
            )
            for i in range(full)
        ]
        self._pending = pending[full * self._block :].copy()
        return blocks
