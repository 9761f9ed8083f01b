"""What every latency benchmark client shares: the question, the service profile, the arithmetic.

The three systems measured by `bench.latency` hear the same question WAV, talk to the same dev
server with the same fixed service latencies, and are scored with the same definitions, all of
which live here:

* speech end: where our endpointer (webrtcvad, default `VadSettings`) puts the end of the last
  voiced frame of the question, as an offset into the WAV. Every client replays the WAV in real
  time from a start time t0, so speech end is t0 + that offset for all of them.
* first audio: from speech end to the moment the first decoded sample is handed to the audio
  output (our speaker sink's `play`; in pipecat, the first `TTSAudioRawFrame` reaching the place
  of its output transport).
* configured service time: `configured_service_ms`, what the dev server is told to spend.
* own overhead: first audio minus the VAD hangover minus the configured service time.

The pipecat client runs in pipecat's own virtual environment and imports none of this: it
reports raw times on the WAV's timeline, and `bench.latency` scores them with these definitions.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soxr

from assistant.audio.endpointer import Endpointer, UtteranceEnded
from assistant.audio.espeak import synthesize
from assistant.audio.wav import encode_wav
from assistant.devserver.replies import reply_for, tokens
from assistant.ports import CAPTURE_RATE, AudioBlock
from assistant.settings import VadSettings

QUESTION = "What is the weather like on Mars?"
"""One of the dev server's known phrases, so every system gets the same transcript and answer."""
LEAD_MS = 500
"""Silence before the question: the VAD's warm-up and noise floor settle on it."""
TAIL_MS = 4000
"""Silence after the question: the hangover, the services and the first audio all fit in it,
so no client sees its microphone end before its first answer sample."""
BLOCK_MS = 20
"""Microphone block: what a 20 ms device period delivers, for every client alike."""
_SENTENCE_END = re.compile(r"[.!?…][\"')\]]*$")


@dataclass(frozen=True, slots=True)
class LatencyProfile:
    """Fixed service latencies given to the dev server for a whole run."""

    stt_latency_ms: int = 300
    """From the end of the upload to the transcript."""
    first_token_ms: int = 400
    """From the completion request to its first token."""
    tokens_per_second: float = 40.0
    """Pace of the later tokens (0 = all at once)."""
    tts_first_byte_ms: int = 200
    """From a text-to-speech request to the first audio byte."""
    tts_speed: float = 2.0
    """The rest of a speech body comes at this multiple of real time (0 = at once)."""

    def devserver_args(self) -> list[str]:
        """The `voice-assistant devserver` flags for this profile."""
        return [
            f"--stt-latency-ms={self.stt_latency_ms}",
            f"--first-token-ms={self.first_token_ms}",
            f"--tokens-per-second={self.tokens_per_second}",
            f"--tts-first-byte-ms={self.tts_first_byte_ms}",
            f"--tts-speed={self.tts_speed}",
        ]

    def describe(self) -> str:
        rate = f"{self.tokens_per_second:g} tokens/s" if self.tokens_per_second else "at once"
        speed = f"{self.tts_speed:g}x real time" if self.tts_speed else "at once"
        return (
            f"STT {self.stt_latency_ms} ms, first token {self.first_token_ms} ms then {rate}, "
            f"TTS first byte {self.tts_first_byte_ms} ms then {speed}"
        )


TINY_PROFILE = LatencyProfile(
    stt_latency_ms=20, first_token_ms=20, tokens_per_second=200, tts_first_byte_ms=20, tts_speed=0
)
"""For smoke tests: the pipeline runs end to end without waiting on pretend services."""


def boundary_token_index(answer: str) -> int:
    """Index of the completion token that shows the first sentence is complete.

    The dev server streams word-sized tokens, each with its leading space, so the token that
    carries a sentence's closing punctuation ("Mars?") does not yet tell a client that the
    sentence ended ("3." may go on as "3.14"): the next token's leading space does. Any
    streaming client (ours, pipecat's sentence aggregator) needs that token, so it is counted
    as service time. For an answer of one sentence the end of the stream shows it instead.
    """
    parts = tokens(answer)
    for index, token in enumerate(parts):
        if _SENTENCE_END.search(token.rstrip()):
            return min(index + 1, len(parts) - 1)
    return max(len(parts) - 1, 0)


def writing_ms(profile: LatencyProfile, transcript: str = QUESTION) -> float:
    """From the first token to the token that shows the first sentence is complete."""
    if profile.tokens_per_second <= 0:
        return 0.0
    return boundary_token_index(reply_for(transcript)) * 1000 / profile.tokens_per_second


def configured_service_ms(profile: LatencyProfile, transcript: str = QUESTION) -> float:
    """The time the services are configured to take before a first sentence can be heard.

    stt_latency + first_token + boundary_token_index / tokens_per_second + tts_first_byte.
    Token i of an answer is sent at first_token + i / tokens_per_second, so the middle terms
    are when the first sentence's end is visible in the stream (see `boundary_token_index`).
    Transfer, parsing and decoding are not in it: they are the client's share.
    """
    return (
        profile.stt_latency_ms
        + profile.first_token_ms
        + writing_ms(profile, transcript)
        + profile.tts_first_byte_ms
    )


def own_overhead_ms(first_audio_ms: float, hangover_ms: float, service_ms: float) -> float:
    """First audio minus the VAD hangover minus the configured service time."""
    return first_audio_ms - hangover_ms - service_ms


Step = tuple[str, str, float]
"""(step name, the mark that ends it, the time it was configured to take in ms)."""


def overhead_by_step(marks: Mapping[str, float], steps: Sequence[Step]) -> dict[str, float]:
    """Own overhead split over a turn's steps: each step's duration minus its configured time.

    `marks` are ms after speech end; each step starts where the previous one ended (the first
    at speech end). When the steps cover hangover and service time, the parts add up to
    `own_overhead_ms`. Steps whose mark is missing are left out.
    """
    out: dict[str, float] = {}
    start = 0.0
    for name, mark, configured in steps:
        if mark not in marks:
            continue
        out[name] = round(marks[mark] - start - configured, 1)
        start = marks[mark]
    return out


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100) with linear interpolation between ranks (numpy's default)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True, slots=True)
class Question:
    """The question WAV and where its speech ends."""

    path: Path
    samples: np.ndarray
    speech_end_s: float
    """Offset of the end of speech in the file (see the module docstring)."""
    hangover_ms: float
    """The silence our endpointer then waits for: its hangover, in whole VAD frames."""

    @property
    def duration_s(self) -> float:
        return len(self.samples) / CAPTURE_RATE


def question_samples(text: str = QUESTION) -> np.ndarray:
    """`text` spoken by espeak-ng at 16 kHz, between LEAD_MS and TAIL_MS of silence."""
    speech = synthesize(text)
    voice = soxr.resample(speech.samples, speech.sample_rate, CAPTURE_RATE).astype(np.int16)
    lead = np.zeros(CAPTURE_RATE * LEAD_MS // 1000, dtype=np.int16)
    tail = np.zeros(CAPTURE_RATE * TAIL_MS // 1000, dtype=np.int16)
    return np.concatenate([lead, voice, tail])


def speech_end_s(samples: np.ndarray, vad: VadSettings | None = None) -> float:
    """Where our endpointer ends the first utterance in `samples`, in seconds from the start.

    Fed block by block as the microphone would (block k starts at k * BLOCK_MS), from a
    fresh endpointer, exactly as the assistant's loop meets the file.
    """
    endpointer = Endpointer(vad or VadSettings())
    block = CAPTURE_RATE * BLOCK_MS // 1000
    for k, start in enumerate(range(0, len(samples), block)):
        chunk = samples[start : start + block]
        if len(chunk) < block:
            chunk = np.concatenate([chunk, np.zeros(block - len(chunk), np.int16)])
        for event in endpointer.process(AudioBlock(chunk, k * BLOCK_MS / 1000)):
            if isinstance(event, UtteranceEnded):
                return event.utterance.t_speech_end
    raise ValueError("the question has no utterance our endpointer would answer")


def hangover_ms(vad: VadSettings | None = None) -> float:
    """Our endpointer's hangover as it applies it: whole frames of silence after speech."""
    vad = vad or VadSettings()
    return math.ceil(vad.hangover_ms / vad.frame_ms) * vad.frame_ms


def write_question(directory: Path, text: str = QUESTION) -> Question:
    """Write the question WAV into `directory` and locate its speech end."""
    samples = question_samples(text)
    path = directory / "question.wav"
    path.write_bytes(encode_wav(samples, CAPTURE_RATE))
    return Question(path, samples, speech_end_s(samples), hangover_ms())


@dataclass(slots=True)
class TurnResult:
    """One measured turn of one system."""

    system: str
    turn: int
    first_audio_ms: float
    """Speech end to the first sample handed to the audio output."""
    hangover_ms: float
    """The end-of-speech silence this system was configured to wait for."""
    service_ms: float
    """`configured_service_ms` for the transcript this turn got."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Per-system detail (marks, the speaker-file cross-check), kept in the JSON output."""

    @property
    def overhead_ms(self) -> float:
        return own_overhead_ms(self.first_audio_ms, self.hangover_ms, self.service_ms)

    def as_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["overhead_ms"] = round(self.overhead_ms, 1)
        return doc


def first_sound_s(samples: np.ndarray, rate: int, threshold: int = 200) -> float | None:
    """Time of the first sample louder than `threshold`, or None in silence."""
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > threshold)
    return None if len(loud) == 0 else float(loud[0]) / rate


@dataclass(frozen=True, slots=True)
class DevServer:
    """A dev server running in its own process, so its work never runs on a client's loop."""

    base_url: str
    process: asyncio.subprocess.Process


@contextlib.asynccontextmanager
async def devserver_process(profile: LatencyProfile) -> AsyncIterator[DevServer]:
    """Start `python -m assistant devserver` on a free port with `profile`; stop it after."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "assistant",
        "devserver",
        "--port=0",
        "--control",  # pause_set teaches it phrases over /_dev/phrases
        *profile.devserver_args(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(30):
            line = (await process.stdout.readline()).decode()
        match = re.search(r"(http://\S+/v1)", line)
        if match is None:
            raise RuntimeError(f"the dev server did not start: {line!r}")
        yield DevServer(match.group(1), process)
    finally:
        if process.returncode is None:
            process.terminate()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()
