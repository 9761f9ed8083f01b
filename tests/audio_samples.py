"""Test audio: real espeak-ng speech at 16 kHz, silence, noise, and helpers to combine them.

espeak-ng runs once per distinct text per test session (results are cached and
returned read-only so no test can alter another's input).
"""

from __future__ import annotations

import functools

import numpy as np
import soxr

from assistant.audio.espeak import synthesize
from assistant.ports import CAPTURE_RATE, AudioBlock

RATE = CAPTURE_RATE
VOICED_THRESHOLD = 200
"""|sample| above this counts as sound when locating speech in a test signal."""


@functools.cache
def speech_native(
    text: str, voice: str = "en", words_per_minute: int = 175
) -> tuple[np.ndarray, int]:
    """espeak-ng's own output: (int16 samples, 22050)."""
    speech = synthesize(text, voice=voice, words_per_minute=words_per_minute)
    samples = speech.samples.copy()
    samples.flags.writeable = False
    return samples, speech.sample_rate


@functools.cache
def speech_16k(text: str, voice: str = "en", words_per_minute: int = 175) -> np.ndarray:
    """`text` spoken by espeak-ng, resampled to 16 kHz int16 mono."""
    samples, rate = speech_native(text, voice, words_per_minute)
    out = soxr.resample(samples, rate, RATE)
    out.flags.writeable = False
    return out


def silence(ms: float) -> np.ndarray:
    return np.zeros(int(RATE * ms / 1000), dtype=np.int16)


def noise(ms: float, rms: float, seed: int = 0) -> np.ndarray:
    """White noise with the given RMS (in int16 units)."""
    rng = np.random.default_rng(seed)
    values = rng.normal(0.0, rms, int(RATE * ms / 1000))
    return np.clip(values, -32768, 32767).astype(np.int16)


def tone(ms: float, freq: float, amplitude: float = 10_000, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(rate * ms / 1000)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def concat(*parts: np.ndarray) -> np.ndarray:
    return np.concatenate([np.asarray(p, dtype=np.int16) for p in parts])


def add_noise(signal: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    """`signal` plus white noise at `snr_db` below the RMS of its voiced part."""
    voiced = signal[np.abs(signal) > VOICED_THRESHOLD].astype(np.float64)
    level = float(np.sqrt(np.mean(voiced**2))) if len(voiced) else 1000.0
    rms = level / (10 ** (snr_db / 20))
    mixed = signal.astype(np.float64) + np.random.default_rng(seed).normal(0, rms, len(signal))
    return np.clip(mixed, -32768, 32767).astype(np.int16)


def voiced_span(samples: np.ndarray) -> tuple[int, int]:
    """Index of the first and one past the last sample louder than VOICED_THRESHOLD."""
    loud = np.flatnonzero(np.abs(samples) > VOICED_THRESHOLD)
    if len(loud) == 0:
        raise ValueError("signal has no voiced samples")
    return int(loud[0]), int(loud[-1]) + 1


def blocks(samples: np.ndarray, block_ms: float, t0: float = 1000.0) -> list[AudioBlock]:
    """`samples` cut into AudioBlocks of `block_ms`, timed as if captured from `t0`."""
    size = max(1, int(RATE * block_ms / 1000))
    return [AudioBlock(samples[i : i + size], t0 + i / RATE) for i in range(0, len(samples), size)]
