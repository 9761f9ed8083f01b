"""Device-rate capture chunks in, fixed-size 16 kHz blocks with steady timestamps out."""

from __future__ import annotations

import numpy as np
import soxr

from assistant.ports import CAPTURE_RATE, AudioBlock

_RESYNC_S = 0.1
"""A block timestamp this far off the running timeline restarts it."""
_DRIFT_GAIN = 0.02
"""How fast the timeline follows late timestamps: slow enough to average out GIL waits."""
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

    def _smooth(self, measured: float, frames: int) -> float:
        """A steady timeline through noisy callback timestamps.

        The noise is mostly lateness (the callback waits for the GIL before it
        reads the clock), so an earlier-than-predicted time is believed at
        once, a later one only slowly (that is clock drift), and a large jump
        (a stall, lost samples) restarts the timeline.
        """
        predicted = self._t_next
        if predicted is None or abs(measured - predicted) > _RESYNC_S or measured < predicted:
            t = measured
        else:
            t = predicted + (measured - predicted) * _DRIFT_GAIN
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
