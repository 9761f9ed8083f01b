"""The echo canceller itself: ERLE, the user's voice in double talk, CPU, memory, latency.

    .venv/bin/python -m bench.aec [--json PATH]

On arrays, in one run, side by side with the half-duplex default: espeak-ng's answer
(three sentences) through a synthetic room (a delay of 20, 60 or 120 ms, a gain of 0 or
+6 dB against the user's voice, one 50 ms reflection at -10 dB), the user's question in
another voice 4 s in. Both go through the capture path as the loop runs it: 20 ms blocks,
the reference handed over period by period (`FarEnd`), `EchoCanceller` (AEC3 and the
echo-only silencing); the half-duplex gate (`SelfSoundGate`, 200 ms tail) beside it.

* ERLE: echo power in, over echo power out, with no one talking, after 1 s.
* Double talk: the user's voice while the answer plays: level kept (dB) and correlation
  with what they said (the first 250 ms, which AEC3 ducks hardest, and the rest).
* CPU per second of audio (process time; the reference's resampling included), and
  resident memory added by the library and one canceller, in a fresh child process.
* Added capture latency: AEC3's own processing lag.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soxr

from assistant.audio.echo_canceller import EchoCanceller, processing_lag
from assistant.audio.espeak import synthesize
from assistant.audio.far_end import FarEnd
from assistant.audio.self_sound import PlaybackTimeline, SelfSoundGate
from assistant.ports import AudioBlock

RATE = 16_000
BLOCK = 320
ANSWER = (
    "This is the local development server answering. It speaks in several sentences so "
    "that streaming can be heard. The first sentence is already playing."
)
USER = "What time is it? Tell me a joke."
USER_AT_S = 4.0
T0 = 1000.0


def speech(text: str, voice: str) -> np.ndarray:
    spoken = synthesize(text, voice=voice)
    return soxr.resample(spoken.samples, spoken.sample_rate, RATE).astype(np.float64)


def room(far: np.ndarray, delay_ms: int, gain_db: float) -> np.ndarray:
    d = round(delay_ms * RATE / 1000)
    echo = np.concatenate([np.zeros(d), far])[: len(far)]
    echo = echo + 0.3 * np.concatenate([np.zeros(800), echo])[: len(echo)]
    return echo * 10 ** (gain_db / 20)


def power_db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.asarray(x, np.float64) ** 2) + 1e-9))


def cancel(near: np.ndarray, far: np.ndarray) -> tuple[np.ndarray, float]:
    """`near` through the canceller while `far` plays; (output on near's timeline, CPU s)."""
    far_end = FarEnd()
    canceller = EchoCanceller(far_end)
    out = []
    started = time.process_time()
    for i in range(0, len(near) - BLOCK + 1, BLOCK):
        far_end.played(far[i : i + BLOCK].astype(np.int16), RATE, T0 + i / RATE)
        out.append(canceller(AudioBlock(near[i : i + BLOCK].astype(np.int16), T0 + i / RATE)))
    cpu = time.process_time() - started
    lag = round(canceller.lag_s * RATE)
    return np.concatenate([b.samples for b in out])[lag:], cpu


def gate(near: np.ndarray, far_len: int) -> np.ndarray:
    """The half-duplex default on the same audio: silence while the answer plays, + tail."""
    timeline = PlaybackTimeline()
    timeline.played(far_len / RATE, now=T0)
    gated = SelfSoundGate(timeline, 0.2)
    return np.concatenate(
        [
            gated(AudioBlock(near[i : i + BLOCK].astype(np.int16), T0 + i / RATE)).samples
            for i in range(0, len(near) - BLOCK + 1, BLOCK)
        ]
    )


@dataclass
class Room:
    delay_ms: int
    gain_db: float
    erle_db: float
    user_kept_db: float
    """Level of the user's voice after the canceller, against what they said (0 = intact)."""
    corr_onset: float
    corr_rest: float
    half_duplex_user_kept_db: float
    """The same for the half-duplex gate: what of the user's voice it lets through."""
    cpu_per_s: float


@dataclass(frozen=True)
class Scene:
    """One room's signals: the answer playing, the user's question USER_AT_S in, the echo."""

    answer_len: int
    far: np.ndarray
    user: np.ndarray
    echo: np.ndarray
    at: int
    """Where the user's voice starts."""
    said: int
    """How long it is (samples)."""


def scene(delay_ms: int, gain_db: float, answer: np.ndarray, user_voice: np.ndarray) -> Scene:
    n = len(answer) + RATE
    far = np.concatenate([answer, np.zeros(n - len(answer))])
    user = np.zeros(n)
    at = int(USER_AT_S * RATE)
    user[at : at + len(user_voice)] = user_voice[: n - at]
    return Scene(len(answer), far, user, room(far, delay_ms, gain_db), at, len(user_voice))


@dataclass(frozen=True)
class DoubleTalk:
    """A canceller's output scored against the scene: echo removed, the user's voice kept."""

    erle_db: float
    user_kept_db: float
    corr_onset: float
    corr_rest: float
    span: slice
    """The user's voice (within the output)."""
    seconds: float
    """Length of the output."""


def double_talk(s: Scene, alone: np.ndarray, both: np.ndarray) -> DoubleTalk:
    """`alone`: the output with no one talking; `both`: with the user over the answer."""
    m = len(alone)
    span = slice(s.at, min(m, s.at + s.said))
    onset = slice(s.at, s.at + RATE // 4)
    rest = slice(s.at + RATE // 4, span.stop)
    return DoubleTalk(
        round(power_db(s.echo[RATE:m]) - power_db(alone[RATE:m]), 1),
        round(power_db(both[span]) - power_db(s.user[span]), 1),
        round(float(np.corrcoef(both[onset], s.user[onset])[0, 1]), 2),
        round(float(np.corrcoef(both[rest], s.user[rest])[0, 1]), 2),
        span,
        m / RATE,
    )


def measure(delay_ms: int, gain_db: float) -> Room:
    s = scene(delay_ms, gain_db, speech(ANSWER, "en"), speech(USER, "en+m3"))
    alone, cpu = cancel(np.clip(s.echo, -32768, 32767), s.far)
    both, _ = cancel(np.clip(s.echo + s.user, -32768, 32767), s.far)
    scored = double_talk(s, alone, both)
    half = gate(np.clip(s.echo + s.user, -32768, 32767), s.answer_len)
    span = scored.span
    return Room(
        delay_ms,
        gain_db,
        scored.erle_db,
        scored.user_kept_db,
        scored.corr_onset,
        scored.corr_rest,
        round(power_db(half[span]) - power_db(s.user[span]), 1),
        cpu / scored.seconds,
    )


_MEMORY_PROBE = """
import json, os
import numpy as np
from bench.idle import memory_mb
from assistant.ports import AudioBlock
from assistant.audio.far_end import FarEnd
before = memory_mb(os.getpid())["VmRSS"]
from assistant.audio.echo_canceller import EchoCanceller
far_end = FarEnd()
canceller = EchoCanceller(far_end)
for i in range(250):
    far_end.played(np.zeros(320, np.int16), 16000, i * 0.02)
    canceller(AudioBlock(np.zeros(320, np.int16), i * 0.02))
print(json.dumps({"added_mb": memory_mb(os.getpid())["VmRSS"] - before}))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    rooms = [measure(d, g) for d in (20, 60, 120) for g in (0.0, 6.0)]
    probe = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE], capture_output=True, text=True, check=True
    )
    memory = json.loads(probe.stdout)
    lag_ms = processing_lag() / RATE * 1000
    print(
        "| room | ERLE after 1 s | user's voice kept (AEC3) | correlation: first 250 ms / rest "
        "| user's voice kept (half-duplex) | CPU per s of audio |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rooms:
        print(
            f"| {r.delay_ms} ms, {r.gain_db:+.0f} dB | {r.erle_db:.1f} dB "
            f"| {r.user_kept_db:+.1f} dB | {r.corr_onset:.2f} / {r.corr_rest:.2f} "
            f"| {r.half_duplex_user_kept_db:+.1f} dB | {r.cpu_per_s * 100:.2f} % |"
        )
    print(f"memory added: {memory['added_mb']:.1f} MB; added capture latency: {lag_ms:.0f} ms")
    if args.json:
        report = {"rooms": [asdict(r) for r in rooms], "memory": memory, "lag_ms": lag_ms}
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
