"""System c) of `bench.latency`: a pipecat voice pipeline on the dev server's OpenAI endpoints.

Runs inside `bench/.pipecat-venv` (see `bench.pipecat_env`), so it imports only the standard
library and pipecat: never the project's modules, whose pins may differ from pipecat's.

One turn is a fresh pipeline, the way a pipecat bot runs one session:

    WavInput → OpenAISTTService → user aggregator (Silero VAD, turn stop) → OpenAILLMService
             → OpenAITTSService → FirstAudioProbe → assistant aggregator

`WavInput` replays the question WAV in real time, block k released at t0 + (k+1) * block, as
our `WavFileSource` does; `FirstAudioProbe` stands where the output transport would and notes
when the first `TTSAudioRawFrame` reaches it. The turn is then cancelled, as the other
systems' turns are once their first audio is measured.

Turn logic comparable to ours: Silero VAD (its model ships in the wheel) with `stop_secs`
equal to our hangover, so transcription starts after the same silence, and a speech-timeout
turn stop of `--speech-timeout` (0 = the turn ends as soon as the transcript arrives).

Protocol (stdin/stdout, one JSON object per line): prints {"ready": ...} once pipecat is
imported, then for every "turn N" line read (or "turn N PATH": that WAV instead of `--wav`)
runs one turn and prints
{"turn": N, "first_audio_s": ..., "marks_s": {...}, "transcript": ..., "llm_queries": [...],
"error": ...} (times in seconds after the WAV started playing; `llm_queries`: what each LLM
request asked, as the user's messages since the last answer);
"quit" or the end of stdin ends it. pipecat's own logging goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
import wave
from dataclasses import dataclass, field
from typing import Any

BENCH_KEY = "sk-bench"
"""The dev server accepts any bearer token."""
TURN_TIMEOUT_S = 60.0
GRACE_S = 0.1
"""Kept running after the first audio, as the other systems are, before the turn is stopped."""


@dataclass(slots=True)
class TurnOutcome:
    """What one turn observed; times are time.monotonic() values."""

    t0: float | None = None
    first_audio: float | None = None
    transcript: str = ""
    marks: dict[str, float] = field(default_factory=dict)
    """Monotonic times of the turn's steps, first occurrence each (see `Tap`)."""
    llm_queries: list[str] = field(default_factory=list)
    """What each LLM request asked: its user messages since the last answer, joined."""
    errors: list[str] = field(default_factory=list)
    heard: asyncio.Event = field(default_factory=asyncio.Event)

    def as_json(self, turn: int) -> dict[str, Any]:
        first = None
        if self.first_audio is not None and self.t0 is not None:
            first = self.first_audio - self.t0
        error = "; ".join(self.errors) or (None if first is not None else "no audio")
        t0 = self.t0 or 0.0
        return {
            "turn": turn,
            "first_audio_s": first,
            "marks_s": {name: round(t - t0, 4) for name, t in self.marks.items()},
            "transcript": self.transcript,
            "llm_queries": self.llm_queries,
            "error": error,
        }


def read_pcm(path: str) -> tuple[bytes, int]:
    """The WAV's 16-bit mono samples and rate (the benchmark writes exactly that)."""
    with wave.open(path, "rb") as wav:
        if wav.getsampwidth() != 2 or wav.getnchannels() != 1:
            raise ValueError(f"{path}: expected 16-bit mono")
        return wav.readframes(wav.getnframes()), wav.getframerate()


def build_pipeline(args: argparse.Namespace, pcm: bytes, rate: int, outcome: TurnOutcome) -> Any:
    """The pipeline of one turn, wired to record into `outcome`."""
    from pipecat.audio.vad.silero import SileroVADAnalyzer
    from pipecat.audio.vad.vad_analyzer import VADParams
    from pipecat.frames.frames import (
        CancelFrame,
        EndFrame,
        Frame,
        InputAudioRawFrame,
        LLMContextFrame,
        LLMTextFrame,
        StartFrame,
        TranscriptionFrame,
        TTSAudioRawFrame,
        UserStoppedSpeakingFrame,
        VADUserStoppedSpeakingFrame,
    )
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.processors.aggregators.llm_context import LLMContext
    from pipecat.processors.aggregators.llm_response_universal import (
        LLMContextAggregatorPair,
        LLMUserAggregatorParams,
    )
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
    from pipecat.services.openai.llm import OpenAILLMService
    from pipecat.services.openai.stt import OpenAISTTService
    from pipecat.services.openai.tts import OpenAITTSService
    from pipecat.turns.user_stop import SpeechTimeoutUserTurnStopStrategy
    from pipecat.turns.user_turn_strategies import UserTurnStrategies

    class WavInput(FrameProcessor):
        """The microphone: the WAV's blocks pushed at the pace a device would deliver them."""

        def __init__(self) -> None:
            super().__init__(name="WavInput")
            self._feeder: asyncio.Task[None] | None = None
            self._block_bytes = rate * args.block_ms // 1000 * 2

        async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            await self.push_frame(frame, direction)
            if isinstance(frame, StartFrame):
                self._feeder = self.create_task(self._feed(), "wav-input")
            elif isinstance(frame, EndFrame | CancelFrame) and self._feeder is not None:
                await self.cancel_task(self._feeder)
                self._feeder = None

        async def _feed(self) -> None:
            block_s = args.block_ms / 1000
            outcome.t0 = t0 = time.monotonic()
            for k, start in enumerate(range(0, len(pcm), self._block_bytes)):
                # Released when its last sample has "happened", like WavFileSource.
                await asyncio.sleep(max(0.0, t0 + (k + 1) * block_s - time.monotonic()))
                chunk = pcm[start : start + self._block_bytes]
                chunk += bytes(self._block_bytes - len(chunk))
                await self.push_frame(InputAudioRawFrame(chunk, rate, 1))

    class Tap(FrameProcessor):
        """Notes when frames of the given types first pass (in either direction), and the
        transcript; changes nothing."""

        def __init__(self, name: str, watch: dict[type[Frame], str]) -> None:
            super().__init__(name=name)
            self._watch = watch

        async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            for kind, mark in self._watch.items():
                if isinstance(frame, kind):
                    outcome.marks.setdefault(mark, time.monotonic())
            if isinstance(frame, TranscriptionFrame) and direction is FrameDirection.DOWNSTREAM:
                outcome.transcript += frame.text
            await self.push_frame(frame, direction)

    class QueryProbe(FrameProcessor):
        """Notes what each LLM request asks (the user's turn as the LLM will read it)."""

        async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            if isinstance(frame, LLMContextFrame) and direction is FrameDirection.DOWNSTREAM:
                asked: list[str] = []
                for message in frame.context.messages:
                    role = message.get("role") if isinstance(message, dict) else None
                    if role == "assistant":
                        asked = []
                    elif role == "user":
                        asked.append(_text_of(message.get("content")))
                outcome.llm_queries.append(" ".join(part for part in asked if part))
            await self.push_frame(frame, direction)

    class FirstAudioProbe(Tap):
        """Where the output transport would be: the first audio frame to arrive is first audio."""

        async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
            if isinstance(frame, TTSAudioRawFrame) and outcome.first_audio is None:
                outcome.first_audio = time.monotonic()
                outcome.heard.set()
            await super().process_frame(frame, direction)

    stt = OpenAISTTService(
        api_key=BENCH_KEY,
        base_url=args.base_url,
        settings=OpenAISTTService.Settings(model="whisper-1"),
    )
    llm = OpenAILLMService(
        api_key=BENCH_KEY,
        base_url=args.base_url,
        settings=OpenAILLMService.Settings(
            model="gpt-4o-mini", system_instruction="You are a helpful voice assistant."
        ),
    )
    tts = OpenAITTSService(
        api_key=BENCH_KEY,
        base_url=args.base_url,
        settings=OpenAITTSService.Settings(model="gpt-4o-mini-tts", voice="alloy"),
    )
    context = LLMContext()
    user, assistant = LLMContextAggregatorPair(
        context,
        user_params=LLMUserAggregatorParams(
            vad_analyzer=SileroVADAnalyzer(
                sample_rate=rate,
                params=VADParams(stop_secs=args.stop_secs, start_secs=args.start_secs),
            ),
            user_turn_strategies=UserTurnStrategies(
                stop=[SpeechTimeoutUserTurnStopStrategy(user_speech_timeout=args.speech_timeout)]
            ),
        ),
    )
    after_stt = Tap(
        "AfterSTT",
        {
            VADUserStoppedSpeakingFrame: "vad_stop",
            TranscriptionFrame: "transcript",
            UserStoppedSpeakingFrame: "turn_stop",
        },
    )
    after_llm = Tap("AfterLLM", {LLMTextFrame: "first_token"})
    probe = FirstAudioProbe("FirstAudioProbe", {TTSAudioRawFrame: "first_audio"})
    asked = QueryProbe(name="QueryProbe")
    return Pipeline(
        [WavInput(), stt, after_stt, user, asked, llm, after_llm, tts, probe, assistant]
    )


def _text_of(content: Any) -> str:
    """A message's text, whether a string or a list of content parts."""
    if isinstance(content, str):
        return content.strip()
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict)]
        return " ".join(part.strip() for part in parts if part)
    return ""


async def run_turn(args: argparse.Namespace, pcm: bytes, rate: int) -> TurnOutcome:
    """One question, answered until its first audio frame (or the timeout)."""
    from pipecat.pipeline.worker import PipelineParams, PipelineWorker
    from pipecat.workers.runner import WorkerRunner

    outcome = TurnOutcome()
    worker = PipelineWorker(
        build_pipeline(args, pcm, rate, outcome),
        params=PipelineParams(audio_in_sample_rate=rate, audio_out_sample_rate=24_000),
        enable_rtvi=False,
        idle_timeout_secs=None,
    )

    @worker.event_handler("on_pipeline_error")
    async def on_error(_worker: Any, frame: Any) -> None:
        outcome.errors.append(str(getattr(frame, "error", frame)))

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    running = asyncio.create_task(runner.run())
    try:
        async with asyncio.timeout(TURN_TIMEOUT_S):
            heard = asyncio.create_task(outcome.heard.wait())
            await asyncio.wait({heard, running}, return_when=asyncio.FIRST_COMPLETED)
            heard.cancel()
        if outcome.first_audio is not None:
            await asyncio.sleep(GRACE_S)
    except TimeoutError:
        outcome.errors.append(f"no audio within {TURN_TIMEOUT_S:.0f} s")
    finally:
        await worker.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            async with asyncio.timeout(10):
                await running
    return outcome


def vad_stop_s(args: argparse.Namespace, rate: int) -> float:
    """The silence after speech before the VAD reports its end: `stop_secs` in whole VAD
    frames, rounded as VADAnalyzer.set_params rounds it."""
    from pipecat.audio.vad.silero import SileroVADAnalyzer

    analyzer = SileroVADAnalyzer(sample_rate=rate)
    analyzer.set_sample_rate(rate)  # what a pipeline's StartFrame does
    frame_s = analyzer.num_frames_required() / rate
    return round(args.stop_secs / frame_s) * frame_s


def _emit(doc: dict[str, Any]) -> None:
    print(json.dumps(doc), flush=True)


async def serve(args: argparse.Namespace) -> None:
    """Answer "turn N" lines from stdin until "quit" or end of input."""
    import pipecat

    pcm, rate = read_pcm(args.wav)
    _emit(
        {
            "ready": True,
            "pipecat": getattr(pipecat, "__version__", "unknown"),
            "vad_stop_ms": vad_stop_s(args, rate) * 1000,
            "speech_timeout_ms": args.speech_timeout * 1000,
        }
    )
    loop = asyncio.get_running_loop()
    wavs = {args.wav: (pcm, rate)}
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
        if not line or line == "quit":
            return
        command, _, rest = line.partition(" ")
        number, _, path = rest.partition(" ")
        if command != "turn":
            _emit({"error": f"unknown command {line!r}"})
            continue
        try:
            if path and path not in wavs:
                wavs[path] = read_pcm(path)
            turn_pcm, turn_rate = wavs[path or args.wav]
            outcome = await run_turn(args, turn_pcm, turn_rate)
        except Exception as exc:  # reported to the parent, which decides what it means
            _emit({"turn": int(number or 0), "first_audio_s": None, "error": repr(exc)})
            continue
        _emit(outcome.as_json(int(number or 0)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True, help="the dev server's /v1 base")
    parser.add_argument("--wav", required=True, help="the question, 16-bit mono")
    parser.add_argument("--block-ms", type=int, default=20, help="microphone block")
    parser.add_argument("--stop-secs", type=float, default=0.5, help="Silero VAD stop_secs")
    parser.add_argument(
        "--start-secs", type=float, default=0.2, help="Silero VAD start_secs (pipecat's 0.2)"
    )
    parser.add_argument(
        "--speech-timeout", type=float, default=0.0, help="turn stop after VAD stop (s)"
    )
    parser.add_argument("--log-level", default="WARNING", help="pipecat (loguru) log level")
    args = parser.parse_args(argv)
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level=args.log_level)
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
