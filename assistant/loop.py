"""The voice loop: listens, runs turns, and survives their failures.

Its states, and which may follow which, are in assistant.states: every change goes
through the loop's StateMachine. Keeping the microphone and speaker open through
failures is `assistant.devices`; one turn is `assistant.turn`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import numpy as np

from assistant import events
from assistant.aio import cancel_and_wait
from assistant.audio.earcons import error_earcon
from assistant.audio.endpointer import (
    Endpointer,
    EndpointEvent,
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
    Utterance,
    UtteranceDropped,
    UtteranceEnded,
)
from assistant.audio.espeak import EspeakError, synthesize_async
from assistant.audio.resample import resample_once
from assistant.devices import AudioDevices, InputEnded
from assistant.events import EventBus
from assistant.failures import describe_failure
from assistant.ports import AudioBlock, AudioSink, AudioSource, Button, DeviceError
from assistant.providers.base import Stages
from assistant.settings import Settings, Speculate, Trigger
from assistant.speculation import Gate, Speculator
from assistant.spoken_errors import message_for
from assistant.states import State, StateMachine
from assistant.turn import Turn

log = logging.getLogger(__name__)


class VoiceLoop:
    def __init__(
        self,
        settings: Settings,
        source: AudioSource,
        sink: AudioSink,
        stages: Stages,
        bus: EventBus,
        button: Button | None = None,
        on_devices_open: Callable[[], None] | None = None,
    ) -> None:
        """`on_devices_open` runs each time both devices have (re)opened."""
        if settings.assistant.trigger is Trigger.PUSH_TO_TALK and button is None:
            raise ValueError("push_to_talk needs a talk button")
        self._settings = settings
        self._sink = sink
        self._stages = stages
        self._bus = bus
        self._button = button
        # In push-to-talk the VAD never opens an utterance: only the button does.
        self._endpointer = Endpointer(
            settings.vad,
            hands_free=settings.assistant.trigger is Trigger.HANDS_FREE,
            pause_events=settings.vad.speculate is not Speculate.OFF,
        )
        self._states = StateMachine(bus)
        self._set_state = self._states.to
        self._speculation = Speculator(settings.vad.speculate, bus, self._set_state)
        self._turns = 0
        self._input_ended = False
        self._pressed_at: float | None = None
        self._carry_over = False
        self._devices = AudioDevices(
            source, sink, bus, self._set_state, settings.audio.device_timeout_s, on_devices_open
        )

    @property
    def state(self) -> State:
        return self._states.state

    async def run(self) -> None:
        """Listen and answer until a finite microphone runs out (forever on a device)."""
        await self._devices.open()
        self._bus.publish(events.Ready(trigger=self._settings.assistant.trigger.value))
        try:
            while not self._input_ended:
                utterance = await self._listen()
                if utterance is not None:
                    await self._respond(utterance)
            self._set_state(State.IDLE)
        finally:
            await self._speculation.aclose()
            await self._devices.close()

    async def _read(self) -> AudioBlock:
        in_utterance = self._endpointer.in_utterance
        quiet = not in_utterance and self.state in (State.IDLE, State.LISTENING)
        try:
            return await self._devices.read(in_utterance=in_utterance, quiet=quiet)
        except InputEnded:
            self._input_ended = True
            raise

    # -- listening -------------------------------------------------------------

    async def _listen(self) -> Utterance | None:
        """The next utterance; None when there is none (input ended, device reopened)."""
        push_to_talk = self._settings.assistant.trigger is Trigger.PUSH_TO_TALK
        if self._carry_over:
            # A barge-in already opened the next utterance: keep what it holds.
            self._carry_over = False
            self._set_state(State.LISTENING)
        else:
            self._endpointer.reset()
            self._set_state(State.IDLE if push_to_talk else State.LISTENING)
        try:
            while True:
                block = await self._read()
                found = self._button_edges() if push_to_talk else []
                found[:0] = self._endpointer.process(block)
                for event in found:
                    if (utterance := self._endpointer_result(event)) is not None:
                        return utterance
        except InputEnded:
            for event in self._endpointer.flush(time.monotonic()):
                if (utterance := self._endpointer_result(event)) is not None:
                    return utterance
            return None
        except (DeviceError, TimeoutError) as exc:
            self._speculation.abandon("device")
            await self._devices.recover(exc, "the microphone")
            return None

    def _button_edges(self) -> list[EndpointEvent]:
        """Apply the talk button's edges since the last block.

        Edges are timestamped in gpiozero's thread, so handling them once per
        block (20 ms) still cuts the utterance at the true press and release.
        A long press with no speech in it starts a new conversation.
        """
        assert self._button is not None
        ended_by_release: list[EndpointEvent] = []
        for edge in self._button.pending_events():
            if edge.kind == "pressed" and not self._endpointer.in_utterance:
                self._pressed_at = edge.t
                self._endpointer.begin_manual(edge.t)
                self._set_state(State.LISTENING)
            elif edge.kind == "released":
                ended = self._endpointer.end_manual(edge.t)
                held = edge.t - self._pressed_at if self._pressed_at is not None else 0.0
                self._pressed_at = None
                if (
                    isinstance(ended, UtteranceDropped)
                    and held >= self._settings.button.long_press_s
                ):
                    self._stages.completion.reset_conversation()
                    self._bus.publish(events.ConversationReset(reason="long_press"))
                if ended is not None:
                    ended_by_release.append(ended)
        return ended_by_release

    def _endpointer_result(self, event: EndpointEvent) -> Utterance | None:
        if isinstance(event, SpeechStarted):
            self._bus.publish(events.SpeechStarted(t_speech=event.t))
        elif isinstance(event, SpeechPaused):
            self._speculation.start(event.utterance, self._speculative_turn)
        elif isinstance(event, SpeechResumed):
            self._speculation.discard("resumed")
        elif isinstance(event, UtteranceDropped):
            self._speculation.abandon("dropped")
            self._bus.publish(
                events.UtteranceDropped(reason=event.reason, speech_ms=event.speech_ms)
            )
            if self._settings.assistant.trigger is Trigger.PUSH_TO_TALK:
                self._set_state(State.IDLE)
        elif isinstance(event, UtteranceEnded):
            return event.utterance
        return None

    # -- answering -------------------------------------------------------------

    async def _respond(self, utterance: Utterance) -> None:
        self._turns += 1
        self._states.turn = self._turns
        self._bus.publish(
            events.UtteranceCaptured(
                turn=self._turns,
                duration_s=round(utterance.duration, 3),
                speech_ms=utterance.speech_ms,
            )
        )
        if (speculation := self._speculation.adopt(utterance)) is not None:
            # Started at a pause that turned out to be the end: already under way.
            turn, answering = speculation.turn, speculation.task
        else:
            turn = self._turn(self._turns)
            turn.marks.counts.update(self._speculation.take_counts())
            answering = asyncio.create_task(turn.run(utterance))
        # The microphone keeps running during the answer: its audio feeds the
        # pre-roll (or the voice barge-in), so a live device never overflows and
        # a file keeps its pace.
        listening = asyncio.create_task(self._listen_during_answer())
        pressing = asyncio.create_task(self._press_during_answer())
        try:
            interrupted = await self._first_interruption(answering, listening, pressing)
            if interrupted:
                # Silence first: heard within one device period, before the
                # cancelled stages (and the Dify stop call) have even unwound.
                turn.interrupt()
                await cancel_and_wait(answering)
                self._carry_over = True
            elif (failure := answering.exception()) is not None:
                await self._report_failure(failure)
        finally:
            for task in (answering, listening, pressing):
                await cancel_and_wait(task)

    def _turn(self, number: int, gate: Gate | None = None) -> Turn:
        return Turn(
            number, self._stages, self._sink, self._settings, self._bus, self._set_state, gate
        )

    def _speculative_turn(self, gate: Gate) -> Turn:
        """The next turn, started early behind `gate` (it keeps the number if used)."""
        return self._turn(self._turns + 1, gate)

    async def _first_interruption(
        self, answering: asyncio.Task[None], *watchers: asyncio.Task[bool]
    ) -> bool:
        """Wait for the answer to end; True if a barge-in came first."""
        pending: set[asyncio.Task[object]] = {answering, *watchers}
        while answering in pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not answering and not task.cancelled() and task.result():
                    return True
        return False

    async def _listen_during_answer(self) -> bool:
        """Feed the endpointer while answering; True when the user starts speaking
        (only if barge-in by voice is on)."""
        by_voice = self._settings.assistant.barge_in_voice and self._button is None
        try:
            while True:
                block = await self._read()
                heard = self._endpointer.process(block)
                if by_voice and any(isinstance(e, SpeechStarted) for e in heard):
                    self._bus.publish(events.BargeIn(by="voice", t=heard[0].t))
                    return True
        except InputEnded:
            return False
        except (DeviceError, TimeoutError) as exc:
            # The answer goes on; the next listen meets the failure and reopens.
            log.warning("microphone failed during an answer: %s", exc or type(exc).__name__)
            return False

    async def _press_during_answer(self) -> bool:
        """True at a press of the talk button: the new question starts right there."""
        if self._button is None:
            return False
        while True:
            try:
                edge = await self._button.next_event(timeout=3600)
            except TimeoutError:
                continue
            if edge.kind == "pressed":
                self._pressed_at = edge.t
                self._endpointer.begin_manual(edge.t)
                self._bus.publish(events.BargeIn(by="button", t=edge.t))
                return True

    async def _report_failure(self, exc: BaseException) -> None:
        failure = describe_failure(exc)
        self._set_state(State.ERROR)
        spoken = message_for(failure)
        self._bus.publish(events.Error(turn=self._turns, spoken=spoken, **failure))
        log.error(
            "turn %d failed in %s: %s: %s",
            self._turns,
            failure["stage"],
            failure["code"],
            failure["message"],
        )
        self._sink.flush()
        try:
            await self._sink.play(
                await self._offline_voice(spoken), timeout=self._settings.audio.device_timeout_s
            )
            await self._sink.drain(timeout=self._settings.audio.playback_buffer_s + 5.0)
        except (DeviceError, TimeoutError) as device_exc:
            if failure["stage"] == "device":
                self._devices.outage_announced(device_exc)
            await self._devices.recover(device_exc, "the speaker, saying an error,")

    async def _offline_voice(self, sentence: str) -> np.ndarray:
        """The sentence in the device's own espeak-ng voice; the error tone if even that fails."""
        rate = self._sink.sample_rate
        try:
            speech = await synthesize_async(sentence, voice=self._settings.assistant.language)
        except EspeakError as exc:
            log.error("offline voice unavailable (%s); playing the error tone", exc)
            return error_earcon(rate)
        return resample_once(speech.samples, speech.sample_rate, rate)
