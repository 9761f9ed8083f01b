"""Push-to-talk: gpiozero's MockFactory presses and releases the talk button's pin.

Only the audio between press and release, plus the pre-roll, is uploaded; speech
outside the press is never sent, and a tap with no speech uploads nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from audio_samples import concat, silence, speech_16k
from gpiozero.pins.mock import MockFactory

from assistant.app import RunOptions, run_assistant
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
from hardware.wav_devices import read_wav

QUESTION = "What is the weather like on Mars?"
OTHER = "Tell me a joke."
PIN = 17


def _settings(server: RunningDevServer) -> Settings:
    return Settings(
        assistant=AssistantSettings(trigger=Trigger.PUSH_TO_TALK),
        dify=DifySettings(base_url=server.base_url, api_key=Secret("app-x")),
    )


async def _hold(pins: MockFactory, t0: float, press_s: float, release_s: float) -> None:
    """Press at t0+press_s, release at t0+release_s (loop time, monotonic)."""
    loop = asyncio.get_running_loop()
    pin = pins.pin(PIN)
    await asyncio.sleep(t0 + press_s - loop.time())
    pin.drive_low()
    await asyncio.sleep(t0 + release_s - loop.time())
    pin.drive_high()


async def test_only_the_held_audio_is_uploaded(
    server: RunningDevServer, mock_pins: MockFactory, tmp_path: Path
) -> None:
    # OTHER is spoken before the press (must never be sent), QUESTION while held.
    other, question = speech_16k(OTHER), speech_16k(QUESTION)
    question_at = 2.5
    mic = concat(
        silence(300),
        other,
        silence(question_at * 1000 - 300 - len(other) / 16),
        question,
        silence(2500),
    )
    mic_path = tmp_path / "mic.wav"
    mic_path.write_bytes(encode_wav(mic, 16_000))
    # Pressed, then the listening beep, then the question (the beep is never uploaded).
    press, release = question_at - 0.6, question_at + len(question) / 16_000 + 0.05

    bus = EventBus()
    events = bus.subscribe()
    options = RunOptions(mic_path, tmp_path / "out.wav", tmp_path / "events.jsonl")
    assistant = asyncio.create_task(run_assistant(_settings(server), options, bus))
    ready = await _next(events, "ready")
    # The file microphone's timeline starts when the devices open, i.e. at `ready`.
    await _hold(mock_pins, ready.t, press, release)
    await asyncio.wait_for(assistant, 60)

    uploads = server.state.records("audio-to-text")
    assert len(uploads) == 1, "speech outside the press must not be uploaded"
    assert uploads[0].details["transcript"] == QUESTION
    preroll = Settings().vad.preroll_ms / 1000
    held = release - press
    assert uploads[0].details["audio_duration_s"] == pytest.approx(held + preroll, abs=0.08)


async def test_a_tap_without_speech_uploads_nothing(
    server: RunningDevServer, mock_pins: MockFactory, tmp_path: Path
) -> None:
    mic_path = tmp_path / "mic.wav"
    mic_path.write_bytes(encode_wav(silence(2000), 16_000))
    bus = EventBus()
    events = bus.subscribe()
    options = RunOptions(mic_path, tmp_path / "out.wav")
    assistant = asyncio.create_task(run_assistant(_settings(server), options, bus))
    ready = await _next(events, "ready")
    await _hold(mock_pins, ready.t, 0.5, 1.0)
    await asyncio.wait_for(assistant, 30)
    assert server.state.records("audio-to-text") == []
    dropped = [e async for e in _all(events) if e.kind == "utterance_dropped"]
    assert len(dropped) == 1


async def _next(events: Subscription, kind: str) -> Event:
    async with asyncio.timeout(10):
        while (event := await events.get()).kind != kind:
            pass
    return event


async def _all(events: Subscription) -> AsyncIterator[Event]:
    while (event := events.get_nowait()) is not None:
        yield event


async def test_long_press_without_speech_starts_a_new_conversation(
    server: RunningDevServer, mock_pins: MockFactory, tmp_path: Path
) -> None:
    question = speech_16k(QUESTION)
    q_len = len(question) / 16_000
    # Q1 at 0.5 s; its answer (one sentence and the chat's closing one) is over by ~9 s; a
    # silent long press at 12 s; Q1 again at 16 s.
    server.state.options = dataclasses.replace(server.state.options, reply_sentences=1)
    long_press_at, second_at = 12.0, 16.0
    mic = concat(
        silence(500),
        question,
        silence((second_at - 0.5 - q_len) * 1000),
        question,
        silence(1000),
    )
    mic_path = tmp_path / "mic.wav"
    mic_path.write_bytes(encode_wav(mic, 16_000))
    settings = _settings(server)
    settings = dataclasses.replace(settings, dify=dataclasses.replace(settings.dify, app="chat"))
    bus = EventBus()
    events = bus.subscribe()
    options = RunOptions(mic_path, tmp_path / "out.wav")
    assistant = asyncio.create_task(run_assistant(settings, options, bus))
    t0 = (await _next(events, "ready")).t
    await _hold(mock_pins, t0, 0.05, 0.6 + q_len)  # the beep, then the question at 0.5 s
    long_press = settings.button.long_press_s + 0.3
    await _hold(mock_pins, t0, long_press_at, long_press_at + long_press)
    await _hold(mock_pins, t0, second_at - 0.5, second_at + q_len + 0.1)
    await asyncio.wait_for(assistant, 60)

    chats = server.state.records("chat-messages")
    assert len(chats) == 2
    first_id = chats[0].details["conversation_id"]
    assert first_id and chats[1].details["conversation_id"] != first_id
    assert chats[1].details["answer"].endswith("This is turn 1 of our conversation.")


async def test_press_during_the_answer_silences_it_and_takes_the_new_question(
    server: RunningDevServer, mock_pins: MockFactory, tmp_path: Path
) -> None:
    question, other = speech_16k(QUESTION), speech_16k(OTHER)
    q_len, o_len = len(question) / 16_000, len(other) / 16_000
    barge_at = 6.0  # the first answer is playing by then
    mic = concat(
        silence(500),
        question,
        silence((barge_at + 0.4 - 0.5 - q_len) * 1000),
        other,
        silence(3000),
    )
    mic_path = tmp_path / "mic.wav"
    mic_path.write_bytes(encode_wav(mic, 16_000))
    out_path = tmp_path / "out.wav"
    bus = EventBus()
    events = bus.subscribe()
    # What is measured is the answer's silence after the press: no listening beep in it.
    settings = dataclasses.replace(_settings(server), earcons=EarconSettings(listening=False))
    assistant = asyncio.create_task(run_assistant(settings, RunOptions(mic_path, out_path), bus))
    t0 = (await _next(events, "ready")).t
    await _hold(mock_pins, t0, 0.05, 0.6 + q_len)  # the beep, then the question at 0.5 s
    await _hold(mock_pins, t0, barge_at, barge_at + 0.4 + o_len + 0.1)
    await asyncio.wait_for(assistant, 60)

    seen = [e async for e in _all(events)]
    [barge] = [e for e in seen if e.kind == "barge_in"]
    assert barge.data["by"] == "button"
    assert [e.data["text"] for e in seen if e.kind == "transcript"] == [QUESTION, OTHER]
    # The Dify task of the interrupted answer was stopped with the same user.
    [stop] = server.state.records("completion-messages-stop")
    assert stop.details["user"] == Settings().assistant.user
    # What the speaker played: the first answer until the press, then silence
    # within a period or two, until the second answer.
    heard, rate = read_wav(out_path)
    edge = barge.t - t0
    loud = np.flatnonzero(np.abs(heard.astype(np.int32)) > 300) / rate
    before = loud[loud < edge]
    assert len(before) and edge - before[-1] < 0.3, "the first answer was playing"
    after_edge = loud[(loud >= edge) & (loud < edge + 1.0)]
    assert len(after_edge) == 0 or after_edge[-1] - edge < 0.06, "silent within 60 ms"
