"""StreamResampler and resample_once."""

from __future__ import annotations

import numpy as np
import pytest
from audio_samples import tone

from assistant.audio.resample import StreamResampler, resample_once


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * rate / len(samples))


def chunked(resampler: StreamResampler, samples: np.ndarray, size: int) -> np.ndarray:
    parts = [resampler.process(samples[i : i + size]) for i in range(0, len(samples), size)]
    return np.concatenate([*parts, resampler.flush()])


@pytest.mark.parametrize("out_rate", [16_000, 48_000, 44_100, 8_000])
def test_tone_keeps_its_frequency_and_length(out_rate: int) -> None:
    source = tone(1000, 1000.0, rate=22_050)
    out = chunked(StreamResampler(22_050, out_rate), source, 441)
    assert out.dtype == np.int16
    assert abs(len(out) - out_rate) <= 2
    assert abs(dominant_frequency(out, out_rate) - 1000.0) < 2.0
    # Amplitude survives (the tone is far below every Nyquist frequency).
    assert 9_000 < np.abs(out[len(out) // 4 : 3 * len(out) // 4]).max() < 11_000


@pytest.mark.parametrize("size", [1, 37, 441, 4096])
def test_chunked_equals_one_shot(size: int) -> None:
    source = tone(500, 1000.0, rate=22_050)
    once = resample_once(source, 22_050, 16_000)
    streamed = chunked(StreamResampler(22_050, 16_000), source, size)
    assert len(streamed) == len(once)
    assert np.abs(streamed.astype(np.int32) - once).max() <= 2


def test_flush_makes_it_reusable() -> None:
    resampler = StreamResampler(24_000, 48_000)
    source = tone(200, 440.0, rate=24_000)
    first = chunked(resampler, source, 480)
    second = chunked(resampler, source, 480)
    # soxr dithers int16 output, so a fresh run matches to within rounding.
    assert len(first) == len(second) == 9600
    assert np.abs(first.astype(np.int32) - second).max() <= 2


def test_equal_rates_pass_through_untouched() -> None:
    resampler = StreamResampler(16_000, 16_000)
    source = tone(100, 440.0)
    assert resampler.passthrough
    assert resampler.process(source) is source
    assert len(resampler.flush()) == 0
    assert resample_once(source, 16_000, 16_000) is source


def test_empty_chunks_are_fine() -> None:
    resampler = StreamResampler(22_050, 16_000)
    assert len(resampler.process(np.zeros(0, dtype=np.int16))) == 0
    assert len(resampler.flush()) == 0


def test_rejects_wrong_input() -> None:
    with pytest.raises(TypeError):
        StreamResampler(22_050, 16_000).process(np.zeros(10, dtype=np.float32))
    with pytest.raises(TypeError):
        resample_once(np.zeros((2, 10), dtype=np.int16), 22_050, 16_000)
    with pytest.raises(ValueError):
        StreamResampler(0, 16_000)
