"""One turn: utterance → transcript → streamed answer → spoken sentences.

The stages run concurrently: sentences go to speech the moment the chunker
completes them, while the completion is still streaming.

A speculative turn (see assistant.speculation) runs behind a Gate: it starts at a
pause in the question, and until the end of the question is confirmed its events
and state changes are held, and it asks for no answer (or, with
`stt+completion`, plays none of it: its first sentences may be synthesised, but
the speaker waits).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from assistant.audio.endpointer import Utterance
from assistant.events import EventBus
from assistant.failures import service_name, stage_timeout
from assistant.marks import TurnMarks
from assistant.ports import CAPTURE_RATE, AudioSink
from assistant.providers.base import (
    AudioChunk,
    ServiceError,
    SpeechInput,
    SpeechSource,
    Stages,
)
from assistant.settings import Settings
from assistant.speech_out import SpeechOut
from assistant.states import State
from assistant.text.sentences import SentenceChunker

if TYPE_CHECKING:
    from assistant.speculation import Gate

log = logging.getLogger(__name__)


class _AudioFeed:
    """Audio pieces pushed from the answer stream, pulled by the player."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[AudioChunk | None] = asyncio.Queue()
        self.closed = False

    def put(self, chunk: AudioChunk) -> None:
        if not self.closed:
            self._queue.put_nowait(chunk)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._queue.put_nowait(None)

    async def chunks(self) -> AsyncIterator[AudioChunk]:
        while (chunk := await self._queue.get()) is not None:
            yield chunk


class Turn:
    def __init__(
        self,
        number: int,
        stages: Stages,
        sink: AudioSink,
        settings: Settings,
        bus: EventBus,
        set_state: Callable[[State], None],
        gate: Gate | None = None,
    ) -> None:
        """With a `gate` the turn is speculative: `bus` and `set_state` are reached
        through it, and it waits for the gate before answering (or before speaking)."""
        self.marks = TurnMarks(number)
        self.transcript: str | None = None
        """What speech-to-text heard, once it has."""
        self._speech: SpeechOut | None = None
        self._stages = stages
        self._sink = sink
        self._settings = settings
        self._gate = gate
        self._bus: EventBus | Gate = bus if gate is None else gate
        self._set_state = set_state if gate is None else gate.set_state

    async def run(self, utterance: Utterance) -> None:
        self.marks.mark("speech_end", utterance.t_speech_end)
        # A speculative turn starts at a pause: its endpoint is marked on confirmation.
        self.marks.mark("endpoint" if self._gate is None else "speculation", utterance.t_detected)
        try:
            text = await self._transcribe(utterance)
            if not text:
                self._bus.publish("info", turn=self.marks.turn, message="nothing was recognised")
                return
            if self._gate is not None and not self._gate.answer_early:
                await self._gate.wait()
            await self._answer(text)
        finally:
            if self._gate is None:
                self._report_marks()
            else:
                # Held until confirmation, and built then: it adds the endpoint and counts.
                self._gate.call(self._report_marks)

    def _report_marks(self) -> None:
        marks = self.marks
        self._bus.publish("marks", turn=marks.turn, **marks.since_speech_end_ms(), **marks.counts)
        log.info(marks.summary())

    async def _transcribe(self, utterance: Utterance) -> str:
        self._set_state(State.TRANSCRIBING)
        self.marks.mark("upload_start")
        stt = self._stages.stt
        async with stage_timeout(service_name(stt), "stt", self._settings.http.stt_timeout_s):
            text = await stt.transcribe(SpeechInput(utterance.samples, CAPTURE_RATE))
        self.marks.mark("upload_end")
        self.marks.mark("transcript")
        self.transcript = text
        self._bus.publish("transcript", turn=self.marks.turn, text=text)
        return text

    def interrupt(self) -> None:
        """Silence the answer at once (barge-in); the caller then cancels `run`."""
        if self._speech is not None:
            self._speech.interrupt()
        else:
            self._sink.flush()

    def _speech_out(self) -> SpeechOut:
        audio = self._settings.audio
        self._speech = SpeechOut(
            self._stages.tts,
            self._sink,
            self.marks,
            prefetch=self._settings.speech.tts_prefetch,
            tts_timeout_s=self._settings.http.tts_timeout_s,
            play_timeout_s=audio.device_timeout_s,
            drain_timeout_s=audio.playback_buffer_s + audio.device_timeout_s,
            on_first_audio=lambda: self._set_state(State.SPEAKING),
            hold=None if self._gate is None else self._gate.wait,
        )
        return self._speech

    async def _answer(self, query: str) -> None:
        self._set_state(State.THINKING)
        try:
            async with asyncio.TaskGroup() as group:
                await self._write(query, group)
        except BaseException:
            # Whatever ended the turn early (failure, barge-in, shutdown), the
            # service should stop generating: shielded so a cancel cannot skip it.
            await asyncio.shield(self._stages.completion.stop())
            raise

    async def _write(self, query: str, group: asyncio.TaskGroup) -> None:
        source = self._stages.speech_source
        speech = self._speech_out()
        speaking = group.create_task(speech.run())
        chunker = SentenceChunker.from_settings(self._settings.speech)
        answer = ""
        held: list[str] = []  # sentences not sent to TTS (the answer brings its own speech)
        feed: _AudioFeed | None = None
        message_id: str | None = None
        completion = self._stages.completion
        timeout_s = self._settings.http.completion_timeout_s
        async with stage_timeout(service_name(completion), "completion", timeout_s):
            async for delta in completion.stream(query):
                message_id = delta.message_id or message_id
                if delta.audio or delta.audio_done:
                    if source is SpeechSource.ANSWER_STREAM:
                        # Only audio opens the feed: a stream whose speech ends (or
                        # fails) before any arrived leaves the sentences to be said.
                        if feed is None and delta.audio:
                            feed = _AudioFeed()
                            speech.play_stream(feed.chunks(), service_name(completion), timeout_s)
                        if feed is not None and delta.audio:
                            feed.put(AudioChunk(delta.audio, delta.audio_type or "audio/mpeg"))
                        if feed is not None and delta.audio_done:
                            feed.close()
                    continue
                self.marks.mark("first_token")
                if delta.replace is not None:
                    # Moderation replaced the answer: stop saying the old one
                    # at once and say the replacement instead.
                    speaking.cancel()
                    self._sink.flush()
                    answer, held = delta.replace, []
                    self._bus.publish("answer_replaced", turn=self.marks.turn, text=answer)
                    speech = self._speech_out()
                    speaking = group.create_task(speech.run())
                    chunker = SentenceChunker.from_settings(self._settings.speech)
                    for sentence in chunker.feed(answer):
                        self._sentence(speech, sentence, held)
                    continue
                answer += delta.text
                for sentence in chunker.feed(delta.text):
                    self._sentence(speech, sentence, held)
        for sentence in chunker.flush():
            self._sentence(speech, sentence, held)
        self._bus.publish("answer", turn=self.marks.turn, text=answer)
        if feed is not None:
            feed.close()
        elif source is SpeechSource.MESSAGE_ID and message_id and answer:
            speech.play_stream(
                self._message_audio(message_id, answer),
                service_name(completion),
                self._settings.http.tts_timeout_s,
            )
        else:
            # No speech came with the answer (the app's auto-play is off, or no
            # message id): say it sentence by sentence after all.
            for sentence in held:
                speech.say(sentence)
        speech.finish()

    def _sentence(self, speech: SpeechOut, sentence: str, held: list[str]) -> None:
        self.marks.mark("first_sentence")
        self._bus.publish("sentence", turn=self.marks.turn, text=sentence)
        if self._stages.speech_source is SpeechSource.SENTENCES:
            speech.say(sentence)
        else:
            held.append(sentence)

    async def _message_audio(self, message_id: str, answer: str) -> AsyncIterator[AudioChunk]:
        """Dify speaks its stored answer; an unknown id (`200 null`) falls back to the text."""
        assert self._stages.message_tts is not None
        try:
            async for chunk in self._stages.message_tts.stream(answer, message_id=message_id):
                yield chunk
            return
        except ServiceError as exc:
            if exc.code != "no_audio":
                raise
            log.warning("Dify has no audio for message %s; speaking the text", message_id)
        async for chunk in self._stages.tts.stream(answer):
            yield chunk
