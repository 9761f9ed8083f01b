"""The device's own sounds never reach an upload, through a real echo path.

PyAudio on the PulseAudio null sinks, with a `module-loopback` from the speaker sink's
monitor into the microphone sink (a room: what the device plays comes back into its
microphone 60 ms later, as loud as it was played). The dev server keeps what it was sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soxr
from audio_match import peak_correlation
from audio_samples import concat, silence, speech_16k
from gpiozero.pins.mock import MockFactory
from pulse import PulseServer

from assistant.app import RunOptions, run_assistant
from assistant.audio.earcons import Earcon, make_earcon
from assistant.audio.wav import encode_wav
from assistant.devserver import RunningDevServer
from assistant.events import Event, EventBus, Subscription
from assistant.settings import (
    AssistantSettings,
    DifySettings,
    EarconSettings,
    Secret,
    Settings,
    Trigger,
)

QUESTION = "What is the weather like on Mars?"
ECHO_DELAY_MS = 60
DEV_SERVER_LATENCY = {"first_token_ms": 30, "tokens_per_second": 200}


@pytest.fixture
def echo_path(pulse: PulseServer) -> Iterator[None]:
    index = pulse.load_echo_path(ECHO_DELAY_MS, gain_db=0.0)
    try:
        yield
    finally:
        pulse.unload_echo_path(index)


async def _until(events: Subscription, kind: str, timeout: float = 40, **match: object) -> Event:
    async with asyncio.timeout(timeout):
        while True:
            event = await events.get()
            if event.kind == kind and all(event.data.get(k) == v for k, v in match.items()):
                return event


@pytest.mark.pulse
async def test_the_listening_beep_through_a_room_is_never_uploaded(
    pulse: PulseServer, echo_path: None, server: RunningDevServer, mock_pins: MockFactory
) -> None:
    server.state.options = dataclasses.replace(server.state.options, reply_sentences=1)
    settings = Settings(
        assistant=AssistantSettings(trigger=Trigger.PUSH_TO_TALK),
        dify=DifySettings(base_url=server.base_url, api_key=Secret("app-x")),
    )
    bus = EventBus()
    events = bus.subscribe(5000)
    heard_by_mic = pulse.start_recording_mic(rate=16_000)
    assistant = asyncio.create_task(run_assistant(settings, RunOptions(), bus))
    try:
        await _until(events, "ready", 15)
        await asyncio.sleep(0.5)
        pin = mock_pins.pin(settings.button.pin)
        pin.drive_low()  # the beep plays now, and comes back through the room
        question = concat(silence(600), speech_16k(QUESTION))
        player = pulse.play_into_mic((question, 16_000))
        await asyncio.to_thread(player.wait, 15)
        await asyncio.sleep(0.3)
        pin.drive_high()
        await _until(events, "marks", turn=1)
    finally:
        assistant.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await assistant
        mic_audio = heard_by_mic.stop()

    beep = make_earcon(Earcon.LISTENING, 16_000)
    # The room carried the beep into the microphone...
    assert peak_correlation(mic_audio, beep) > 0.8
    # ...but what was uploaded holds none of it, and the question was understood.
    [(upload, rate)] = list(server.state.uploads)
    upload16 = (soxr.resample(upload, rate, 16_000) * 32767).astype(np.int16)  # float32 [-1, 1]
    assert peak_correlation(upload16, beep) < 0.3
    [record] = server.state.records("audio-to-text")
    assert record.details["transcript"] == QUESTION


@pytest.mark.pulse
async def test_hands_free_a_spoken_earcon_through_the_room_is_not_a_question(
    pulse: PulseServer, echo_path: None, server: RunningDevServer, tmp_path: Path
) -> None:
    # A `done` earcon that is itself speech, heard back while the device listens
    # hands-free: without the gate it opens an utterance, is uploaded and answered.
    done = tmp_path / "done.wav"
    done.write_bytes(encode_wav(speech_16k("Is there anything else?"), 16_000))
    server.state.options = dataclasses.replace(server.state.options, reply_sentences=1)
    settings = Settings(
        dify=DifySettings(base_url=server.base_url, api_key=Secret("app-x")),
        earcons=EarconSettings(done=True, done_file=str(done)),
    )
    bus = EventBus()
    events = bus.subscribe(5000)
    seen: list[Event] = []
    bus.add_listener(seen.append)
    assistant = asyncio.create_task(run_assistant(settings, RunOptions(), bus))
    try:
        await _until(events, "ready", 15)
        player = pulse.play_into_mic((concat(silence(600), speech_16k(QUESTION)), 16_000))
        await asyncio.to_thread(player.wait, 15)
        await _until(events, "marks", turn=1)
        await asyncio.sleep(3.0)  # the earcon plays, comes back, and would be taken for speech
    finally:
        assistant.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await assistant

    assert [e.data["text"] for e in seen if e.kind == "transcript"] == [QUESTION]
    assert len(server.state.uploads) == 1
    assert len([e for e in seen if e.kind == "speech_started"]) == 1
