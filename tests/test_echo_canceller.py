"""The far-end reference and the echo canceller, on arrays: espeak-ng speech through a
synthetic room (a delay, a gain, a reflection), the user talking over it."""

from __future__ import annotations

import numpy as np
import pytest
from audio_samples import concat, silence, speech_16k

from assistant.audio.echo_canceller import EchoCanceller
from assistant.audio.far_end import FarEnd
from assistant.ports import AudioBlock

RATE = 16_000
ANSWER = (
    "This is the local development server answering. It speaks in several sentences "
    "so that streaming can be heard. The first sentence is already playing."
)
USER = "Stop, what time is it?"
T0 = 500.0


def _power_db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(x.astype(np.float64) ** 2) + 1e-9))


def _room(far: np.ndarray, delay_ms: float, gain_db: float) -> np.ndarray:
    """What the microphone hears of `far`: delayed, scaled, with one 50 ms reflection."""
    d = round(delay_ms * RATE / 1000)
    echo = np.concatenate([np.zeros(d), far.astype(np.float64)])[: len(far)]
    echo = echo + 0.3 * np.concatenate([np.zeros(800), echo])[: len(echo)]
    return echo * 10 ** (gain_db / 20)


def _play(far_end: FarEnd, far: np.ndarray, rate: int, period: int, t0: float) -> None:
    """Hand `far` to the reference period by period, as a device playing it from t0."""
    for i in range(0, len(far), period):
        far_end.played(far[i : i + period], rate, t0 + i / rate)


def _cancel(near: np.ndarray, far: np.ndarray | None = None) -> np.ndarray:
    """`near` through a canceller while `far` plays (in real time: each 20 ms period is
    handed over as played, then the block the microphone heard meanwhile is processed),
    back on `near`'s timeline by the output's timestamps."""
    far_end = FarEnd()
    canceller = EchoCanceller(far_end)
    blocks = []
    for i in range(0, len(near) - 319, 320):
        if far is not None:
            far_end.played(far[i : i + 320], RATE, T0 + i / RATE)
        blocks.append(canceller(AudioBlock(near[i : i + 320], T0 + i / RATE)))
    lag = round((T0 - blocks[0].t_start) * RATE)
    assert 0 <= lag < 320
    return np.concatenate([b.samples for b in blocks])[lag:]


def test_the_reference_is_what_played_when_it_played() -> None:
    far_end = FarEnd()
    played = np.zeros(48_000, np.int16)
    played[24_000:24_480] = 10_000  # 10 ms of loud, half a second in
    _play(far_end, played, 48_000, 960, T0)
    window = far_end.window(T0 + 0.4, 3200)  # 0.4 s to 0.6 s
    loud = np.flatnonzero(np.abs(window) > 5_000)
    assert loud[0] == pytest.approx(1600, abs=3) and loud[-1] == pytest.approx(1760, abs=3)
    # Nothing played before, or after the end: silence, not stale audio.
    assert not far_end.window(T0 - 1.0, 1600).any()
    assert not far_end.window(T0 + 1.5, 1600).any()


def test_a_gap_in_playback_is_silence_in_the_reference() -> None:
    far_end = FarEnd()
    tone = (8000 * np.sin(np.arange(4800) * 0.3)).astype(np.int16)
    _play(far_end, tone, 48_000, 960, T0)
    _play(far_end, tone, 48_000, 960, T0 + 0.5)  # paused 0.4 s, then more
    window = far_end.window(T0, 16_000)
    assert np.abs(window[200:1400]).max() > 4_000
    assert not window[1700:7900].any()
    assert np.abs(window[8200:9400]).max() > 4_000


def test_the_reference_forgets_what_is_long_past() -> None:
    far_end = FarEnd(keep_s=1.0)
    loud = np.full(16_000 * 3, 9_000, np.int16)
    _play(far_end, loud, 16_000, 320, T0)
    assert not far_end.window(T0, 1600).any()
    assert far_end.window(T0 + 2.5, 1600).all()


@pytest.mark.parametrize(
    ("delay_ms", "gain_db", "most_lost_db", "least_corr"),
    [(20, 0.0, 6.0, 0.6), (60, 0.0, 6.0, 0.6), (120, 6.0, 10.0, 0.45)],
)
def test_the_echo_is_cancelled_and_the_user_kept(
    delay_ms: int, gain_db: float, most_lost_db: float, least_corr: float
) -> None:
    far = concat(speech_16k(ANSWER), silence(200))
    user = concat(silence(4000), speech_16k(USER, "en-us"), silence(len(far) * 1000 // RATE))
    user = user[: len(far)]
    echo = _room(far, delay_ms, gain_db)

    alone = _cancel(np.clip(echo, -32768, 32767).astype(np.int16), far)
    both = _cancel(np.clip(echo + user, -32768, 32767).astype(np.int16), far)

    # After a second of convergence, the echo is at least 25 dB down...
    n = len(alone)
    echo = echo[:n]
    erle = _power_db(echo[RATE:n]) - _power_db(alone[RATE:n])
    assert erle >= 25, erle
    # ...and during double talk the user's voice is kept, level and shape, enough for the
    # VAD and the recogniser: AEC3's suppressor ducks it by ~5 dB while the echo is as
    # loud as the user (~8 dB at 6 dB louder); bench.aec measures it.
    span = slice(4000 * RATE // 1000, 4000 * RATE // 1000 + len(speech_16k(USER, "en-us")))
    kept = both[span].astype(np.float64)
    said = user[span].astype(np.float64)
    said = said[: len(kept)]
    assert _power_db(said) - _power_db(kept) < most_lost_db
    assert np.corrcoef(kept, said)[0, 1] > least_corr


def test_with_nothing_playing_the_microphone_passes_through() -> None:
    user = concat(silence(300), speech_16k(USER))
    out = _cancel(user)
    said = user[: len(out)].astype(np.float64)
    # Only AEC3's high-pass filter touches it.
    assert np.corrcoef(out.astype(np.float64), said)[0, 1] > 0.95
