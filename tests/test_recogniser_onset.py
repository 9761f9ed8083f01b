"""The dev server's recogniser and a question whose first moments were damaged.

A question asked over the device's own voice reaches the upload with its first 100 to
250 ms ducked by the echo canceller (AEC3 suppresses double talk until the answer stops
and the echo has died away). A real recogniser still hears the question by its words;
the fingerprint recogniser must too, without taking a question cut off at its end for a
whole one, or one phrase for another.
"""

from __future__ import annotations

import numpy as np
import pytest
import soxr

from assistant.audio.espeak import synthesize
from assistant.devserver.recogniser import DEFAULT_PHRASES, FP_RATE, fingerprint, match

OTHER_VOICE = "en+m3"
"""The phrase book speaks "en"; a user's voice is someone else's."""
SHORT_QUESTIONS = ("What time is it?", "Tell me a joke.", "How far away is the Moon?")


@pytest.fixture(scope="module")
def phrases() -> dict:
    return {text: fingerprint(_speech(text, "en"), FP_RATE, trim=False) for text in DEFAULT_PHRASES}


def _speech(text: str, voice: str) -> np.ndarray:
    spoken = synthesize(text, voice=voice)
    audio = spoken.samples.astype(np.float32) / 32768
    return soxr.resample(audio, spoken.sample_rate, FP_RATE).astype(np.float32)


def _recording(speech: np.ndarray, seed: int = 3) -> np.ndarray:
    """Speech with 300 ms of room noise either side, as an upload holds it."""
    pad = np.zeros(int(0.3 * FP_RATE), dtype=np.float32)
    audio = np.concatenate([pad, speech, pad])
    return audio + np.random.default_rng(seed).normal(0, 3e-4, len(audio)).astype(np.float32)


def _ducked_onset(speech: np.ndarray, ms: int, depth_db: float = 50.0) -> np.ndarray:
    """The first `ms` after the voice starts attenuated by `depth_db`, easing back to
    full level (what AEC3 does to the start of double talk)."""
    start = int(np.flatnonzero(np.abs(speech) > 0.003)[0])
    length = ms * FP_RATE // 1000
    gain_db = np.linspace(-depth_db, 0.0, length, dtype=np.float32)
    out = speech.copy()
    out[start : start + length] *= 10 ** (gain_db / 20)
    return out


@pytest.mark.parametrize("ducked_ms", [120, 200, 250])
@pytest.mark.parametrize("question", SHORT_QUESTIONS)
def test_a_question_with_a_ducked_onset_is_heard_whole(
    phrases: dict, question: str, ducked_ms: int
) -> None:
    upload = _recording(_ducked_onset(_speech(question, OTHER_VOICE), ducked_ms))
    heard = match(fingerprint(upload, FP_RATE), phrases)
    assert heard.text == question, (heard, ducked_ms)


@pytest.mark.parametrize("question", SHORT_QUESTIONS)
def test_a_question_cut_off_at_its_end_stays_cut_off(phrases: dict, question: str) -> None:
    speech = _speech(question, OTHER_VOICE)
    voiced = np.flatnonzero(np.abs(speech) > 0.003)
    cut = speech[: int(voiced[0] + 0.7 * (voiced[-1] - voiced[0]))]
    heard = match(fingerprint(_recording(cut), FP_RATE), phrases)
    assert heard.text != question
    assert question.startswith(heard.text) or heard.phrase is None, heard


def test_a_ducked_onset_does_not_make_an_unknown_sentence_known(phrases: dict) -> None:
    for sentence in ("Open the garage door.", "Where are my keys?"):
        upload = _recording(_ducked_onset(_speech(sentence, OTHER_VOICE), 200))
        heard = match(fingerprint(upload, FP_RATE), phrases)
        assert heard.phrase is None, (sentence, heard)
