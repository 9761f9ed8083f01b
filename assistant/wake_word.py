"""Hearing a wake word on the device, with microWakeWord models (pymicro-wakeword).

The models ("okay nabu", "hey jarvis", "hey mycroft", "alexa") and the TensorFlow Lite
runtime that runs them ship inside the pymicro-wakeword wheel (x86_64 and aarch64):
nothing is downloaded, and no audio leaves the device to find the word. A custom model
is a microWakeWord manifest (`<name>.json`, naming its `.tflite` beside it), the format
the microWakeWord trainer and ESPHome's model collection use.

The library is imported only when a detector is built, so nothing else pays for it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from assistant.ports import CAPTURE_RATE, AudioBlock

if TYPE_CHECKING:
    from pymicro_wakeword import MicroWakeWord, MicroWakeWordFeatures

MODEL_PACKAGE = "pymicro_wakeword"
FEATURE_HOP_S = 0.010
"""Each feature vector covers 10 ms of audio more than the one before it."""


class WakeWordError(ValueError):
    """A wake word that cannot be listened for: unknown name, unreadable model."""


def builtin_words() -> tuple[str, ...]:
    """The wake words the installed package carries (its models directory), e.g.
    `okay_nabu`; empty if the package is missing."""
    try:
        models = resources.files(MODEL_PACKAGE) / "models"
        names = [entry.name for entry in models.iterdir()]
    except (ModuleNotFoundError, FileNotFoundError):
        return ()
    return tuple(sorted(name[: -len(".json")] for name in names if name.endswith(".json")))


def manifest_problem(path: Path) -> str | None:
    """Why `path` is not a usable microWakeWord manifest, or None."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        return f"cannot be read: {exc.strerror}"
    except ValueError as exc:
        return f"is not JSON: {exc}"
    if not isinstance(manifest, dict) or manifest.get("type") != "micro":
        return 'is not a microWakeWord manifest (it needs "type": "micro")'
    micro = manifest.get("micro")
    if not isinstance(micro, dict) or not isinstance(micro.get("probability_cutoff"), float):
        return 'has no "micro": {"probability_cutoff": ...}'
    if not isinstance(manifest.get("wake_word"), str) or not isinstance(manifest.get("model"), str):
        return 'needs "wake_word" and "model" (the .tflite file beside it)'
    if not (path.parent / manifest["model"]).is_file():
        return f"names {manifest['model']}, which is not beside it"
    return None


@dataclass(frozen=True, slots=True)
class WakeWordHeard:
    word: str
    """The model's id: `okay_nabu`, or a custom manifest's model name."""
    phrase: str
    """What is said: "Okay Nabu"."""
    probability: float
    """The averaged probability that crossed the cutoff."""
    t: float
    """time.monotonic() of the end of the audio that completed the word."""


class _Word:
    """One model listening, with its own cutoff."""

    def __init__(self, model: MicroWakeWord, cutoff: float) -> None:
        self.model = model
        self.cutoff = cutoff or model.probability_cutoff

    def heard(self, features: object) -> float | None:
        probability = self.model.process_streaming_prob(features)
        return probability if probability is not None and probability > self.cutoff else None


class WakeWordDetector:
    """Feeds captured blocks to every configured model; says when one hears its word."""

    def __init__(
        self,
        words: Sequence[str] = ("okay_nabu",),
        model_files: Sequence[Path] = (),
        *,
        probability_cutoff: float = 0.0,
        refractory_s: float = 2.0,
    ) -> None:
        """`probability_cutoff` 0 keeps each model's own tuned cutoff; `refractory_s`: after
        a detection no other for this long (a word is heard over several frames)."""
        from pymicro_wakeword import MicroWakeWord, MicroWakeWordFeatures

        self._features_class: type[MicroWakeWordFeatures] = MicroWakeWordFeatures
        models_dir = Path(str(resources.files(MODEL_PACKAGE) / "models"))
        manifests = [models_dir / f"{word}.json" for word in words] + list(model_files)
        if not manifests:
            raise WakeWordError("no wake word to listen for")
        self._words = [
            _Word(MicroWakeWord.from_config(path), probability_cutoff) for path in manifests
        ]
        self._refractory_s = refractory_s
        self._features = MicroWakeWordFeatures()
        self._quiet_until = -math.inf

    @property
    def phrases(self) -> tuple[str, ...]:
        """What may be said, e.g. ("Okay Nabu",)."""
        return tuple(word.model.wake_word for word in self._words)

    def process(self, block: AudioBlock) -> WakeWordHeard | None:
        """The word heard in this block (the first model to hear one), or None."""
        end = block.t_start + len(block.samples) / CAPTURE_RATE
        heard: WakeWordHeard | None = None
        for features in self._features.process_streaming(block.detected.tobytes()):
            for word in self._words:
                probability = word.heard(features)
                if probability is not None and heard is None and end >= self._quiet_until:
                    heard = WakeWordHeard(word.model.id, word.model.wake_word, probability, end)
        if heard is not None:
            self._quiet_until = end + self._refractory_s
        return heard

    def reset(self) -> None:
        """Forget the audio heard so far (after a turn, or audio that was not listened to):
        a word is only heard whole, from audio that follows, and at once."""
        self._quiet_until = -math.inf
        self._features.reset()
        for word in self._words:
            word.model.reset()

    def close(self) -> None:
        for word in self._words:
            word.model.close()
