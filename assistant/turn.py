"""One turn: transcribe the question → stream the answer → speak it.

The stages run concurrently: each piece of the answer goes to the speech output
(assistant.speech_out) as it arrives, which says each sentence the moment it is complete,
while the completion is still streaming.

A speculative turn (see assistant.speculation) runs behind a Gate: it starts at a
pause in the question, and until the end of the question is confirmed its events
and state changes are held, and it asks for no answer (or, with
`stt+completion`, plays none of it: its first sentences may be synthesised, but
the speaker waits).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from assistant.audio.endpointer import Utterance
from assistant.events import Answer, AnswerReplaced, EventBus, Info, Marks, Sentence, Transcript
from assistant.failures import service_name, stage_timeout
from assistant.marks import TurnMarks
from assistant.ports import CAPTURE_RATE, AudioSink
from assistant.providers.base import SpeechInput, Stages
from assistant.settings import Settings
from assistant.speech_out import SpeechOut
from assistant.speech_player import SpeechPlayer
from assistant.states import State
from assistant.text.sentences import SentenceChunker

if TYPE_CHECKING:
    from assistant.speculation import Gate

log = logging.getLogger(__name__)


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
                self._bus.publish(Info(turn=self.marks.turn, message="nothing was recognised"))
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
        self._bus.publish(Marks(turn=marks.turn, **marks.since_speech_end_ms(), **marks.counts))
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
        self._bus.publish(Transcript(turn=self.marks.turn, text=text))
        return text

    def interrupt(self) -> None:
        """Silence the answer at once (barge-in); the caller then cancels `run`."""
        if self._speech is not None:
            self._speech.interrupt()
        else:
            self._sink.flush()

    async def _answer(self, query: str) -> None:
        self._set_state(State.THINKING)
        speech = self._speech = self._speech_out()
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(speech.run())
                await self._stream_answer(query, speech)
        except BaseException:
            # Whatever ended the turn early (failure, barge-in, shutdown), the
            # service should stop generating: shielded so a cancel cannot skip it.
            await asyncio.shield(self._stages.completion.stop())
            raise

    async def _stream_answer(self, query: str, speech: SpeechOut) -> None:
        """Every piece of the answer to the speech output as it is written."""
        completion = self._stages.completion
        timeout_s = self._settings.http.completion_timeout_s
        async with stage_timeout(service_name(completion), "completion", timeout_s):
            async for delta in completion.stream(query):
                speech.take(delta)
        answer = speech.finish()
        self._bus.publish(Answer(turn=self.marks.turn, text=answer))

    def _speech_out(self) -> SpeechOut:
        turn = self.marks.turn
        http = self._settings.http

        def sentence(text: str) -> None:
            self.marks.mark("first_sentence")
            self._bus.publish(Sentence(turn=turn, text=text))

        return SpeechOut(
            self._stages,
            self._player,
            lambda: SentenceChunker.from_settings(self._settings.speech),
            stream_timeout_s=http.completion_timeout_s,
            tts_timeout_s=http.tts_timeout_s,
            on_text=lambda: self.marks.mark("first_token"),
            on_sentence=sentence,
            on_replaced=lambda text: self._bus.publish(AnswerReplaced(turn=turn, text=text)),
        )

    def _player(self) -> SpeechPlayer:
        return SpeechPlayer.for_settings(
            self._settings,
            self._stages.tts,
            self._sink,
            self.marks,
            on_first_audio=lambda: self._set_state(State.SPEAKING),
            hold=None if self._gate is None else self._gate.wait,
        )
