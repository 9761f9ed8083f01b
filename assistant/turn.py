"""One turn: utterance → transcript → streamed answer → spoken sentences.

The stages run concurrently: sentences go to speech the moment the chunker
completes them, while the completion is still streaming.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from assistant.audio.endpointer import Utterance
from assistant.events import EventBus
from assistant.failures import service_name, stage_timeout
from assistant.marks import TurnMarks
from assistant.providers.base import Completion, SpeechInput, SpeechToText, TextToSpeech
from assistant.settings import Settings
from assistant.speech_out import SpeechOut
from assistant.states import State
from assistant.text.sentences import SentenceChunker
from hardware.interfaces import CAPTURE_RATE, AudioSink

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Stages:
    stt: SpeechToText
    completion: Completion
    tts: TextToSpeech


class Turn:
    def __init__(
        self,
        number: int,
        stages: Stages,
        sink: AudioSink,
        settings: Settings,
        bus: EventBus,
        set_state: Callable[[State], None],
    ) -> None:
        self.marks = TurnMarks(number)
        self._stages = stages
        self._sink = sink
        self._settings = settings
        self._bus = bus
        self._set_state = set_state

    async def run(self, utterance: Utterance) -> None:
        self.marks.mark("speech_end", utterance.t_speech_end)
        self.marks.mark("endpoint", utterance.t_detected)
        try:
            text = await self._transcribe(utterance)
            if not text:
                self._bus.publish("info", turn=self.marks.turn, message="nothing was recognised")
                return
            await self._answer(text)
        finally:
            self._bus.publish("marks", turn=self.marks.turn, **self.marks.since_speech_end_ms())
            log.info(self.marks.summary())

    async def _transcribe(self, utterance: Utterance) -> str:
        self._set_state(State.TRANSCRIBING)
        self.marks.mark("upload_start")
        stt = self._stages.stt
        async with stage_timeout(service_name(stt), "stt", self._settings.http.stt_timeout_s):
            text = await stt.transcribe(SpeechInput(utterance.samples, CAPTURE_RATE))
        self.marks.mark("upload_end")
        self.marks.mark("transcript")
        self._bus.publish("transcript", turn=self.marks.turn, text=text)
        return text

    def _speech_out(self) -> SpeechOut:
        audio = self._settings.audio
        return SpeechOut(
            self._stages.tts,
            self._sink,
            self.marks,
            prefetch=self._settings.speech.tts_prefetch,
            tts_timeout_s=self._settings.http.tts_timeout_s,
            play_timeout_s=audio.device_timeout_s,
            drain_timeout_s=audio.playback_buffer_s + audio.device_timeout_s,
            on_first_audio=lambda: self._set_state(State.SPEAKING),
        )

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
        speech = self._speech_out()
        speaking = group.create_task(speech.run())
        chunker = SentenceChunker.from_settings(self._settings.speech)
        answer = ""
        completion = self._stages.completion
        async with stage_timeout(
            service_name(completion), "completion", self._settings.http.completion_timeout_s
        ):
            async for delta in completion.stream(query):
                self.marks.mark("first_token")
                if delta.replace is not None:
                    # Moderation replaced the answer: stop saying the old one
                    # at once and say the replacement instead.
                    speaking.cancel()
                    self._sink.flush()
                    answer = delta.replace
                    self._bus.publish("answer_replaced", turn=self.marks.turn, text=answer)
                    speech = self._speech_out()
                    speaking = group.create_task(speech.run())
                    chunker = SentenceChunker.from_settings(self._settings.speech)
                    for sentence in chunker.feed(answer):
                        self._say(speech, sentence)
                    continue
                answer += delta.text
                for sentence in chunker.feed(delta.text):
                    self._say(speech, sentence)
        for sentence in chunker.flush():
            self._say(speech, sentence)
        speech.finish()
        self._bus.publish("answer", turn=self.marks.turn, text=answer)

    def _say(self, speech: SpeechOut, sentence: str) -> None:
        self.marks.mark("first_sentence")
        self._bus.publish("sentence", turn=self.marks.turn, text=sentence)
        speech.say(sentence)
