"""The far-end reference and the echo canceller, on arrays: espeak-ng speech through a
synthetic room (a delay, a gain, a reflection), the user talking over it."""

from __future__ import annotations

import numpy as np
import pytest
from audio_samples import concat, silence, speech_16k, voiced_span

from assistant.audio.echo_canceller import EchoCanceller
from assistant.audio.endpointer import Endpointer, SpeechStarted
from assistant.audio.far_end import REALIGN_S, FarEnd
from assistant.ports import AudioBlock
from assistant.settings import VadSettings

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


def test_a_new_stretch_is_realigning_for_a_moment() -> None:
    """A stream (re)opened is timed by its own first callbacks: the canceller is told it
    may still be finding that timing for REALIGN_S, and only then."""
    far_end = FarEnd()
    tone = (8000 * np.sin(np.arange(9600) * 0.3)).astype(np.int16)
    _play(far_end, tone, 48_000, 960, T0)  # 200 ms
    assert far_end.realigning(T0 + 0.1)
    assert not far_end.realigning(T0 - 0.1)
    _play(far_end, tone, 48_000, 960, T0 + 0.2)  # the same stream goes on
    assert not far_end.realigning(T0 + REALIGN_S + 0.05)
    far_end.flushed(T0 + 0.3)  # cut off: the next audio is a new stream
    _play(far_end, tone, 48_000, 960, T0 + 1.0)
    assert far_end.realigning(T0 + 1.1)
    assert not far_end.realigning(T0 + 1.0 + REALIGN_S + 0.01)


def test_a_flush_with_nothing_audible_to_come_keeps_the_stretch() -> None:
    """A paused answer flushed: the speaker keeps its stream (nothing audible was in
    flight), so what it plays next continues the same stretch, timed as before: no
    realigning, no move. A flush that cuts sound off starts a new stretch."""
    far_end = FarEnd()
    tone = (8000 * np.sin(np.arange(9600) * 0.3)).astype(np.int16)
    _play(far_end, tone, 48_000, 960, T0)  # 200 ms of sound
    _play(far_end, np.zeros(24_000, np.int16), 48_000, 960, T0 + 0.2)  # paused: silence
    far_end.flushed(T0 + 0.45)  # the paused answer dropped: silence was all that was to come
    # The same stream goes on, its callbacks' own times 5 ms late: still end to end.
    _play(far_end, tone, 48_000, 960, T0 + 0.705)
    assert not far_end.realigning(T0 + 0.75)
    window = far_end.window(T0 + 0.6, 3200)
    assert not window[:1550].any() and np.abs(window[1600:1700]).max() > 1_000

    far_end.flushed(T0 + 0.8)  # cut off mid-sound: a new stretch at its own time
    _play(far_end, tone, 48_000, 960, T0 + 0.805)
    assert far_end.realigning(T0 + 0.85)
    cut = far_end.window(T0 + 0.7, 1600)  # 0.7 s to 0.8 s: kept up to the cut
    assert np.abs(cut[:1500]).max() > 1_000


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


@pytest.mark.parametrize(("delay_ms", "gain_db"), [(20, 0.0), (60, 6.0), (120, 6.0)])
def test_echo_alone_is_silent_to_detection_and_a_user_over_it_is_not(
    delay_ms: int, gain_db: float
) -> None:
    """Blocks of nothing but the device's own echo reach the VAD as digital silence (AEC3's
    residual would pass for voice on a quiet microphone) but keep what the canceller left,
    so that a question starting in one is recorded whole; the user's voice over the
    answer opens an utterance soon after it starts, and nothing before it does."""
    far = concat(speech_16k(ANSWER), silence(200))
    user_at = 4000 * RATE // 1000
    user = concat(silence(4000), speech_16k(USER, "en-us"), silence(len(far) * 1000 // RATE))
    room = np.random.default_rng(5).normal(0, 30, len(far))  # a quiet room, -60 dBFS
    mic = _room(far, delay_ms, gain_db) + user[: len(far)] + room
    mic = np.clip(mic, -32768, 32767).astype(np.int16)
    far_end = FarEnd()
    canceller = EchoCanceller(far_end)
    endpointer = Endpointer(VadSettings())
    blocks, started = [], []
    for i in range(0, len(mic) - 319, 320):
        far_end.played(far[i : i + 320], RATE, T0 + i / RATE)
        blocks.append(canceller(AudioBlock(mic[i : i + 320], T0 + i / RATE)))
        started += [e for e in endpointer.process(blocks[-1]) if isinstance(e, SpeechStarted)]
    # While the canceller may still be finding the stream's timing, nothing is heard.
    assert all(b.heard is not None for b in blocks[: round(REALIGN_S * RATE) // 320])
    echo_only = blocks[RATE // 320 : user_at // 320]  # after a second of convergence
    silenced = [b for b in echo_only if b.heard is not None]
    assert len(silenced) >= 0.8 * len(echo_only)
    assert all(not b.heard.any() and b.detected is b.heard for b in silenced)
    assert any(b.samples.any() for b in silenced)  # the residual is kept, not zeroed
    assert canceller.echo_only_s >= len(silenced) * 0.02
    # The user, and only the user, opens an utterance: within 400 ms of starting to talk
    # over an answer that goes on (the loop would pause it at once).
    assert started, "the user talking over the answer was never heard"
    onset = T0 + (user_at + voiced_span(speech_16k(USER, "en-us"))[0]) / RATE
    assert onset - 0.03 <= started[0].t and started[0].t_detected <= onset + 0.4, (
        started[0].t - onset,
        started[0].t_detected - onset,
    )
