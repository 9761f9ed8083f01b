"""The wake word detector on real espeak-ng speech: heard when said, only then, once."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from audio_samples import blocks, concat, noise, silence, speech_16k

from assistant.wake_word import (
    WakeWordDetector,
    WakeWordError,
    builtin_words,
    manifest_problem,
)

WAKE = "Okay Nabu"
QUESTION = "What is the weather like on Mars?"


def _heard(detector: WakeWordDetector, samples: np.ndarray) -> list[tuple[str, float]]:
    """(word, time) of every detection, feeding 20 ms blocks timed from 1000 s."""
    found = []
    for block in blocks(samples, 20):
        if (heard := detector.process(block)) is not None:
            found.append((heard.word, heard.t))
    return found


def test_the_package_carries_its_models() -> None:
    assert {"okay_nabu", "hey_jarvis", "hey_mycroft", "alexa"} <= set(builtin_words())


@pytest.mark.parametrize(("voice", "wpm"), [("en", 150), ("en-us", 175), ("en+m3", 130)])
def test_the_word_is_heard_near_its_end(voice: str, wpm: int) -> None:
    word = speech_16k(WAKE, voice, wpm)
    detector = WakeWordDetector(["okay_nabu"])
    lead = silence(500)
    [(name, t)] = _heard(detector, concat(lead, word, silence(1000)))
    assert name == "okay_nabu"
    word_end = 1000.0 + (len(lead) + len(word)) / 16_000
    # espeak-ng's output ends in ~0.3 s of its own silence; the word is heard within it.
    assert word_end - 0.8 < t < word_end + 0.3


def test_ordinary_speech_and_noise_are_not_the_word() -> None:
    detector = WakeWordDetector(["okay_nabu", "alexa", "hey_mycroft"])
    talk = concat(
        speech_16k(QUESTION),
        silence(300),
        speech_16k("Okay, now boo the referee, and call Alex tomorrow, my craft is ready."),
        noise(2000, 300),
    )
    assert _heard(detector, talk) == []


def test_several_words_at_once_and_each_is_named() -> None:
    detector = WakeWordDetector(["okay_nabu", "alexa"])
    assert detector.phrases == ("Okay Nabu", "Alexa")
    heard = _heard(
        detector,
        concat(speech_16k("Alexa", "en", 150), silence(3000), speech_16k(WAKE, "en", 150)),
    )
    assert [word for word, _ in heard] == ["alexa", "okay_nabu"]


def test_refractory_time_keeps_a_repeat_quiet() -> None:
    said_twice = concat(speech_16k(WAKE, "en", 150), silence(200), speech_16k(WAKE, "en", 150))
    assert len(_heard(WakeWordDetector(["okay_nabu"], refractory_s=5.0), said_twice)) == 1
    assert len(_heard(WakeWordDetector(["okay_nabu"], refractory_s=0.5), said_twice)) == 2


def test_a_strict_cutoff_hears_less() -> None:
    word = concat(speech_16k(WAKE, "en", 150), silence(500))
    assert _heard(WakeWordDetector(["okay_nabu"], probability_cutoff=0.5), word)
    # No average of probabilities can exceed 1.
    assert not _heard(WakeWordDetector(["okay_nabu"], probability_cutoff=0.9999), word)


def test_reset_forgets_half_a_word() -> None:
    word = speech_16k(WAKE, "en", 150)
    detector = WakeWordDetector(["okay_nabu"])
    half = len(word) // 2
    assert _heard(detector, word[:half]) == []
    detector.reset()
    assert _heard(detector, concat(word[half:], silence(500))) == []
    assert len(_heard(detector, concat(word, silence(500)))) == 1


def test_a_custom_model_file_is_listened_for(tmp_path: Path) -> None:
    import pymicro_wakeword

    models = Path(pymicro_wakeword.__file__).parent / "models"
    shutil.copy(models / "hey_mycroft.tflite", tmp_path / "my_word.tflite")
    manifest = json.loads((models / "hey_mycroft.json").read_text())
    manifest.update(model="my_word.tflite", wake_word="Hey Mycroft")
    path = tmp_path / "my_word.json"
    path.write_text(json.dumps(manifest))
    assert manifest_problem(path) is None
    detector = WakeWordDetector([], [path])
    heard = _heard(detector, concat(speech_16k("Hey Mycroft", "en", 150), silence(800)))
    assert [word for word, _ in heard] == ["my_word"]


def test_unusable_manifests_say_why(tmp_path: Path) -> None:
    path = tmp_path / "w.json"
    assert "cannot be read" in str(manifest_problem(path))
    path.write_text("{not json")
    assert "not JSON" in str(manifest_problem(path))
    path.write_text(json.dumps({"type": "openwakeword"}))
    assert "microWakeWord" in str(manifest_problem(path))
    path.write_text(
        json.dumps({"type": "micro", "wake_word": "X", "model": "x.tflite", "micro": {}})
    )
    assert "probability_cutoff" in str(manifest_problem(path))
    path.write_text(
        json.dumps(
            {
                "type": "micro",
                "wake_word": "X",
                "model": "x.tflite",
                "micro": {"probability_cutoff": 0.9},
            }
        )
    )
    assert "not beside it" in str(manifest_problem(path))


def test_nothing_to_listen_for_is_an_error() -> None:
    with pytest.raises(WakeWordError):
        WakeWordDetector([], [])
