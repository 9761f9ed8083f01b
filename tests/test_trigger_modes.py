"""Toggle mode and the follow-up window, through the whole loop in file mode.

gpiozero's MockFactory taps the talk button; the microphone is a WAV file played in real
time, the speaker a WAV file on the same timeline; the dev server answers over real HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from pathlib import Path
from typing import Any

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
    Secret,
    Settings,
    Trigger,
)
from bench.soak import ScriptedMic
from hardware.wav_devices import read_wav

QUESTION = "What is the weather like on Mars?"
OTHER = "Tell me a joke."
PIN = 17


def _settings(server: RunningDevServer, trigger: Trigger, **assistant: Any) -> Settings:
    return Settings(
        assistant=AssistantSettings(trigger=trigger, **assistant),
        dify=DifySettings(base_url=server.base_url, api_key=Secret("app-x")),
    )


def _mic(tmp_path: Path, *parts: np.ndarray) -> Path:
    path = tmp_path / "mic.wav"
    path.write_bytes(encode_wav(concat(*parts), 16_000))
    return path


async def _tap(pins: MockFactory, t0: float, at_s: float) -> None:
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, t0 + at_s - loop.time()))
    pins.pin(PIN).drive_low()
    await asyncio.sleep(0.08)
    pins.pin(PIN).drive_high()


async def _run(
    settings: Settings, mic: Path, tmp_path: Path
) -> tuple[asyncio.Task[None], Subscription, float]:
    bus = EventBus()
    events = bus.subscribe(5000)
    options = RunOptions(mic, tmp_path / "out.wav")
    assistant = asyncio.create_task(run_assistant(settings, options, bus))
    async with asyncio.timeout(15):
        while (event := await events.get()).kind != "ready":
            pass
    return assistant, events, event.t


def _drain(events: Subscription) -> list[Event]:
    out = []
    while (event := events.get_nowait()) is not None:
        out.append(event)
    return out


def _states(seen: list[Event]) -> list[str]:
    return [e.data["state"] for e in seen if e.kind == "state"]


async def test_toggle_a_tap_listens_and_the_end_of_speech_ends_the_question(
    server: RunningDevServer, mock_pins: MockFactory, tmp_path: Path
) -> None:
    server.state.set_latency(first_token_ms=30, tokens_per_second=200)
    server.state.options = dataclasses.replace(server.state.options, reply_sentences=1)
    other, question = speech_16k(OTHER), speech_16k(QUESTION)
    # OTHER before any tap: never heard. A tap at 3.0 s, the question after the beep.
    before_tap_ms = 3000 - 300 - len(other) / 16
    mic = _mic(tmp_path, silence(300), other, silence(before_tap_ms), silence(600), question,
               silence(6000))  # fmt: skip
    assistant, events, t0 = await _run(_settings(server, Trigger.TOGGLE), mic, tmp_path)
    await _tap(mock_pins, t0, 3.0)
    await asyncio.wait_for(assistant, 60)

    seen = _drain(events)
    [started] = [e for e in seen if e.kind == "listening_started"]
    assert started.data == {"by": "button", "window_s": 8.0}
    assert [e.data["text"] for e in seen if e.kind == "transcript"] == [QUESTION]
    assert len(server.state.records("audio-to-text")) == 1
    assert _states(seen)[:4] == ["listening", "transcribing", "thinking", "speaking"]
    assert _states(seen)[-1] == "idle"
    # The listening earcon was heard right after the tap, before the answer.
    heard, rate = read_wav(tmp_path / "out.wav")
    tap = started.t - t0
    beep = np.abs(heard[int(tap * rate) : int((tap + 0.3) * rate)].astype(np.int32))
    assert beep.max() > 1000


async def test_toggle_a_second_tap_ends_the_question_before_the_hangover(
    server: RunningDevServer, mock_pins: MockFactory, tmp_path: Path
) -> None:
    server.state.options = dataclasses.replace(server.state.options, reply_sentences=1)
    question = speech_16k(QUESTION)
    q_end = 1.0 + len(question) / 16_000
    mic = _mic(tmp_path, silence(1000), question, silence(6000))
    settings = _settings(server, Trigger.TOGGLE)
    settings = dataclasses.replace(
        settings, vad=dataclasses.replace(settings.vad, hangover_ms=2000, speculate="off")
    )
    assistant, events, t0 = await _run(settings, mic, tmp_path)
    await _tap(mock_pins, t0, 0.3)
    await _tap(mock_pins, t0, q_end + 0.15)
    await asyncio.wait_for(assistant, 60)

    seen = _drain(events)
    assert [e.data["text"] for e in seen if e.kind == "transcript"] == [QUESTION]
    [utterance] = [e for e in seen if e.kind == "utterance"]
    # Ended by the tap, well before the 2 s hangover would have.
    assert utterance.t - t0 < q_end + 0.6


async def test_toggle_without_speech_the_window_closes_and_later_speech_is_ignored(
    server: RunningDevServer, mock_pins: MockFactory, tmp_path: Path
) -> None:
    question = speech_16k(QUESTION)
    mic = _mic(tmp_path, silence(4500), question, silence(1500))
    settings = _settings(server, Trigger.TOGGLE, listen_timeout_s=2.0)
    assistant, events, t0 = await _run(settings, mic, tmp_path)
    await _tap(mock_pins, t0, 0.5)
    await asyncio.wait_for(assistant, 30)

    seen = _drain(events)
    assert server.state.records("audio-to-text") == []
    assert _states(seen) == ["listening", "idle"]
    closed = next(e for e in seen if e.kind == "state" and e.data["state"] == "idle")
    assert closed.t - t0 == pytest.approx(2.5, abs=0.3)


async def test_toggle_a_tap_during_the_answer_interrupts_it_and_listens(
    server: RunningDevServer, mock_pins: MockFactory, tmp_path: Path
) -> None:
    server.state.set_latency(first_token_ms=30, tokens_per_second=200)
    question, other = speech_16k(QUESTION), speech_16k(OTHER)
    barge_at = 6.0
    gap_ms = (barge_at + 0.6 - 0.8) * 1000 - len(question) / 16
    mic = _mic(tmp_path, silence(800), question, silence(gap_ms), other, silence(5000))
    assistant, events, t0 = await _run(_settings(server, Trigger.TOGGLE), mic, tmp_path)
    await _tap(mock_pins, t0, 0.2)
    await _tap(mock_pins, t0, barge_at)
    await asyncio.wait_for(assistant, 60)

    seen = _drain(events)
    [barge] = [e for e in seen if e.kind == "barge_in"]
    assert barge.data["by"] == "button"
    assert [e.data["text"] for e in seen if e.kind == "transcript"] == [QUESTION, OTHER]
    assert [e.data["by"] for e in seen if e.kind == "listening_started"] == ["button", "button"]
    assert len(server.state.records("completion-messages-stop")) == 1


async def _next(events: Subscription, kind: str, seen: list[Event], **match: Any) -> Event:
    async with asyncio.timeout(40):
        while True:
            event = await events.get()
            seen.append(event)
            if event.kind == kind and all(event.data.get(k) == v for k, v in match.items()):
                return event


@pytest.mark.parametrize("trigger", [Trigger.PUSH_TO_TALK, Trigger.TOGGLE, Trigger.HANDS_FREE])
async def test_follow_up_window_takes_a_question_without_a_press(
    server: RunningDevServer, mock_pins: MockFactory, tmp_path: Path, trigger: Trigger
) -> None:
    server.state.set_latency(first_token_ms=30, tokens_per_second=200)
    server.state.options = dataclasses.replace(server.state.options, reply_sentences=1)
    question, other = speech_16k(QUESTION), speech_16k(OTHER)
    settings = _settings(server, trigger, follow_up_s=4.0)
    settings = dataclasses.replace(settings, dify=dataclasses.replace(settings.dify, app="chat"))
    mic = ScriptedMic(seed=3)
    bus = EventBus()
    events = bus.subscribe(5000)
    options = RunOptions(source=mic, speaker_wav=tmp_path / "out.wav")
    assistant = asyncio.create_task(run_assistant(settings, options, bus))
    seen: list[Event] = []
    try:
        await _next(events, "ready", seen)
        await asyncio.sleep(0.5)
        if trigger is Trigger.HANDS_FREE:
            mic.say(question)
        else:
            mock_pins.pin(PIN).drive_low()
            await asyncio.sleep(0.3)
            if trigger is Trigger.TOGGLE:
                mock_pins.pin(PIN).drive_high()
            mic.say(question)
            await asyncio.sleep(mic.said_until - time.monotonic() + 0.1)
            mock_pins.pin(PIN).drive_high()
        # The window opens once the answer has played, not when it was written.
        await _next(events, "marks", seen, turn=1)
        opened = await _next(events, "listening_started", seen, by="follow_up")
        assert opened.data["window_s"] == 4.0
        await asyncio.sleep(0.3)  # after the beep, as a person would
        mic.say(other)
        await _next(events, "marks", seen, turn=2)
    finally:
        assistant.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await assistant

    assert [e.data["text"] for e in seen if e.kind == "transcript"] == [QUESTION, OTHER]
    chats = server.state.records("chat-messages")
    assert len(chats) == 2
    assert chats[0].details["conversation_id"] == chats[1].details["conversation_id"]
    assert chats[1].details["answer"].endswith("This is turn 2 of our conversation.")


async def test_follow_up_window_closes_after_silence(
    server: RunningDevServer, mock_pins: MockFactory, tmp_path: Path
) -> None:
    server.state.set_latency(first_token_ms=30, tokens_per_second=200)
    server.state.options = dataclasses.replace(server.state.options, reply_sentences=1)
    question = speech_16k(QUESTION)
    q_len = len(question) / 16_000
    mic = _mic(tmp_path, silence(700), question, silence(14_000))
    settings = _settings(server, Trigger.PUSH_TO_TALK, follow_up_s=2.0)
    assistant, events, t0 = await _run(settings, mic, tmp_path)
    loop = asyncio.get_running_loop()
    await asyncio.sleep(t0 + 0.3 - loop.time())
    mock_pins.pin(PIN).drive_low()
    await asyncio.sleep(t0 + 0.8 + q_len - loop.time())
    mock_pins.pin(PIN).drive_high()
    await asyncio.wait_for(assistant, 60)

    seen = _drain(events)
    [opened] = [e for e in seen if e.kind == "listening_started" and e.data["by"] == "follow_up"]
    after = [e for e in seen if e.t >= opened.t and e.kind == "state"]
    assert [e.data["state"] for e in after] == ["listening", "idle"]
    assert after[1].t - opened.t == pytest.approx(2.0, abs=0.3)
    assert len(server.state.records("audio-to-text")) == 1
