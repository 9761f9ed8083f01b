"""Short tones the device plays when words are not possible (no network, no service)."""

from __future__ import annotations

import numpy as np


def _tone(freq: float, ms: int, rate: int, level: float = 0.3) -> np.ndarray:
    n = int(rate * ms / 1000)
    t = np.arange(n) / rate
    # A 5 ms fade at both ends avoids the click of a square-edged tone.
    fade = min(n // 2, int(rate * 0.005))
    envelope = np.ones(n)
    envelope[:fade] = np.linspace(0, 1, fade)
    envelope[n - fade :] = np.linspace(1, 0, fade)
    return (np.sin(2 * np.pi * freq * t) * envelope * level * 32767).astype(np.int16)


def error_earcon(rate: int) -> np.ndarray:
    """Two falling tones: 'that did not work'."""
    gap = np.zeros(int(rate * 0.04), dtype=np.int16)
    return np.concatenate([_tone(660, 120, rate), gap, _tone(440, 180, rate)])
