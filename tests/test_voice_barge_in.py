"""Speech over an answer, on arrays through the real endpointer and a WAV-file sink: what
pauses the answer, what ends it, and what of it is the next question."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from audio_samples import blocks, concat, silence, speech_16k, voiced_span

from assistant.audio.endpointer import Endpointer, UtteranceEnded
from assistant.audio.output_sink import OutputSink
from assistant.audio.self_sound import PlaybackTimeline
from assistant.events import AnswerPaused, AnswerResumed, Event
from assistant.settings import VadSettings
from assistant.voice_barge_in import ECHO_SETTLE_S, VoiceBargeIn
from assistant.volume import Volume
from hardware.wav_devices import WavFileSink

RATE = 16_000
T0 = 2000.0
QUESTION = "What is the weather going to be like in Paris tomorrow?"


def _watch(tmp_path: Path, signal: np.ndarray) -> tuple[float | None, list[Event], list]:
    """Feed `signal` (what the canceller left while an answer plays) block by block;
    returns the onset that ended the answer (or None), the events, and the utterances."""
    inner = WavFileSink(tmp_path / "out.wav", sample_rate=RATE, period_ms=20)
    volume = Volume(path=None, default_db=0.0, step_db=3.0, min_db=-9.0, max_db=6.0)
    sink = OutputSink(inner, volume, PlaybackTimeline())
    endpointer = Endpointer(VadSettings())
    published: list[Event] = []
    watch = VoiceBargeIn(sink, endpointer, published.append, min_speech_ms=300, resume_after_s=2.0)
    ended, ends = None, []
    for block in blocks(signal, 20, T0):
        found = endpointer.process(block)
        ends += [e.utterance for e in found if isinstance(e, UtteranceEnded)]
        if ended is None:
            ended = watch.heard(found, block.t_start + block.duration)
    ends += [e.utterance for e in endpointer.flush(T0 + len(signal) / RATE)]
    return ended, published, ends


def test_a_moment_of_echo_pauses_the_answer_and_it_plays_on(tmp_path: Path) -> None:
    question = speech_16k(QUESTION)
    onset, _ = voiced_span(question)
    leak = question[onset : onset + int(0.2 * RATE)]
    ended, published, _ = _watch(tmp_path, concat(silence(500), leak, silence(2500)))
    assert ended is None
    assert [type(e) for e in published] == [AnswerPaused, AnswerResumed]
    assert isinstance(published[1], AnswerResumed) and published[1].reason == "too_short"


def test_the_question_after_a_moment_of_echo_is_uploaded_without_it(tmp_path: Path) -> None:
    """The canceller let 200 ms of the answer through (it paused the answer); the user
    asks 400 ms later, inside the hangover: the question is uploaded from its own pre-roll,
    not from the leak."""
    question = speech_16k(QUESTION)
    onset, _ = voiced_span(question)
    leak = question[onset : onset + int(0.2 * RATE)]
    signal = concat(silence(500), leak, silence(400), question, silence(1500))
    ended, published, ends = _watch(tmp_path, signal)
    assert ended is not None  # the answer was ended by the question
    assert isinstance(published[0], AnswerPaused)
    (utterance,) = ends
    leak_end = T0 + (len(silence(500)) + len(leak)) / RATE
    question_at = T0 + (len(silence(500)) + len(leak) + len(silence(400)) + onset) / RATE
    assert leak_end <= utterance.t_start <= question_at - 0.15
    assert utterance.t_start < published[0].t_speech + ECHO_SETTLE_S + 1.0


def test_speech_from_its_first_word_is_kept_whole(tmp_path: Path) -> None:
    question = speech_16k(QUESTION)
    onset, _ = voiced_span(question)
    signal = concat(silence(500), question, silence(1500))
    ended, _, ends = _watch(tmp_path, signal)
    assert ended is not None
    (utterance,) = ends
    assert utterance.t_start <= T0 + (len(silence(500)) + onset) / RATE - 0.15
