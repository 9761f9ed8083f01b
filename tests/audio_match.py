"""Finding known speech inside a recording, for asserting what a speaker really played.

Codecs (mp3), resampling and PulseAudio change the waveform but not the
loudness contour, so matching is done on 10 ms RMS envelopes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import soxr

ENVELOPE_MS = 10


def envelope(samples: np.ndarray, rate: int) -> np.ndarray:
    hop = rate * ENVELOPE_MS // 1000
    n = len(samples) // hop
    frames = samples[: n * hop].astype(np.float64).reshape(n, hop)
    return np.sqrt((frames**2).mean(axis=1))


@dataclass(frozen=True)
class Match:
    start_s: float
    """Where the known speech begins in the recording."""
    score: float
    """Normalised correlation of the envelopes, 1.0 = identical contour."""


def find(recording: np.ndarray, rec_rate: int, known: np.ndarray, known_rate: int) -> Match:
    """Best position of `known` inside `recording` (both int16 mono)."""
    rate = 16_000
    rec = soxr.resample(recording.astype(np.float32), rec_rate, rate)
    ref = soxr.resample(known.astype(np.float32), known_rate, rate)
    env_rec, env_ref = envelope(rec, rate), envelope(ref, rate)
    if len(env_ref) == 0 or len(env_rec) < len(env_ref):
        return Match(0.0, 0.0)
    ref_c = env_ref - env_ref.mean()
    ref_norm = np.linalg.norm(ref_c) or 1.0
    windows = np.lib.stride_tricks.sliding_window_view(env_rec, len(env_ref))
    centred = windows - windows.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(centred, axis=1)
    norms[norms == 0] = np.inf
    scores = centred @ ref_c / (norms * ref_norm)
    best = int(np.argmax(scores))
    return Match(best * ENVELOPE_MS / 1000, float(scores[best]))


def first_sound_s(samples: np.ndarray, rate: int, threshold: int = 500) -> float | None:
    """Time of the first sample louder than `threshold`, or None for silence."""
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > threshold)
    return None if len(loud) == 0 else loud[0] / rate


def peak_correlation(haystack: np.ndarray, needle: np.ndarray) -> float:
    """Highest normalised correlation of `needle`'s waveform against any stretch of
    `haystack` (same rate): is this very sound in there, and how intact."""
    h = haystack.astype(np.float64)
    n = needle.astype(np.float64)
    if len(h) < len(n) or not n.any():
        return 0.0
    num = np.correlate(h, n, mode="valid")
    energy = np.convolve(h**2, np.ones(len(n)), mode="valid")
    return float(np.max(np.abs(num) / (np.sqrt(energy * np.dot(n, n)) + 1e-9)))
