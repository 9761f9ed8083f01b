"""Endpointer on real espeak-ng speech and on synthetic signals."""

from __future__ import annotations

import io
import wave
from dataclasses import replace

import numpy as np
import pytest
from audio_samples import (
    RATE,
    add_noise,
    blocks,
    concat,
    noise,
    silence,
    speech_16k,
    voiced_span,
)

from assistant.audio.endpointer import (
    DropReason,
    Endpointer,
    EndpointEvent,
    EndReason,
    SpeechStarted,
    Utterance,
    UtteranceDropped,
    UtteranceEnded,
)
from assistant.ports import AudioBlock
from assistant.settings import VadSettings

T0 = 5000.0
QUESTION = "What is the weather going to be like in Paris tomorrow?"
PART_ONE = "Set a timer"
PART_TWO = "for ten minutes please"


def run(
    samples: np.ndarray, settings: VadSettings | None = None, block_ms: float = 20
) -> list[EndpointEvent]:
    endpointer = Endpointer(settings or VadSettings())
    events: list[EndpointEvent] = []
    for block in blocks(samples, block_ms, T0):
        events += endpointer.process(block)
    return events + endpointer.flush(T0 + len(samples) / RATE)


def utterances(events: list[EndpointEvent]) -> list[Utterance]:
    return [e.utterance for e in events if isinstance(e, UtteranceEnded)]


def index_of(t: float) -> int:
    """Sample index in the test signal of monotonic time `t`."""
    return round((t - T0) * RATE)


def assert_is_slice_of(utterance: Utterance, signal: np.ndarray) -> int:
    """The utterance is exactly the input from its t_start on; returns its start index."""
    start = index_of(utterance.t_start)
    np.testing.assert_array_equal(utterance.samples, signal[start : start + len(utterance.samples)])
    return start


def kinds(events: list[EndpointEvent]) -> list[str]:
    return [type(e).__name__ for e in events]


# ------------------------------------------------------------------ speech


def question_signal() -> tuple[np.ndarray, int, int]:
    speech = speech_16k(QUESTION)
    onset, end = voiced_span(speech)
    lead = len(silence(1000))
    return concat(silence(1000), speech, silence(1500)), lead + onset, lead + end


def test_question_is_one_utterance_with_onset_and_whole_question() -> None:
    signal, onset, end = question_signal()
    events = run(signal)
    assert kinds(events) == ["SpeechStarted", "UtteranceEnded"]
    started, ended = events
    assert isinstance(started, SpeechStarted) and isinstance(ended, UtteranceEnded)
    assert ended.reason is EndReason.SILENCE
    utterance = ended.utterance
    start = assert_is_slice_of(utterance, signal)
    # Onset kept, with most of the 300 ms pre-roll before it.
    assert start <= onset - 0.150 * RATE
    assert start >= onset - 0.400 * RATE
    # The whole question is inside.
    assert start + len(utterance.samples) >= end
    assert started.t <= utterance.t_speech_end
    assert abs(started.t - (T0 + onset / RATE)) < 0.1


@pytest.mark.parametrize("block_ms", [20, 30])
def test_detection_goes_by_what_is_heard_and_the_upload_keeps_what_was_recorded(
    block_ms: float,
) -> None:
    """The echo canceller hands over blocks it judged the device's own echo with a silent
    `heard`: the VAD must not open on them, yet a question starting in them keeps them."""
    signal, onset, end = question_signal()
    judged_echo = onset + int(0.150 * RATE)  # the question's first 150 ms are in them
    endpointer = Endpointer(VadSettings())
    events: list[EndpointEvent] = []
    for block in blocks(signal, block_ms, T0):
        first = index_of(block.t_start)
        if first < judged_echo:
            heard = block.samples.copy()
            heard[: judged_echo - first] = 0
            block = AudioBlock(block.samples, block.t_start, heard=heard)
        events += endpointer.process(block)
    started = [e for e in events if isinstance(e, SpeechStarted)]
    assert len(started) == 1
    # Heard late (the first voiced frame is after the silenced part) ...
    assert started[0].t >= T0 + judged_echo / RATE - 0.02
    # ... but recorded whole: the pre-roll reaches back into what detection did not hear.
    (utterance,) = utterances(events)
    start = assert_is_slice_of(utterance, signal)
    assert start <= onset and start + len(utterance.samples) >= end


@pytest.mark.parametrize(("gap_ms", "dropped"), [(400, True), (120, False)])
def test_voice_before_a_gap_can_be_dropped_from_the_open_utterance(
    gap_ms: int, dropped: bool
) -> None:
    """What opened the utterance (a moment of the answer the canceller let through) is
    dropped when the question came after a gap; the question keeps its pre-roll."""
    question = speech_16k(QUESTION)
    onset, _ = voiced_span(question)
    burst = question[onset : onset + int(0.2 * RATE)]  # 200 ms of voice
    signal = concat(silence(500), burst, silence(gap_ms), question, silence(1500))
    question_at = len(silence(500)) + len(burst) + len(silence(gap_ms)) + onset
    endpointer = Endpointer(VadSettings())
    events: list[EndpointEvent] = []
    new_start = None
    for block in blocks(signal, 20, T0):
        events += endpointer.process(block)
        if new_start is None and index_of(block.t_start) >= question_at + int(0.4 * RATE):
            burst_end = T0 + (len(silence(500)) + len(burst)) / RATE
            new_start = endpointer.drop_speech_before(burst_end + 0.05, gap_ms=200)
            assert endpointer.drop_speech_before(burst_end + 0.05, gap_ms=200) is None
    events += endpointer.flush(T0 + len(signal) / RATE)
    assert kinds(events) == ["SpeechStarted", "UtteranceEnded"]
    (utterance,) = utterances(events)
    start = assert_is_slice_of(utterance, signal)
    if dropped:
        assert new_start == utterance.t_start
        assert len(silence(500)) + len(burst) <= start <= question_at - int(0.15 * RATE)
    else:
        assert new_start is None
        assert start <= len(silence(500))


def test_question_timing_and_trimmed_tail() -> None:
    signal, _, end = question_signal()
    utterance = utterances(run(signal))[0]
    settings = VadSettings()
    # Ended after the hangover, measured from the end of the last voiced frame.
    assert utterance.t_detected - utterance.t_speech_end == pytest.approx(
        settings.hangover_ms / 1000, abs=0.021
    )
    # The uploaded audio stops ~100 ms after the last voiced frame, not after the hangover.
    utterance_end = utterance.t_start + utterance.duration
    assert utterance_end - utterance.t_speech_end == pytest.approx(0.1, abs=0.021)
    assert abs(utterance.t_speech_end - (T0 + end / RATE)) < 0.2
    assert settings.min_speech_ms <= utterance.speech_ms <= utterance.duration * 1000


def test_wav_bytes_of_an_utterance() -> None:
    signal, _, _ = question_signal()
    utterance = utterances(run(signal))[0]
    with wave.open(io.BytesIO(utterance.to_wav_bytes())) as reader:
        assert (reader.getframerate(), reader.getnchannels(), reader.getsampwidth()) == (
            16000,
            1,
            2,
        )
        data = np.frombuffer(reader.readframes(reader.getnframes()), dtype="<i2")
    np.testing.assert_array_equal(data, utterance.samples)


def two_part_signal(pause_ms: int) -> np.ndarray:
    one = speech_16k(PART_ONE)
    two = speech_16k(PART_TWO)
    # Cut espeak's own trailing/leading quiet so the pause is exactly `pause_ms`.
    one = one[: voiced_span(one)[1]]
    two = two[voiced_span(two)[0] :]
    return concat(silence(800), one, silence(pause_ms), two, silence(1500))


def test_pause_shorter_than_hangover_keeps_one_utterance() -> None:
    signal = two_part_signal(300)
    events = run(signal)
    assert kinds(events) == ["SpeechStarted", "UtteranceEnded"]
    utterance = utterances(events)[0]
    start = assert_is_slice_of(utterance, signal)
    last_loud = voiced_span(signal)[1]
    assert start + len(utterance.samples) >= last_loud


def test_pause_longer_than_hangover_splits() -> None:
    signal = two_part_signal(450)
    events = run(signal, VadSettings(hangover_ms=200))
    assert kinds(events) == ["SpeechStarted", "UtteranceEnded"] * 2
    first, second = utterances(events)
    assert first.t_start + first.duration <= second.t_start
    for utterance in (first, second):
        assert_is_slice_of(utterance, signal)


@pytest.mark.parametrize("block_ms", [10, 20, 37, 1000])
@pytest.mark.parametrize("frame_ms", [10, 20, 30])
def test_block_size_does_not_change_the_result(block_ms: float, frame_ms: int) -> None:
    signal = two_part_signal(450)
    settings = VadSettings(frame_ms=frame_ms, hangover_ms=200)
    reference = run(signal, settings, block_ms=frame_ms)
    events = run(signal, settings, block_ms=block_ms)
    assert kinds(events) == kinds(reference)
    for got, want in zip(events, reference, strict=True):
        if isinstance(got, UtteranceEnded):
            assert isinstance(want, UtteranceEnded)
            np.testing.assert_array_equal(got.utterance.samples, want.utterance.samples)
            assert got.utterance.t_start == pytest.approx(want.utterance.t_start, abs=1e-9)
            assert got.utterance.t_detected == pytest.approx(want.utterance.t_detected, abs=1e-9)
        elif isinstance(got, SpeechStarted):
            assert isinstance(want, SpeechStarted)
            assert got.t == pytest.approx(want.t, abs=1e-9)
            assert got.t_detected == pytest.approx(want.t_detected, abs=1e-9)
        else:
            assert got == want


def test_speech_in_white_noise_at_20_db_snr() -> None:
    clean, onset, end = question_signal()
    signal = add_noise(clean, snr_db=20)
    events = run(signal)
    assert kinds(events) == ["SpeechStarted", "UtteranceEnded"]
    utterance = utterances(events)[0]
    start = assert_is_slice_of(utterance, signal)
    assert start <= onset and start + len(utterance.samples) >= end


def test_max_length_ends_the_utterance_right_there() -> None:
    signal, _, _ = question_signal()
    events = run(signal, VadSettings(max_utterance_s=1.0))
    ended = [e for e in events if isinstance(e, UtteranceEnded)]
    assert ended[0].reason is EndReason.MAX_LENGTH
    assert ended[0].utterance.duration == pytest.approx(1.0)
    assert_is_slice_of(ended[0].utterance, signal)
    # Speech went on, so the VAD opens the next utterance straight after.
    assert len(ended) >= 2
    assert ended[1].utterance.t_start >= ended[0].utterance.t_start + 1.0 - 1e-9


def test_flush_ends_speech_in_progress() -> None:
    signal, onset, _ = question_signal()
    cut = onset + RATE  # one second into the question
    endpointer = Endpointer(VadSettings())
    events: list[EndpointEvent] = []
    for block in blocks(signal[:cut], 20, T0):
        events += endpointer.process(block)
    assert kinds(events) == ["SpeechStarted"]
    flushed = endpointer.flush(T0 + cut / RATE)
    assert kinds(flushed) == ["UtteranceEnded"]
    ended = flushed[0]
    assert isinstance(ended, UtteranceEnded) and ended.reason is EndReason.FLUSH
    assert endpointer.flush(T0 + cut / RATE) == []


def test_reset_forgets_an_open_utterance() -> None:
    signal, onset, _ = question_signal()
    endpointer = Endpointer(VadSettings())
    for block in blocks(signal[: onset + RATE // 2], 20, T0):
        endpointer.process(block)
    assert endpointer.in_utterance
    endpointer.reset()
    assert not endpointer.in_utterance
    assert endpointer.process(blocks(silence(1000), 1000, T0 + 10)[0]) == []
    assert endpointer.flush(T0 + 11) == []


# ------------------------------------------------------------------- noise


def test_short_burst_of_noise_is_dropped() -> None:
    signal = concat(silence(1000), noise(100, rms=8000, seed=1), silence(1000))
    events = run(signal)
    assert kinds(events) == ["SpeechStarted", "UtteranceDropped"]
    dropped = events[1]
    assert isinstance(dropped, UtteranceDropped)
    assert dropped.reason is DropReason.TOO_SHORT and dropped.speech_ms <= 100


def test_single_click_does_not_open() -> None:
    click = np.zeros(320, dtype=np.int16)
    click[100:110] = 30000
    # webrtcvad alone flags the click and its next three frames: enough to open.
    assert run(concat(silence(500), click, silence(500))) == []
    assert run(concat(noise(500, rms=30), click, noise(500, rms=30))) == []


def test_loud_steady_noise_does_not_open() -> None:
    # webrtcvad calls loud white noise speech throughout; the noise floor does not.
    assert run(noise(3000, rms=3000, seed=4)) == []


@pytest.mark.parametrize("snr_db", [10, 5])
def test_speech_in_loud_noise(snr_db: float) -> None:
    clean, onset, end = question_signal()
    signal = add_noise(clean, snr_db=snr_db)
    events = run(signal)
    assert kinds(events) == ["SpeechStarted", "UtteranceEnded"]
    utterance = utterances(events)[0]
    start = assert_is_slice_of(utterance, signal)
    assert start <= onset and start + len(utterance.samples) >= end - 0.2 * RATE


def test_silence_only_gives_nothing() -> None:
    assert run(silence(3000)) == []


def test_low_noise_only_gives_nothing() -> None:
    assert run(noise(3000, rms=30, seed=2)) == []


def test_empty_and_partial_blocks() -> None:
    endpointer = Endpointer(VadSettings())
    assert endpointer.process(AudioBlock(np.zeros(0, dtype=np.int16), T0)) == []
    assert endpointer.process(AudioBlock(np.zeros(100, dtype=np.int16), T0)) == []


# ------------------------------------------------------------------ manual


def feed(endpointer: Endpointer, samples: np.ndarray, t0: float) -> list[EndpointEvent]:
    events: list[EndpointEvent] = []
    for block in blocks(samples, 20, t0):
        events += endpointer.process(block)
    return events


def test_manual_includes_preroll_and_ignores_vad() -> None:
    speech = speech_16k(PART_ONE)
    lead = silence(1000)
    signal = concat(lead, speech, silence(2000), speech, silence(300))
    endpointer = Endpointer(VadSettings(), hands_free=False)
    assert feed(endpointer, lead, T0) == []
    press = T0 + 1.0
    endpointer.begin_manual(press)
    assert endpointer.manual and endpointer.in_utterance
    # A 2 s pause would end a hands-free utterance; here nothing happens until release.
    assert feed(endpointer, signal[len(lead) :], press) == []
    release = T0 + len(signal) / RATE
    ended = endpointer.end_manual(release)
    assert isinstance(ended, UtteranceEnded) and ended.reason is EndReason.MANUAL
    utterance = ended.utterance
    assert utterance.t_start == pytest.approx(press - 0.3)
    assert utterance.t_speech_end == release
    assert utterance.t_detected == release
    start = assert_is_slice_of(utterance, signal)
    # Nothing trimmed: everything up to the last whole frame is kept.
    assert len(signal) - 320 < start + len(utterance.samples) <= len(signal)
    assert utterance.speech_ms >= 400
    assert endpointer.end_manual(release) is None


def test_manual_with_no_speech_is_dropped() -> None:
    endpointer = Endpointer(VadSettings())
    feed(endpointer, silence(500), T0)
    endpointer.begin_manual(T0 + 0.5)
    feed(endpointer, silence(1000), T0 + 0.5)
    dropped = endpointer.end_manual(T0 + 1.5)
    assert isinstance(dropped, UtteranceDropped) and dropped.reason is DropReason.TOO_SHORT
    assert dropped.speech_ms < 200


def test_manual_before_any_audio() -> None:
    endpointer = Endpointer(VadSettings())
    endpointer.begin_manual(T0)
    speech = speech_16k(PART_ONE)
    feed(endpointer, speech, T0)
    ended = endpointer.end_manual(T0 + len(speech) / RATE)
    assert isinstance(ended, UtteranceEnded)
    assert ended.utterance.t_start == T0
    np.testing.assert_array_equal(ended.utterance.samples, speech[: len(ended.utterance.samples)])


def test_manual_is_capped_and_release_after_cap_is_none() -> None:
    endpointer = Endpointer(VadSettings(max_utterance_s=1.0))
    feed(endpointer, silence(500), T0)
    endpointer.begin_manual(T0 + 0.5)
    speech = concat(speech_16k(QUESTION), speech_16k(QUESTION))
    events = feed(endpointer, speech, T0 + 0.5)
    assert kinds(events) == ["UtteranceEnded"]  # the held button stops VAD re-opening
    ended = events[0]
    assert isinstance(ended, UtteranceEnded) and ended.reason is EndReason.MAX_LENGTH
    assert ended.utterance.duration == pytest.approx(1.0)
    assert endpointer.end_manual(T0 + 0.5 + len(speech) / RATE) is None


def test_manual_takes_over_a_vad_utterance() -> None:
    signal, onset, _ = question_signal()
    endpointer = Endpointer(VadSettings())
    mid = onset + RATE // 2
    assert kinds(feed(endpointer, signal[:mid], T0)) == ["SpeechStarted"]
    endpointer.begin_manual(T0 + mid / RATE)
    assert feed(endpointer, signal[mid:], T0 + mid / RATE) == []
    ended = endpointer.end_manual(T0 + len(signal) / RATE)
    assert isinstance(ended, UtteranceEnded)
    start = assert_is_slice_of(ended.utterance, signal)
    assert start < onset
    assert len(signal) - 320 < start + len(ended.utterance.samples) <= len(signal)


def test_hands_free_off_never_opens() -> None:
    signal, _, _ = question_signal()
    endpointer = Endpointer(VadSettings(), hands_free=False)
    assert feed(endpointer, signal, T0) == []


def test_bad_frame_length_rejected() -> None:
    with pytest.raises(ValueError):
        Endpointer(replace(VadSettings(), frame_ms=25))
