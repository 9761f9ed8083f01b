"""The wake word detector: detection rate, false accepts per hour, CPU, memory, latency.

    .venv/bin/python -m bench.wake_word [--word okay_nabu] [--hours 1.0] [--json PATH]

Everything runs on the same machine in one run, the detector side by side with what
hands-free listening does on the same audio (the endpointer), so the ratios hold on a
shared, noisy machine:

1. **Detection**: the word rendered by espeak-ng in `len(VOICES) x len(SPEEDS) x
   len(PITCHES)` ways, each in silence and under pink noise at -45 and -35 dBFS, with
   half a second before it and a second after. Detected or not, and the time from the
   end of the word's voiced part to the detection (which is when the loop opens its
   listening window: the same block).
2. **False accepts**: `--hours` of audio that never holds the word: espeak-ng sentences
   (the dev server's answers and other talk, several voices and speeds, some words close
   to the wake words) with pauses, over the -45 dBFS room noise of `bench.idle` (fan,
   knocks, typing, a clink), fed in 20 ms blocks as the loop does. Detections per hour;
   beside it, how many utterances hands-free listening would have opened (and uploaded)
   in the same audio.
3. **CPU**: process time of the detector per second of audio while waiting, and of the
   endpointer on the same audio (its ratio to the endpointer).
4. **Memory**: VmRSS added by importing the library and building the detector, read in a
   fresh child process so nothing else of the run is counted.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soxr

from assistant.audio.endpointer import Endpointer, SpeechStarted
from assistant.audio.espeak import synthesize
from assistant.devserver.recogniser import DEFAULT_PHRASES
from assistant.devserver.replies import reply_for
from assistant.ports import CAPTURE_RATE, AudioBlock
from assistant.settings import VadSettings
from assistant.wake_word import WakeWordDetector
from bench.idle import background_noise, pink_noise

RATE = CAPTURE_RATE
BLOCK = RATE * 20 // 1000
"""20 ms blocks, as the microphone delivers them."""
VOICES = ("en", "en-us", "en+m3", "en-gb-x-rp", "en+f2")
SPEEDS = (130, 160, 190)
PITCHES = (35, 50, 70)
NOISE_DBFS = (None, -45.0, -35.0)
"""No noise, a quiet room, a louder one (the word itself peaks near -6 dBFS)."""
PHRASE_OF = {
    "okay_nabu": "Okay Nabu",
    "alexa": "Alexa",
    "hey_mycroft": "Hey Mycroft",
    "hey_jarvis": "Hey Jarvis",
}
OTHER_TALK = (
    *DEFAULT_PHRASES,
    "Okay, now tell me about the news.",
    "Can you book a table for two at eight?",
    "The nabob of the office called about the budget.",
    "Hey, my craft project is almost done.",
    "Alex said the shipment is late again.",
    "Jarvis Cocker played at the festival last summer.",
    "I was not talking to you, I was talking to the dog.",
    "Turn it down a little, the television is too loud.",
)
VOICED = 300
"""|sample| above this is the word's voiced part, for its end."""


def speech(text: str, voice: str, wpm: int, pitch: int) -> np.ndarray:
    spoken = synthesize(text, voice=voice, words_per_minute=wpm, pitch=pitch)
    return soxr.resample(spoken.samples, spoken.sample_rate, RATE).astype(np.int16)


def mix(signal: np.ndarray, noise_dbfs: float | None, seed: int) -> np.ndarray:
    if noise_dbfs is None:
        return signal
    noise = pink_noise(len(signal) / RATE, noise_dbfs, np.random.default_rng(seed))
    return np.clip(signal + noise, -32768, 32767).astype(np.int16)


def feed(detector: WakeWordDetector, samples: np.ndarray, t0: float = 0.0) -> list[float]:
    """Detection times (seconds from t0) over `samples`, in 20 ms blocks."""
    found = []
    for i in range(0, len(samples) - BLOCK + 1, BLOCK):
        heard = detector.process(AudioBlock(samples[i : i + BLOCK], t0 + i / RATE))
        if heard is not None:
            found.append(heard.t - t0)
    return found


@dataclass
class Detection:
    renderings: int = 0
    detected: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    """End of the word's voiced part to its detection."""
    by_noise: dict[str, list[int]] = field(default_factory=dict)
    """Noise level -> [detected, renderings]."""
    by_voice: dict[str, list[int]] = field(default_factory=dict)
    """espeak-ng voice -> [detected, renderings]."""
    missed: list[str] = field(default_factory=list)


def detection(word: str) -> Detection:
    detector = WakeWordDetector([word])
    result = Detection()
    lead = np.zeros(RATE // 2, np.int16)
    tail = np.zeros(RATE, np.int16)
    for n, (voice, wpm, pitch) in enumerate(itertools.product(VOICES, SPEEDS, PITCHES)):
        said = speech(PHRASE_OF[word], voice, wpm, pitch)
        loud = np.flatnonzero(np.abs(said) > VOICED)
        word_end = (len(lead) + int(loud[-1]) + 1) / RATE
        for noise_dbfs in NOISE_DBFS:
            detector.reset()
            found = feed(detector, mix(np.concatenate([lead, said, tail]), noise_dbfs, n))
            label = "none" if noise_dbfs is None else f"{noise_dbfs:.0f} dBFS"
            counts = result.by_noise.setdefault(label, [0, 0])
            voiced = result.by_voice.setdefault(voice, [0, 0])
            counts[1] += 1
            voiced[1] += 1
            result.renderings += 1
            if found:
                counts[0] += 1
                voiced[0] += 1
                result.detected += 1
                result.latencies_ms.append((found[0] - word_end) * 1000)
            else:
                result.missed.append(f"{voice} {wpm} wpm pitch {pitch}, noise {label}")
    return result


def non_wake_audio(hours: float) -> np.ndarray:
    """`hours` of talk with pauses over room noise, none of it the wake word."""
    rng = np.random.default_rng(11)
    texts = [*OTHER_TALK, *(reply_for(q) for q in DEFAULT_PHRASES)]
    clips = [
        speech(text, voice, wpm, pitch)
        for text, voice, wpm, pitch in zip(
            texts * len(VOICES),
            itertools.cycle(VOICES),
            itertools.cycle(SPEEDS),
            itertools.cycle(PITCHES),
            strict=False,
        )
    ]
    total = round(hours * 3600 * RATE)
    out = np.zeros(total, np.float64)
    at = 0
    while at < total:
        clip = clips[int(rng.integers(len(clips)))] * rng.uniform(0.3, 1.0)
        end = min(total, at + len(clip))
        out[at:end] += clip[: end - at]
        at = end + int(rng.uniform(0.3, 4.0) * RATE)
    # The room's noise, one 60 s stretch repeated (making it costs more than using it).
    room = background_noise(60.0).astype(np.float64)
    out += np.resize(room, total)
    return np.clip(out, -32768, 32767).astype(np.int16)


@dataclass
class Listening:
    hours: float
    false_accepts: int
    false_accepts_per_hour: float
    hands_free_utterances: int
    """Utterances hands-free listening opened (each would have been uploaded)."""
    detector_cpu_per_s: float
    endpointer_cpu_per_s: float


def listening(word: str, hours: float) -> Listening:
    audio = non_wake_audio(hours)
    seconds = len(audio) / RATE
    detector = WakeWordDetector([word])
    started = time.process_time()
    accepts = feed(detector, audio)
    detector_cpu = time.process_time() - started
    endpointer = Endpointer(VadSettings(), hands_free=True)
    utterances = 0
    started = time.process_time()
    for i in range(0, len(audio) - BLOCK + 1, BLOCK):
        events = endpointer.process(AudioBlock(audio[i : i + BLOCK], i / RATE))
        utterances += sum(isinstance(e, SpeechStarted) for e in events)
    endpointer_cpu = time.process_time() - started
    return Listening(
        hours=round(seconds / 3600, 3),
        false_accepts=len(accepts),
        false_accepts_per_hour=round(len(accepts) / (seconds / 3600), 2),
        hands_free_utterances=utterances,
        detector_cpu_per_s=detector_cpu / seconds,
        endpointer_cpu_per_s=endpointer_cpu / seconds,
    )


_MEMORY_PROBE = """
import json, os, sys
from bench.idle import memory_mb
before = memory_mb(os.getpid())["VmRSS"]
import numpy as np
from assistant.ports import AudioBlock
with_numpy = memory_mb(os.getpid())["VmRSS"]
from assistant.wake_word import WakeWordDetector
d = WakeWordDetector([sys.argv[1]])
for i in range(250):
    d.process(AudioBlock(np.zeros(320, np.int16), i * 0.02))
after = memory_mb(os.getpid())["VmRSS"]
print(json.dumps({"added_mb": after - with_numpy, "process_mb": after}))
"""


def memory(word: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE, word], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--word", default="okay_nabu", choices=sorted(PHRASE_OF))
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    found = detection(args.word)
    heard = listening(args.word, args.hours)
    mem = memory(args.word)
    latencies = sorted(found.latencies_ms)
    report = {
        "word": args.word,
        "detection": asdict(found),
        "listening": asdict(heard),
        "memory": mem,
    }
    print(f"wake word {args.word}: detected {found.detected}/{found.renderings}")
    for label, (hit, total) in found.by_noise.items():
        print(f"  noise {label}: {hit}/{total}")
    if latencies:
        p50 = statistics.median(latencies)
        p95 = latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))]
        print(f"  end of word -> listening: p50 {p50:.0f} ms, p95 {p95:.0f} ms")
    for voice, (hit, total) in found.by_voice.items():
        print(f"  voice {voice}: {hit}/{total}")
    print(
        f"false accepts: {heard.false_accepts} in {heard.hours} h "
        f"({heard.false_accepts_per_hour}/h); hands-free would have opened "
        f"{heard.hands_free_utterances} utterances in the same audio"
    )
    print(
        f"CPU per s of audio: detector {heard.detector_cpu_per_s * 100:.2f} % of a core, "
        f"endpointer {heard.endpointer_cpu_per_s * 100:.2f} % "
        f"(ratio {heard.detector_cpu_per_s / heard.endpointer_cpu_per_s:.2f})"
    )
    print(f"memory added: {mem['added_mb']:.1f} MB (process {mem['process_mb']:.1f} MB)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
