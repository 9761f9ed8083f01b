"""System b) of `bench.latency`: the sequential voice client most small Pi projects are.

Built from the project's own parts so that only the order of the steps differs from the
assistant: the same WAV microphone and speaker (one timeline), the same endpointer and hangover,
the same Dify clients over the same kept-alive connection. But each step waits for the one
before it to finish:

    endpoint → upload → transcript → blocking /completion-messages (whole answer)
             → /text-to-audio of the whole answer, body read to the end → decode it all
             → resample → play

First audio is the moment the decoded answer is handed to the speaker, measured from the
speech end the endpointer reports, as the assistant's `first_audio` mark is.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from assistant.audio.decoders import SniffingDecoder
from assistant.audio.endpointer import Endpointer, Utterance, UtteranceEnded
from assistant.audio.resample import resample_once
from assistant.ports import CAPTURE_RATE
from assistant.providers.base import SpeechInput
from assistant.providers.dify import (
    DifyClient,
    DifyCompletion,
    DifySpeechToText,
    DifyTextToSpeech,
)
from assistant.settings import DifySettings, Secret, Settings
from hardware.wav_devices import WavFileSink, WavFileSource

BENCH_KEY = "app-bench"
"""The dev server accepts any bearer token."""
PLAYED_S = 0.5
"""How much of the answer is queued for playback before the turn is stopped: the turn is
only measured up to its first audio, like the other systems' turns."""
GRACE_S = 0.1
"""Kept running after the first audio, as the other systems are, so the speaker file shows it."""


@dataclass(slots=True)
class SequentialTurn:
    """What one turn observed."""

    transcript: str
    answer: str
    speech_end: float
    """Monotonic end of speech, as the endpointer put it."""
    first_audio: float
    """Monotonic time the first samples were handed to the speaker."""
    marks_ms: dict[str, float] = field(default_factory=dict)
    """Each step's end, in ms after speech end."""

    @property
    def first_audio_ms(self) -> float:
        return (self.first_audio - self.speech_end) * 1000


def bench_settings(base_url: str) -> Settings:
    """Defaults everywhere, the dev server as Dify, and blocking answers."""
    dify = DifySettings(base_url=base_url, api_key=Secret(BENCH_KEY), response_mode="blocking")
    return dataclasses.replace(Settings(), dify=dify)


async def _utterance(source: WavFileSource, endpointer: Endpointer, timeout: float) -> Utterance:
    """Read the microphone until the endpointer ends an utterance."""
    while True:
        block = await source.read(timeout=timeout)
        if block is None:
            raise RuntimeError("the question ended before an utterance did")
        for event in endpointer.process(block):
            if isinstance(event, UtteranceEnded):
                return event.utterance


def _decode_whole(body: bytes, content_type: str | None) -> tuple[np.ndarray, int]:
    """The whole speech body as int16 mono samples at its own rate."""
    decoder = SniffingDecoder(content_type)
    chunks = decoder.feed(body) + decoder.close()
    if not chunks:
        raise RuntimeError("the speech body decoded to nothing")
    return np.concatenate([chunk.samples for chunk in chunks]), chunks[0].sample_rate


async def sequential_turn(base_url: str, question: Path, speaker: Path) -> SequentialTurn:
    """One question answered step after step; returns once its first audio is handed over."""
    settings = bench_settings(base_url)
    client = DifyClient(settings.dify, settings.http, settings.assistant.user)
    source = WavFileSource(question, block_ms=settings.audio.period_ms)
    sink = WavFileSink(
        speaker,
        # As the assistant's own WAV speaker runs (assistant.app).
        sample_rate=settings.audio.output_rate or settings.audio.speaker_wav_rate,
        period_ms=settings.audio.period_ms,
        playback_buffer_s=settings.audio.playback_buffer_s,
    )
    try:
        # The assistant checks the key (and so opens the connection) at start, and reads the
        # app's input form (where the question goes); so does this.
        await client.warm()
        await source.start()
        await sink.start()
        sink.set_t0(source.t0)
        utterance = await _utterance(
            source, Endpointer(settings.vad), settings.audio.device_timeout_s
        )
        end = utterance.t_speech_end
        marks: dict[str, float] = {}

        def mark(name: str) -> None:
            marks[name] = round((time.monotonic() - end) * 1000, 1)

        mark("endpoint")
        text = await DifySpeechToText(client).transcribe(
            SpeechInput(utterance.samples, CAPTURE_RATE)
        )
        mark("transcript")
        answer = "".join([delta.text async for delta in DifyCompletion(client).stream(text)])
        mark("answer")
        body = bytearray()
        content_type: str | None = None
        async for chunk in DifyTextToSpeech(client).stream(answer):
            content_type = content_type or chunk.content_type
            body += chunk.data
        mark("tts_body")
        samples, rate = _decode_whole(bytes(body), content_type)
        samples = resample_once(samples, rate, sink.sample_rate)
        mark("decoded")
        first_audio = time.monotonic()
        await sink.play(
            samples[: round(PLAYED_S * sink.sample_rate)], settings.audio.device_timeout_s
        )
        await asyncio.sleep(GRACE_S)
        marks["first_audio"] = round((first_audio - end) * 1000, 1)
        return SequentialTurn(text, answer, end, first_audio, marks)
    finally:
        await source.close()
        await sink.close()
        await client.aclose()
