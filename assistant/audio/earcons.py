"""Short sounds the device makes instead of words: listening, done, thinking, error, tick.

Generated with numpy at the speaker's rate (or read from a WAV file the config names),
and level-matched to speech: each is scaled to an RMS level relative to the active level
of the voices the assistant speaks with (espeak-ng and the services' voices sit around
-19 dBFS), so no earcon startles and none is lost next to an answer. The thinking cue is
deliberately softer: it repeats while the user waits.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import numpy as np

from assistant.audio.decoders import SniffingDecoder
from assistant.audio.resample import resample_once
from assistant.audio.wav import AudioFormatError

SPEECH_LEVEL_DBFS = -19.0
"""Active RMS level of speech as the voices deliver it."""


class Earcon(StrEnum):
    LISTENING = "listening"
    """Capture started by a button, a tap, the follow-up window or a wake word."""
    DONE = "done"
    """The answer has finished playing."""
    THINKING = "thinking"
    """One beat of the thinking cue; repeated every THINKING_PERIOD_S while waiting."""
    ERROR = "error"
    """Something failed (before the spoken explanation, or instead of it)."""
    TICK = "tick"
    """The volume changed: heard at the new level."""


LEVEL_DB: dict[Earcon, float] = {
    Earcon.LISTENING: 0.0,
    Earcon.DONE: -3.0,
    Earcon.THINKING: -12.0,
    Earcon.ERROR: 0.0,
    Earcon.TICK: -3.0,
}
"""Each earcon's RMS level relative to speech."""
THINKING_PERIOD_S = 1.2
"""The thinking cue's beat: one soft blip this often."""


def _tone(freq: float, ms: int, rate: int) -> np.ndarray:
    """A sine of `ms` with 5 ms fades (a square-edged tone clicks), as float at full scale."""
    n = int(rate * ms / 1000)
    t = np.arange(n) / rate
    fade = min(n // 2, int(rate * 0.005))
    envelope = np.ones(n)
    envelope[:fade] = np.linspace(0, 1, fade)
    envelope[n - fade :] = np.linspace(1, 0, fade)
    return np.sin(2 * np.pi * freq * t) * envelope


def _gap(ms: int, rate: int) -> np.ndarray:
    return np.zeros(int(rate * ms / 1000))


def _shape(earcon: Earcon, rate: int) -> np.ndarray:
    if earcon is Earcon.LISTENING:  # rising: "go ahead"
        return np.concatenate([_tone(660, 70, rate), _gap(20, rate), _tone(990, 90, rate)])
    if earcon is Earcon.DONE:  # falling, short: "that's all"
        return np.concatenate([_tone(880, 60, rate), _gap(15, rate), _tone(660, 80, rate)])
    if earcon is Earcon.THINKING:  # one soft low blip
        return _tone(520, 90, rate)
    if earcon is Earcon.ERROR:  # two falling tones: "that did not work"
        return np.concatenate([_tone(660, 120, rate), _gap(40, rate), _tone(440, 180, rate)])
    return _tone(1200, 35, rate)  # TICK


def level_matched(samples: np.ndarray, level_db: float) -> np.ndarray:
    """`samples` (any scale) as int16 at `level_db` relative to speech's active level."""
    x = np.asarray(samples, dtype=np.float64)
    rms = float(np.sqrt(np.mean(x**2))) if len(x) else 0.0
    if rms == 0.0:
        return np.zeros(len(x), dtype=np.int16)
    target = 32767 * 10 ** ((SPEECH_LEVEL_DBFS + level_db) / 20)
    return np.clip(np.rint(x * (target / rms)), -32768, 32767).astype(np.int16)


def make_earcon(earcon: Earcon, rate: int, wav: Path | None = None) -> np.ndarray:
    """The earcon at `rate`: from `wav` when given (any rate, mono or stereo), else made."""
    if wav is not None:
        shape = read_earcon_file(wav, rate).astype(np.float64)
    else:
        shape = _shape(earcon, rate)
    return level_matched(shape, LEVEL_DB[earcon])


def read_earcon_file(path: Path, rate: int) -> np.ndarray:
    """A WAV file's sound as int16 mono at `rate`; AudioFormatError if it holds none."""
    decoder = SniffingDecoder("audio/wav")
    chunks = [*decoder.feed(path.read_bytes()), *decoder.close()]
    if not chunks:
        raise AudioFormatError(f"{path}: no audio in it")
    samples = np.concatenate([c.samples for c in chunks])
    return resample_once(samples, chunks[0].sample_rate, rate)


def error_earcon(rate: int) -> np.ndarray:
    """Two falling tones: 'that did not work'."""
    return make_earcon(Earcon.ERROR, rate)
