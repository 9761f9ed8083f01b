"""The whole assistant on real parts: PyAudio on PulseAudio null sinks, HTTP on loopback.

A spoken question is played into the sink the microphone listens to; what the
assistant plays is recorded from the other sink and searched for the speech
the dev server synthesised, sentence by sentence.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from audio_match import find
from audio_samples import concat, silence, speech_16k
from pulse import PulseServer

from assistant.app import RunOptions, run_assistant
from assistant.devserver import (
    RunningDevServer,
    reply_for,
    speech_for,
)
from assistant.events import Event, EventBus, Subscription
from assistant.settings import DifySettings, Secret, Settings

QUESTION = "What is the weather like on Mars?"
TURN_TIMEOUT_S = 60


DEV_SERVER_LATENCY = dict(stt_latency_ms=50, first_token_ms=50, tokens_per_second=60)


async def _wait_for(events: Subscription, predicate: object, timeout: float) -> Event:
    async with asyncio.timeout(timeout):
        while True:
            event = await events.get()
            if predicate(event):  # type: ignore[operator]
                return event


@pytest.mark.pulse
async def test_spoken_question_gets_spoken_answer_through_pyaudio(
    sound_server: PulseServer, server: RunningDevServer
) -> None:
    settings = Settings(dify=DifySettings(base_url=server.base_url, api_key=Secret("app-x")))
    bus = EventBus()
    events = bus.subscribe()
    recording = sound_server.start_recording_speaker()
    assistant = asyncio.create_task(run_assistant(settings, RunOptions(), bus))
    try:
        await _wait_for(events, lambda e: e.kind == "ready", 10)
        # Leading silence: a new PulseAudio stream may swallow its first few hundred ms.
        player = sound_server.play_into_mic((concat(silence(600), speech_16k(QUESTION)), 16_000))
        transcript = await _wait_for(events, lambda e: e.kind == "transcript", TURN_TIMEOUT_S)
        await asyncio.to_thread(player.wait, 10)
        await _wait_for(events, lambda e: e.kind == "marks", TURN_TIMEOUT_S)
        errors = [e for e in _drain(events) if e.kind == "error"]
    finally:
        assistant.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await assistant
        heard = recording.stop()

    assert transcript.data["text"] == QUESTION
    assert errors == []
    spoken = [r.details["text"] for r in server.state.records("text-to-audio")]
    assert " ".join(spoken).split() == reply_for(QUESTION).split()
    starts = []
    for sentence in spoken:
        reference = speech_for(sentence)
        match = find(heard, recording.rate, reference.samples, reference.sample_rate)
        assert match.score > 0.85, (sentence, match)
        starts.append(match.start_s)
    assert starts == sorted(starts), "sentences played out of order"


def _drain(events: Subscription) -> list[Event]:
    out = []
    while (event := events.get_nowait()) is not None:
        out.append(event)
    return out
