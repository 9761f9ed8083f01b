"""Wake word mode through real parts: espeak-ng speech played into the PulseAudio microphone
sink, PyAudio capturing it, the bundled dev server answering.

Nothing leaves the device until the word is heard: a question alone is ignored (no upload,
no request, nothing played); the word then a question is answered, and the word is not in
what was uploaded; the word alone goes back to waiting after `wake.listen_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator

import numpy as np
import pytest
import soxr
from audio_match import peak_correlation
from audio_samples import concat, silence, speech_16k, voiced_span
from pulse import PulseServer

from assistant.app import RunOptions, run_assistant
from assistant.devserver import RunningDevServer
from assistant.events import Event, EventBus, Subscription
from assistant.settings import (
    AssistantSettings,
    DifySettings,
    Secret,
    Settings,
    Trigger,
    WakeSettings,
)

pytestmark = pytest.mark.pulse

WAKE = "Okay Nabu"
QUESTION = "What is the weather like on Mars?"
LISTEN_S = 3.0
TURN_ENDPOINTS = ("audio-to-text", "completion-messages", "chat-messages", "text-to-audio")
"""What a question would cause (the app check at start reads `parameters` and `info`)."""


async def _until(events: Subscription, kind: str, timeout: float = 40, **match: object) -> Event:
    async with asyncio.timeout(timeout):
        while True:
            event = await events.get()
            if event.kind == kind and all(event.data.get(k) == v for k, v in match.items()):
                return event


@dataclasses.dataclass
class Assistant:
    events: Subscription
    seen: list[Event]

    def kinds(self, kind: str) -> list[Event]:
        return [e for e in self.seen if e.kind == kind]


def _turn_requests(server: RunningDevServer) -> list[object]:
    return [r for r in server.state.records() if r.endpoint in TURN_ENDPOINTS]


@contextlib.asynccontextmanager
async def _wake_word_assistant(
    server: RunningDevServer, sentences: int = 1
) -> AsyncIterator[Assistant]:
    server.state.options = dataclasses.replace(server.state.options, reply_sentences=sentences)
    settings = Settings(
        assistant=AssistantSettings(trigger=Trigger.WAKE_WORD),
        wake=WakeSettings(words=("okay_nabu",), listen_s=LISTEN_S),
        dify=DifySettings(base_url=server.base_url, api_key=Secret("app-x")),
    )
    bus = EventBus()
    seen: list[Event] = []
    bus.add_listener(seen.append)
    running = Assistant(bus.subscribe(5000), seen)
    task = asyncio.create_task(run_assistant(settings, RunOptions(), bus))
    try:
        await _until(running.events, "ready", 15)
        await asyncio.sleep(0.3)
        yield running
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _say(pulse: PulseServer, samples: np.ndarray) -> None:
    player = pulse.play_into_mic((samples, 16_000))
    await asyncio.to_thread(player.wait, 30)


async def test_a_question_needs_the_word_and_the_word_is_not_uploaded(
    pulse: PulseServer, server: RunningDevServer
) -> None:
    async with _wake_word_assistant(server) as assistant:
        await _say(pulse, concat(silence(300), speech_16k(QUESTION), silence(1500)))
        # Heard, but not addressed: nothing left the device, nothing was played.
        assert assistant.kinds("listening_started") == []
        assert assistant.kinds("speech_started") == []
        assert _turn_requests(server) == []
        assert {e.data["state"] for e in assistant.kinds("state")} <= {"idle"}

        word = speech_16k(WAKE, "en", 150)
        await _say(pulse, concat(silence(300), word, silence(400), speech_16k(QUESTION)))
        heard = await _until(assistant.events, "wake_word", 15)
        listening = await _until(assistant.events, "listening_started", 5)
        await _until(assistant.events, "marks", 40, turn=1)

    assert heard.data["word"] == "okay_nabu"
    assert listening.data == {"by": "wake_word", "window_s": LISTEN_S}
    assert [e.data["text"] for e in assistant.kinds("transcript")] == [QUESTION]
    [(upload, rate)] = list(server.state.uploads)
    upload16 = (soxr.resample(upload, rate, 16_000) * 32767).astype(np.int16)
    first, last = voiced_span(speech_16k(QUESTION))
    voiced = speech_16k(QUESTION)[first:last]
    assert peak_correlation(upload16, voiced) > 0.9
    # With its pre-roll: the first syllable is well inside the upload, not at its edge.
    onset = int(np.argmax(np.correlate(upload16.astype(np.float64), voiced[:8000], "valid")))
    assert onset >= 0.2 * 16_000
    assert peak_correlation(upload16, word) < 0.3
    [completion] = server.state.records("completion-messages")
    assert WAKE.lower() not in str(completion.details).lower()


async def test_the_word_alone_goes_back_to_waiting(
    pulse: PulseServer, server: RunningDevServer
) -> None:
    async with _wake_word_assistant(server) as assistant:
        await _say(pulse, concat(silence(300), speech_16k(WAKE, "en", 150)))
        await _until(assistant.events, "listening_started", 10, by="wake_word")
        listening = await _until(assistant.events, "state", 5, state="listening")
        idle = await _until(assistant.events, "state", LISTEN_S + 5, state="idle")
        # Waiting again: the word opens a window once more.
        await _say(pulse, concat(silence(300), speech_16k(WAKE, "en-us", 150)))
        await _until(assistant.events, "listening_started", 10, by="wake_word")

    assert idle.t - listening.t == pytest.approx(LISTEN_S, abs=0.5)
    assert _turn_requests(server) == []
    assert assistant.kinds("utterance") == []


async def test_the_word_over_an_answer_interrupts_it_with_echo_cancellation(
    pulse: PulseServer, server: RunningDevServer
) -> None:
    # A room: the answer comes back into the microphone 60 ms later, as loud as it played.
    echo = pulse.load_echo_path(60, gain_db=0.0)
    try:
        async with _wake_word_assistant(server, sentences=4) as assistant:
            ready = assistant.kinds("ready")[0]
            await _say(pulse, concat(silence(300), speech_16k(WAKE, "en", 150), silence(400)))
            await _say(pulse, speech_16k(QUESTION))
            await _until(assistant.events, "state", 30, state="speaking")
            await asyncio.sleep(2.5)
            mark = len(assistant.seen)
            await _say(pulse, speech_16k(WAKE, "en+m3", 150))
            barged = await _until(assistant.events, "barge_in", 10)
            await _until(assistant.events, "listening_started", 5, by="wake_word")
            # A pause after the word, as a person makes: what the room still carried of the
            # cut-off answer has died away before the question.
            await _say(pulse, concat(silence(1000), speech_16k("What time is it?", "en+m3")))
            await _until(assistant.events, "marks", 40, turn=2)
    finally:
        pulse.unload_echo_path(echo)

    assert ready.data["echo_cancellation"] is True
    assert barged.data == {"by": "wake_word"}
    after = assistant.seen[mark:]
    assert [e.data["by"] for e in after if e.kind == "listening_started"] == ["wake_word"]
    assert [e.data["text"] for e in assistant.kinds("transcript")][-1] == "What time is it?"
    # Only the word stopped the answer: the device's own voice never did.
    assert [e.data["by"] for e in assistant.kinds("barge_in")] == ["wake_word"]
