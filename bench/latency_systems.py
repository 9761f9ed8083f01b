"""The systems `bench.latency` measures, one turn at a time, and how each one's time is split.

a, s, sc) this assistant (`run_assistant` in file mode, in the bench's process) with
   `[vad] speculate` off, "stt" and "stt+completion"; first audio is its `first_audio` mark.
b) `bench.sequential_client`: the same parts, one step after the other.
c) `bench.pipecat_client` in `bench/.pipecat-venv`, on the dev server's OpenAI endpoints.

Each turn stops once its first audio has been measured (plus GRACE_S), the same for all.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assistant.app import RunOptions, run_assistant
from assistant.events import Event, EventBus
from assistant.settings import (
    AssistantSettings,
    DifySettings,
    Secret,
    Settings,
    Speculate,
    VadSettings,
)
from bench.common import (
    LatencyProfile,
    Question,
    Step,
    TurnResult,
    configured_service_ms,
    first_sound_s,
    overhead_by_step,
    writing_ms,
)
from bench.pipecat_env import PipecatClient
from bench.sequential_client import sequential_turn
from hardware.wav_io import read_wav

SYSTEMS = {
    "a": "assistant",
    "s": "speculate-stt",
    "sc": "speculate-stt+completion",
    "b": "sequential",
    "c": "pipecat",
}
"""Key and label of every system, in table order."""
SPECULATE = {"a": Speculate.OFF, "s": Speculate.STT, "sc": Speculate.STT_COMPLETION}
"""The assistant's systems and their `[vad] speculate`."""
GRACE_S = 0.1
"""Kept running after the first audio before a turn is stopped (the same in every client)."""
TURN_TIMEOUT_S = 60.0


class TurnFailed(Exception):
    """A turn ended without a first audio measurement."""


def assistant_steps(profile: LatencyProfile, transcript: str, hangover: float) -> list[Step]:
    """a)'s marks (assistant.marks), each step with the time it was configured to take."""
    return [
        ("endpoint", "endpoint", hangover),
        ("stt", "transcript", profile.stt_latency_ms),
        ("completion", "first_token", profile.first_token_ms),
        ("sentence", "first_sentence", writing_ms(profile, transcript)),
        ("tts", "first_tts_byte", profile.tts_first_byte_ms),
        ("playback", "first_audio", 0.0),
    ]


def speculative_steps(
    profile: LatencyProfile, transcript: str, hangover: float, pause: float
) -> list[Step]:
    """s) and sc)'s marks: the upload starts at the pause, so the `stt` step (counted from
    the endpoint) goes negative by the part of it that ran inside the hangover; with "stt" the
    completion then waits for whichever of transcript and endpoint comes last."""
    return [
        ("pause", "speculation", pause),
        ("hangover", "endpoint", hangover - pause),
        ("stt", "transcript", profile.stt_latency_ms),
        ("completion", "first_token", profile.first_token_ms),
        ("sentence", "first_sentence", writing_ms(profile, transcript)),
        ("tts", "first_tts_byte", profile.tts_first_byte_ms),
        ("playback", "first_audio", 0.0),
    ]


def sequential_steps(profile: LatencyProfile, transcript: str, hangover: float) -> list[Step]:
    """b)'s marks: the whole answer and the whole speech body stand where a)'s first sentence
    and first audio byte stand, so their extra time is b's overhead."""
    return [
        ("endpoint", "endpoint", hangover),
        ("stt", "transcript", profile.stt_latency_ms),
        ("completion", "answer", profile.first_token_ms + writing_ms(profile, transcript)),
        ("tts", "tts_body", profile.tts_first_byte_ms),
        ("decode", "decoded", 0.0),
        ("playback", "first_audio", 0.0),
    ]


def pipecat_steps(
    profile: LatencyProfile, transcript: str, vad_stop: float, speech_timeout: float
) -> list[Step]:
    """c)'s marks (pipecat_client.py): VAD stop, transcript, turn stop, first LLM token, first
    audio. pipecat transcribes as soon as the VAD stops and ends the turn when both the speech
    timeout and the transcript are there: with a speech timeout the `turn` step goes negative
    by the part of it that transcription overlapped."""
    return [
        ("endpoint", "vad_stop", vad_stop),
        ("stt", "transcript", profile.stt_latency_ms),
        ("turn", "turn_stop", speech_timeout),
        ("completion", "first_token", profile.first_token_ms),
        ("speech", "first_audio", writing_ms(profile, transcript) + profile.tts_first_byte_ms),
    ]


# -- a, s, sc) the assistant --------------------------------------------------------------------


def _played_ms(speaker: Path, question: Question) -> float | None:
    """Cross-check from the speaker file: its first sound after speech end, in ms.

    Later than the handover by up to one device period and by the leading silence of the
    synthesised speech; only kept in the JSON output.
    """
    try:
        samples, rate = read_wav(speaker)
    except (OSError, ValueError):
        return None
    start = round(question.speech_end_s * rate)
    sound = first_sound_s(samples[start:], rate)
    return None if sound is None else round(sound * 1000, 1)


@dataclass(slots=True)
class Heard:
    """What one run of the assistant published until its first audio."""

    marks: dict[str, Any] = field(default_factory=dict)
    """The first `marks` event (ms after speech end, and the speculation counts)."""
    transcript: str | None = None
    """The first transcript: the question the turn that played answered."""
    errors: list[dict[str, Any]] = field(default_factory=list)
    """Every `error` event's data."""
    speculations: list[dict[str, Any]] = field(default_factory=list)
    """Every `speculation` event's data, in order."""


async def hear_assistant(
    base_url: str, wav: Path, speaker: Path, speculate: Speculate, speculate_after_ms: int
) -> Heard:
    """One question through `run_assistant` in file mode, stopped after its first audio."""
    vad = VadSettings(speculate=speculate, speculate_after_ms=speculate_after_ms)
    settings = dataclasses.replace(
        Settings(),
        # No watchdog thread: the run is short, and it would only add a thread to the process.
        assistant=AssistantSettings(watchdog_s=0),
        vad=vad,
        dify=DifySettings(base_url=base_url, api_key=Secret("app-bench")),
    )
    bus = EventBus()
    heard = Heard()
    speaking = asyncio.Event()

    def listen(event: Event) -> None:
        if event.kind == "marks":
            heard.marks = heard.marks or dict(event.data)
        elif event.kind == "transcript" and heard.transcript is None:
            heard.transcript = str(event.data.get("text", ""))
        elif event.kind == "error":
            heard.errors.append(event.data)
        elif event.kind == "speculation":
            heard.speculations.append(event.data)
        elif event.kind == "state" and event.data.get("state") == "speaking":
            speaking.set()

    bus.add_listener(listen)
    run = asyncio.create_task(run_assistant(settings, RunOptions(wav, speaker), bus))
    waiting = asyncio.create_task(speaking.wait())
    try:
        async with asyncio.timeout(TURN_TIMEOUT_S):
            await asyncio.wait({run, waiting}, return_when=asyncio.FIRST_COMPLETED)
        if speaking.is_set():
            await asyncio.sleep(GRACE_S)
    finally:
        waiting.cancel()
        run.cancel()
        # The turn's marks are published as its cancellation unwinds.
        with contextlib.suppress(asyncio.CancelledError):
            await run
    return heard


async def assistant_turn(
    key: str,
    base_url: str,
    question: Question,
    workdir: Path,
    profile: LatencyProfile,
    speculate_after_ms: int,
    turn: int,
) -> TurnResult:
    speculate = SPECULATE[key]
    speaker = workdir / f"{key}-{turn}.wav"
    heard = await hear_assistant(base_url, question.path, speaker, speculate, speculate_after_ms)
    marks = heard.marks
    if "first_audio" not in marks:
        raise TurnFailed(f"no first audio; errors: {heard.errors or 'none'}")
    transcript = heard.transcript or ""
    hangover = question.hangover_ms
    if speculate is Speculate.OFF:
        steps = assistant_steps(profile, transcript, hangover)
    else:
        steps = speculative_steps(profile, transcript, hangover, float(speculate_after_ms))
    return TurnResult(
        key,
        turn,
        float(marks["first_audio"]),
        hangover,
        configured_service_ms(profile, transcript),
        {
            "marks": marks,
            "steps": overhead_by_step(marks, steps),
            "transcript": transcript,
            "speculations": [s["outcome"] for s in heard.speculations],
            "played_ms": _played_ms(speaker, question),
        },
    )


# -- b) the sequential client -----------------------------------------------------------------


async def sequential_bench_turn(
    base_url: str, question: Question, workdir: Path, profile: LatencyProfile, turn: int
) -> TurnResult:
    speaker = workdir / f"b-{turn}.wav"
    async with asyncio.timeout(TURN_TIMEOUT_S):
        outcome = await sequential_turn(base_url, question.path, speaker)
    return TurnResult(
        "b",
        turn,
        outcome.first_audio_ms,
        question.hangover_ms,
        configured_service_ms(profile, outcome.transcript),
        {
            "marks": outcome.marks_ms,
            "steps": overhead_by_step(
                outcome.marks_ms,
                sequential_steps(profile, outcome.transcript, question.hangover_ms),
            ),
            "transcript": outcome.transcript,
            "played_ms": _played_ms(speaker, question),
        },
    )


# -- c) pipecat -------------------------------------------------------------------------------


async def pipecat_bench_turn(
    client: PipecatClient, question: Question, profile: LatencyProfile, turn: int
) -> TurnResult:
    doc = await client.turn(turn)
    first = doc.get("first_audio_s")
    if doc.get("error") or first is None:
        raise TurnFailed(f"{doc.get('error')}: {client.log_tail()}")
    # The client reports seconds after it started feeding the WAV, the file's own timeline.
    marks = {
        name: round((t - question.speech_end_s) * 1000, 1)
        for name, t in doc.get("marks_s", {}).items()
    }
    transcript = str(doc.get("transcript", ""))
    return TurnResult(
        "c",
        turn,
        (float(first) - question.speech_end_s) * 1000,
        client.hangover_ms,
        configured_service_ms(profile, transcript),
        {
            "marks": marks,
            "steps": overhead_by_step(
                marks,
                pipecat_steps(profile, transcript, client.vad_stop_ms, client.speech_timeout_ms),
            ),
            "transcript": transcript,
        },
    )
