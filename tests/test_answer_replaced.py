"""A moderation replacement (Dify `message_replace`) during an answer, over real HTTP.

With `tts = "dify-stream"` the answer's speech arrives inside the stream; when the answer
is replaced after that speech has started playing, the old speech must stop the way a
barge-in stops it (every stage cancelled, then the speaker flushed) and the replacement
must be said in full.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from audio_match import find
from audio_samples import speech_16k

from assistant.audio.endpointer import Utterance
from assistant.devserver import Fault, RunningDevServer, speech_for
from assistant.devserver.synth import encode_mp3
from assistant.events import EventBus
from assistant.providers.base import Delta, SpeechSource, Stages
from assistant.providers.dify import (
    DifyClient,
    DifyCompletion,
    DifySpeechToText,
    DifyTextToSpeech,
)
from assistant.settings import DifySettings, HttpSettings, Secret, Settings
from assistant.states import State, StateMachine
from assistant.turn import Turn
from hardware.wav_devices import WavFileSink, read_wav

QUESTION = "What is the weather like on Mars?"
OLD = "Here is a long answer that the moderation of this app will not let the user hear at all."
NEW = "I cannot talk about that."
HEARD_BEFORE_REPLACE_S = 0.6
RATE = 16_000


class RecordingSink(WavFileSink):
    """The WAV speaker, noting when it was flushed and every play after that."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, sample_rate=RATE, period_ms=20)
        self.flushes: list[int] = []
        """samples_written at each flush: where on the timeline the sound was cut."""
        self.first_play: float | None = None
        self.playing = asyncio.Event()
        self.played_after_flush: list[np.ndarray] = []

    async def play(self, samples: np.ndarray, timeout: float) -> None:
        if self.first_play is None:
            self.first_play = time.monotonic()
            self.playing.set()
        if self.flushes:
            self.played_after_flush.append(np.asarray(samples))
        await super().play(samples, timeout)

    def flush(self) -> None:
        super().flush()
        self.flushes.append(self.samples_written)


class ReplaceOnceHeard:
    """The real Dify completion, holding its `message_replace` back until the old answer
    has been heard for a while: the case where moderation strikes mid-speech."""

    def __init__(self, inner: DifyCompletion, sink: RecordingSink) -> None:
        self._inner = inner
        self._sink = sink

    async def stream(self, query: str) -> AsyncIterator[Delta]:
        async for delta in self._inner.stream(query):
            if delta.replace is not None:
                await asyncio.wait_for(self._sink.playing.wait(), 10)
                assert self._sink.first_play is not None
                heard_s = time.monotonic() - self._sink.first_play
                await asyncio.sleep(max(0.0, HEARD_BEFORE_REPLACE_S - heard_s))
            yield delta

    async def stop(self) -> None:
        await self._inner.stop()

    def reset_conversation(self) -> None:
        self._inner.reset_conversation()


def _sse(*events: dict[str, Any]) -> str:
    return "".join(f"data: {json.dumps(e)}\n\n" for e in events)


def _replaced_stream() -> str:
    common = {"task_id": "t", "message_id": "m", "created_at": 1}
    audio = encode_mp3(speech_for(OLD))
    pieces = [audio[i : i + 4000] for i in range(0, len(audio), 4000)]
    return _sse(
        {"event": "message", **common, "answer": OLD},
        *(
            {"event": "tts_message", **common, "audio": base64.b64encode(p).decode()}
            for p in pieces
        ),
        {"event": "message_replace", **common, "answer": NEW, "reason": "moderation"},
        {"event": "message_end", **common, "id": "m", "metadata": {}},
        {"event": "tts_message_end", **common, "audio": ""},
    )


async def test_replacement_after_in_stream_speech_is_said_after_cancel_then_flush(
    server: RunningDevServer, tmp_path: Path
) -> None:
    server.state.faults.add(
        Fault(
            "completion-messages",
            status=200,
            body=_replaced_stream(),
            content_type="text/event-stream",
        )
    )
    settings = Settings(dify=DifySettings(base_url=server.base_url, api_key=Secret("app-x")))
    client = DifyClient(settings.dify, HttpSettings(), user="tester")
    sink = RecordingSink(tmp_path / "out.wav")
    bus = EventBus()
    seen = bus.subscribe()
    states = StateMachine(bus, strict=True)
    states.to(State.LISTENING)
    stages = Stages(
        stt=DifySpeechToText(client),
        completion=ReplaceOnceHeard(DifyCompletion(client), sink),
        tts=DifyTextToSpeech(client),
        speech_source=SpeechSource.ANSWER_STREAM,
    )
    question = speech_16k(QUESTION)
    now = time.monotonic()
    utterance = Utterance(question, now - len(question) / RATE, now, now, 1500)
    await sink.start()
    try:
        turn = Turn(1, stages, sink, settings, bus, states.to)
        await asyncio.wait_for(turn.run(utterance), 30)
    finally:
        await sink.close()
        await client.aclose()

    events = []
    while (event := seen.get_nowait()) is not None:
        events.append(event)
    kinds = [e.kind for e in events]
    assert [e.data["text"] for e in events if e.kind == "answer_replaced"] == [NEW]
    assert [e.data["text"] for e in events if e.kind == "answer"] == [NEW]
    assert "error" not in kinds
    # The replacement was synthesised as text: the stream's audio is the old answer's.
    assert [r.details.get("text") for r in server.state.records("text-to-audio")] == [NEW]

    heard, rate = read_wav(tmp_path / "out.wav")
    # Silenced once, after the old speech had been heard, before the new one played.
    assert len(sink.flushes) == 1
    cut_s = sink.flushes[0] / rate
    old, new = speech_for(OLD), speech_for(NEW)
    start_old = find(heard, rate, old.samples[: old.sample_rate * 2 // 5], old.sample_rate)
    assert start_old.score > 0.85, start_old
    assert HEARD_BEFORE_REPLACE_S - 0.1 < cut_s - start_old.start_s < HEARD_BEFORE_REPLACE_S + 0.4
    # Cancel first, then flush: nothing of the old speech was queued after the flush;
    # what played after it is the replacement alone, whole.
    after = np.concatenate(sink.played_after_flush)
    assert len(after) / rate == pytest.approx(new.duration, abs=0.15)
    match = find(heard, rate, new.samples, new.sample_rate)
    assert match.score > 0.85, match
    assert match.start_s >= cut_s - 0.05
