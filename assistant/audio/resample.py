"""Sample-rate conversion of int16 mono audio with soxr, in streams and in one go."""

from __future__ import annotations

import numpy as np
import soxr

DEFAULT_QUALITY = "HQ"
"""soxr's own default: transparent for speech and cheap enough on a Pi 4 for a few
streams; pass "MQ"/"LQ" on weaker boards."""


class StreamResampler:
    """Converts a stream of int16 mono chunks from `in_rate` to `out_rate`.

    soxr keeps the filter state between chunks, so chunked output joins up with
    no clicks and equals the one-shot result. Output lags input by the filter
    delay; `flush()` releases the tail at the end of the stream and makes the
    resampler ready for the next one. Equal rates pass chunks through untouched.
    """

    def __init__(self, in_rate: int, out_rate: int, quality: str = DEFAULT_QUALITY) -> None:
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError(f"sample rates must be positive, got {in_rate} -> {out_rate}")
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._stream: soxr.ResampleStream | None = None
        if in_rate != out_rate:
            self._stream = soxr.ResampleStream(in_rate, out_rate, 1, dtype="int16", quality=quality)

    @property
    def passthrough(self) -> bool:
        return self._stream is None

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Resampled int16 samples for this chunk (possibly empty while the filter fills)."""
        samples = _as_int16(samples)
        if self._stream is None:
            return samples
        return self._stream.resample_chunk(samples, last=False)

    def flush(self) -> np.ndarray:
        """The samples still held in the filter; the resampler then starts afresh."""
        if self._stream is None:
            return np.zeros(0, dtype=np.int16)
        tail = self._stream.resample_chunk(np.zeros(0, dtype=np.int16), last=True)
        self._stream.clear()
        return tail


def resample_once(
    samples: np.ndarray, in_rate: int, out_rate: int, quality: str = DEFAULT_QUALITY
) -> np.ndarray:
    """A whole int16 mono signal at `out_rate` (the input itself when the rates are equal)."""
    samples = _as_int16(samples)
    if in_rate == out_rate:
        return samples
    return soxr.resample(samples, in_rate, out_rate, quality=quality)


def _as_int16(samples: np.ndarray) -> np.ndarray:
    if samples.dtype != np.int16 or samples.ndim != 1:
        raise TypeError(f"expected 1-D int16 samples, got {samples.dtype} {samples.shape}")
    return samples
