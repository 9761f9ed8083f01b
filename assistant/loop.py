"""The voice loop: listens, runs turns, and survives their failures.

Its states, and which may follow which, are in assistant.states: every change goes
through the loop's StateMachine. How a question starts and ends in each trigger mode is
`assistant.trigger`; keeping the microphone and speaker open through failures is
`assistant.devices`; one turn is `assistant.turn`. Everything the device plays goes
through one output sink (volume, pause, and the timeline that keeps the device's own
sounds out of what it hears when half-duplex); with the echo canceller
(`assistant.audio.echo_canceller`, fed what the speaker actually played) the device hears
the user over itself, and speech over an answer is `assistant.voice_barge_in`'s to judge.
In wake word mode `assistant.wake_word` listens for the word while the loop waits.
Earcons follow the events (`assistant.earcon_player`). Buttons and
other outside controls call the `Controls` methods (assistant.controls); the kiosk page's
talk button is a second talk button (assistant.screen_button), press-and-hold in every
mode, and its `say` command queues announcements (assistant.announcement) that play
between turns, or cut the answer off when asked to.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from assistant import events
from assistant.aio import cancel_and_wait
from assistant.announcement import Announcement, Announcements
from assistant.audio.earcons import Earcon, make_earcon
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
from assistant.audio.far_end import FarEnd
from assistant.audio.output_sink import OutputSink
from assistant.audio.resample import resample_once
from assistant.audio.self_sound import PlaybackTimeline, SelfSoundGate
from assistant.devices import AudioDevices, InputEnded
from assistant.earcon_player import EarconPlayer
from assistant.events import EventBus
from assistant.failures import describe_failure
from assistant.ports import (
    AudioBlock,
    AudioSink,
    AudioSource,
    Button,
    ButtonEvent,
    DeviceError,
    Monitored,
)
from assistant.providers.base import Stages
from assistant.screen_button import ScreenButton
from assistant.settings import EchoMode, Settings, Speculate, Trigger
from assistant.speculation import Gate, Speculator
from assistant.spoken_errors import message_for
from assistant.states import State, StateMachine
from assistant.trigger import TriggerPolicy
from assistant.turn import Turn
from assistant.voice_barge_in import VoiceBargeIn
from assistant.volume import Volume

if TYPE_CHECKING:
    from assistant.audio.echo_canceller import EchoCanceller
    from assistant.wake_word import WakeWordDetector, WakeWordHeard

log = logging.getLogger(__name__)

BARGE_IN = "barge_in"
WAKE_WORD = "wake_word"
CANCEL = "cancel"
SCREEN = "screen"
"""How the kiosk page's talk button is named in events."""
ERROR_TONE_GAP_S = 0.15
"""Silence between the error tones and the spoken explanation."""


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
        volume: Volume | None = None,
    ) -> None:
        """`on_devices_open` runs each time both devices have (re)opened; `volume` is the
        output level (kept in a state file by the wiring; a fresh one otherwise)."""
        trigger = settings.assistant.trigger
        if trigger.uses_button and button is None:
            raise ValueError(f"{trigger} needs a talk button")
        self._settings = settings
        self._stages = stages
        self._bus = bus
        self._button = button
        v = settings.volume
        self._volume = volume or Volume(
            default_db=v.default_db, step_db=v.step_db, min_db=v.min_db, max_db=v.max_db, path=None
        )
        timeline = PlaybackTimeline()
        self._sink = OutputSink(sink, self._volume, timeline)
        self._self_sound = SelfSoundGate(timeline, settings.audio.echo_tail_ms / 1000)
        self._earcons = EarconPlayer(self._sink, settings.earcons)
        bus.add_listener(self._earcons.on_event)
        self._endpointer = Endpointer(
            settings.vad,
            hands_free=trigger is Trigger.HANDS_FREE,
            pause_events=settings.vad.speculate is not Speculate.OFF,
        )
        self._trigger = TriggerPolicy(
            trigger,
            self._endpointer,
            listen_timeout_s=settings.assistant.listen_timeout_s,
            long_press_s=settings.button.long_press_s,
            publish=bus.publish,
            reset_conversation=stages.completion.reset_conversation,
        )
        self._canceller = _echo_canceller(settings, sink)
        if self._canceller is not None:
            self._sink.on_flush = self._canceller.far_end.flushed
        echo_barge_in = self._canceller is not None and settings.echo.barge_in
        # Voice barge-in listens to the answer's time; without echo cancellation it
        # would hear the answer itself, so it is off then unless asked for.
        self._by_voice = trigger is Trigger.HANDS_FREE and (
            settings.assistant.barge_in_voice or echo_barge_in
        )
        self._by_wake_word = trigger is Trigger.WAKE_WORD and echo_barge_in
        self._woken_at: float | None = None
        """The wake word interrupted the answer then: the next question's window opens."""
        self._states = StateMachine(bus)
        self._set_state = self._states.to
        self._speculation = Speculator(settings.vad.speculate, bus, self._set_state)
        self._turns = 0
        self._input_ended = False
        self._carry_over = False
        self._follow_up = False
        self._muted = False
        self._cancelled = asyncio.Event()
        self._answering: Turn | Announcement | None = None
        self._screen = ScreenButton()
        self._wake = _wake_word_detector(settings) if trigger is Trigger.WAKE_WORD else None
        self._wake_fresh = False
        """Whether the detector has heard every block since it was last reset."""
        self._announcements = Announcements()

        def devices_opened() -> None:
            if self._canceller is not None:
                self._canceller.reset()  # a new device is a new echo path
            if on_devices_open is not None:
                on_devices_open()

        self._devices = AudioDevices(
            source,
            self._sink,
            bus,
            self._set_state,
            settings.audio.device_timeout_s,
            devices_opened,
        )

    @property
    def state(self) -> State:
        return self._states.state

    # -- controls (assistant.controls.Controls) ------------------------------------

    def cancel(self, by: str = "button") -> None:
        """Stop whatever is happening (announcements waiting too); an answer is silenced
        right now."""
        self._announcements.clear()
        self._interrupt(by)

    def _interrupt(self, by: str) -> None:
        if self._answering is not None:
            self._answering.interrupt()
        self._bus.publish(events.Cancelled(by=by, state=self.state.value))
        self._cancelled.set()

    def talk_start(self) -> None:
        """The kiosk page's talk button is pressed: as the real one, held."""
        self._screen.press()

    def talk_stop(self) -> None:
        """...and released."""
        self._screen.release()

    def say(self, text: str, *, interrupt: bool = False) -> None:
        """Speak `text` through the configured voices once the answer playing and any
        question being asked are over; `interrupt`: cut the answer (or announcement)
        playing off and say it first."""
        self._announcements.add(text, first=interrupt)
        if interrupt and self._answering is not None:
            self._interrupt("say")

    def toggle_mute(self) -> None:
        self.set_muted(not self._muted)

    def set_muted(self, muted: bool) -> None:
        if muted != self._muted:
            self._muted = muted
            self._bus.publish(events.Muted(muted=muted))

    def volume_step(self, steps: int) -> None:
        changed = self._volume.step(steps)
        self._bus.publish(events.VolumeChanged(db=self._volume.db, changed=changed))

    def reset_conversation(self, by: str = "button") -> None:
        self._stages.completion.reset_conversation()
        self._bus.publish(events.ConversationReset(reason=by))

    # -- running -------------------------------------------------------------------

    async def run(self) -> None:
        """Listen and answer until a finite microphone runs out (forever on a device)."""
        await self._devices.open()
        self._bus.publish(
            events.Ready(
                trigger=self._settings.assistant.trigger.value,
                echo_cancellation=self._canceller is not None,
            )
        )
        try:
            while not self._input_ended:
                utterance = await self._listen()
                if utterance is not None:
                    await self._respond(utterance)
                elif self._announcements and not self._input_ended:
                    await self._announce()
            self._set_state(State.IDLE)
        finally:
            await self._speculation.aclose()
            await self._earcons.aclose()
            await self._devices.close()

    async def _read(self) -> AudioBlock:
        """The microphone's next block, with the device's own sounds silenced in it."""
        in_utterance = self._endpointer.in_utterance
        quiet = not in_utterance and self.state in (State.IDLE, State.LISTENING, State.MUTED)
        try:
            block = await self._devices.read(in_utterance=in_utterance, quiet=quiet)
        except InputEnded:
            self._input_ended = True
            raise
        if self._canceller is not None:
            # The canceller takes out everything the device plays (answers, earcons, the
            # thinking cue) sample by sample: silencing whole stretches on top of it would
            # cut the user's words off where they overlap the device's sound.
            self._canceller.user_talking = self._endpointer.in_utterance
            return self._canceller(block)
        if self._by_voice and self.state is State.SPEAKING:
            return block  # half-duplex barge-in by voice, as asked: it hears the answer too
        return self._self_sound(block)

    # -- listening -------------------------------------------------------------

    async def _listen(self) -> Utterance | None:
        """The next utterance; None when there is none (input ended, device reopened, or
        an announcement is waiting and no question is being asked)."""
        self._cancelled.clear()
        self._wake_fresh = False
        if self._carry_over:
            # A barge-in already opened the next utterance: keep what it holds.
            self._carry_over = False
            self._trigger.announce_carried_over()
        else:
            self._endpointer.reset()
            if self._woken_at is not None and not self._muted:
                self._trigger.wake_word_heard(self._woken_at, self._settings.wake.listen_s)
            elif self._follow_up and not self._muted:
                self._trigger.open_window("follow_up", self._settings.assistant.follow_up_s)
        self._woken_at = None
        self._follow_up = False
        try:
            while True:
                self._show_waiting()
                block = await self._read()
                halted = self._muted or self._cancelled.is_set()
                if halted:
                    self._stop_listening()
                if self._announcements and not self._endpointer.in_utterance:
                    return None  # said now; a question being asked goes first
                if halted:
                    continue
                edges = self._button.pending_events() if self._button is not None else []
                found = self._endpointer.process(block)
                self._hear_wake_word(block)
                found += self._trigger.edges(edges)
                found += self._trigger.edges(self._screen.pending_events(), hold=True, by=SCREEN)
                for event in found:
                    if (utterance := self._endpointer_result(event)) is not None:
                        return utterance
                self._trigger.expired(block.t_start + block.duration)
        except InputEnded:
            for event in self._endpointer.flush(time.monotonic()):
                if (utterance := self._endpointer_result(event)) is not None:
                    return utterance
            return None
        except (DeviceError, TimeoutError) as exc:
            self._speculation.abandon("device")
            await self._devices.recover(exc, "the microphone")
            return None

    def _hear_wake_word(self, block: AudioBlock) -> None:
        """Wake word mode, while waiting: the word opens a listening window. The detector
        hears nothing while a window or question is open, and starts afresh after."""
        if self._wake is None:
            return
        if self._trigger.listening:
            self._wake_fresh = False
            return
        if not self._wake_fresh:
            self._wake.reset()
            self._wake_fresh = True
        if (heard := self._wake.process(block)) is not None:
            log.info("wake word heard: %s (%.2f)", heard.phrase, heard.probability)
            self._bus.publish(
                events.WakeWordHeard(word=heard.word, probability=round(heard.probability, 3))
            )
            self._trigger.wake_word_heard(heard.t, self._settings.wake.listen_s)

    def _show_waiting(self) -> None:
        """The state while no turn runs: muted, listening, or waiting for the button."""
        if self._muted:
            self._set_state(State.MUTED)
        elif self._trigger.listening:
            self._set_state(State.LISTENING)
        else:
            self._set_state(self._trigger.waiting_state)

    def _stop_listening(self) -> None:
        """Muted or cancelled: drop whatever was being captured, and the button's edges."""
        self._cancelled.clear()
        self._wake_fresh = False
        if self._endpointer.in_utterance or self._trigger.listening:
            self._speculation.abandon("muted" if self._muted else "cancelled")
            self._endpointer.reset()
            self._trigger.utterance_over()
        if self._button is not None:
            self._button.pending_events()
        self._screen.pending_events()

    def _endpointer_result(self, event: EndpointEvent) -> Utterance | None:
        if isinstance(event, SpeechStarted):
            self._bus.publish(events.SpeechStarted(t_speech=event.t))
        elif isinstance(event, SpeechPaused):
            self._speculation.start(event.utterance, self._speculative_turn)
        elif isinstance(event, SpeechResumed):
            self._speculation.discard("resumed")
        elif isinstance(event, UtteranceDropped):
            self._speculation.abandon("dropped")
            self._trigger.utterance_over()
            self._bus.publish(
                events.UtteranceDropped(reason=event.reason, speech_ms=event.speech_ms)
            )
        elif isinstance(event, UtteranceEnded):
            self._trigger.utterance_over()
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
                t_speech_end=utterance.t_speech_end,
            )
        )
        if (speculation := self._speculation.adopt(utterance)) is not None:
            # Started at a pause that turned out to be the end: already under way.
            turn, answering = speculation.turn, speculation.task
        else:
            turn = self._turn(self._turns)
            turn.marks.counts.update(self._speculation.take_counts())
            answering = asyncio.create_task(turn.run(utterance))
        if await self._play_out(turn, answering, turn=self._turns):
            self._follow_up = self._settings.assistant.follow_up_s > 0

    async def _announce(self) -> None:
        """Say the oldest announcement waiting; as interruptible as an answer."""
        announcement = Announcement(
            self._announcements.take(),
            self._stages,
            self._sink,
            self._settings,
            self._bus,
            self._set_state,
        )
        await self._play_out(announcement, asyncio.create_task(announcement.run()), turn=None)

    async def _play_out(
        self, speech: Turn | Announcement, playing: asyncio.Task[None], *, turn: int | None
    ) -> bool:
        """Wait for an answer (or announcement) to end, or stop it at a barge-in or a
        cancel; say what failed if it failed. True if it ended by itself, unharmed."""
        self._answering = speech
        # The microphone keeps running during the answer: its audio feeds the
        # pre-roll (or the voice barge-in), so a live device never overflows and
        # a file keeps its pace.
        watchers = [
            asyncio.create_task(self._listen_during_answer()),
            asyncio.create_task(self._press_during_answer(self._button)),
            asyncio.create_task(self._press_during_answer(self._screen, hold=True, by=SCREEN)),
            asyncio.create_task(self._cancel_during_answer()),
        ]
        try:
            interruption = await self._first_interruption(playing, *watchers)
            if interruption is not None:
                # Silence first: heard within one device period, before the
                # cancelled stages (and the Dify stop call) have even unwound.
                speech.interrupt()
                await cancel_and_wait(playing)
                self._carry_over = interruption == BARGE_IN
                if interruption == WAKE_WORD:
                    self._woken_at = time.monotonic()
                return False
            if (failure := playing.exception()) is not None:
                await self._report_failure(failure, turn)
                return False
            return True
        finally:
            self._answering = None
            for task in (playing, *watchers):
                await cancel_and_wait(task)

    def _turn(self, number: int, gate: Gate | None = None) -> Turn:
        return Turn(
            number, self._stages, self._sink, self._settings, self._bus, self._set_state, gate
        )

    def _speculative_turn(self, gate: Gate) -> Turn:
        """The next turn, started early behind `gate` (it keeps the number if used)."""
        return self._turn(self._turns + 1, gate)

    async def _first_interruption(
        self, answering: asyncio.Task[None], *watchers: asyncio.Task[str | None]
    ) -> str | None:
        """Wait for the answer to end; what interrupted it first, if anything did."""
        pending: set[asyncio.Task[object]] = {answering, *watchers}
        while answering in pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not answering and not task.cancelled() and task.result():
                    return task.result()  # type: ignore[return-value]
        return None

    async def _listen_during_answer(self) -> str | None:
        """Feed the endpointer while answering. With barge-in by voice, speech over the
        answer pauses it and ends it (BARGE_IN) once it is speech enough; in wake word mode
        with echo cancellation the word ends it (WAKE_WORD). Muted, the audio goes nowhere."""
        by_voice = VoiceBargeIn(
            self._sink,
            self._endpointer,
            self._bus.publish,
            min_speech_ms=self._settings.echo.barge_in_min_speech_ms,
            resume_after_s=self._settings.echo.resume_after_s,
        )
        try:
            while True:
                block = await self._read()
                if self._muted:
                    continue
                heard = self._endpointer.process(block)
                now = block.t_start + block.duration
                if self._by_wake_word and (word := self._wake_word_over_answer(block)):
                    self._bus.publish(events.BargeIn(by="wake_word", t=word.t))
                    return WAKE_WORD
                if not self._by_voice:
                    continue
                if self._canceller is None:
                    # Half-duplex asked for barge-in anyway: any voice ends the answer.
                    if any(isinstance(e, SpeechStarted) for e in heard):
                        self._bus.publish(events.BargeIn(by="voice", t=heard[0].t))
                        return BARGE_IN
                elif (onset := by_voice.heard(heard, now)) is not None:
                    self._bus.publish(events.BargeIn(by="voice", t=onset))
                    return BARGE_IN
        except InputEnded:
            return None
        except (DeviceError, TimeoutError) as exc:
            # The answer goes on; the next listen meets the failure and reopens.
            log.warning("microphone failed during an answer: %s", exc or type(exc).__name__)
            return None
        finally:
            by_voice.close()

    def _wake_word_over_answer(self, block: AudioBlock) -> WakeWordHeard | None:
        """The wake word in the answer's time (echo cancelled), published when heard."""
        assert self._wake is not None
        if not self._wake_fresh:
            self._wake.reset()
            self._wake_fresh = True
        heard = self._wake.process(block)
        if heard is not None:
            log.info("wake word heard over the answer: %s (%.2f)", heard.phrase, heard.probability)
            self._bus.publish(
                events.WakeWordHeard(word=heard.word, probability=round(heard.probability, 3))
            )
        return heard

    async def _press_during_answer(
        self, button: Button | None, *, hold: bool = False, by: str = "button"
    ) -> str | None:
        """BARGE_IN at a press of a talk button: the new question starts right there."""
        if button is None:
            return None
        while True:
            try:
                edge: ButtonEvent = await button.next_event(timeout=3600)
            except TimeoutError:
                continue
            if not self._muted and self._trigger.press_during_answer(edge, hold=hold, by=by):
                self._bus.publish(events.BargeIn(by=by, t=edge.t))
                return BARGE_IN

    async def _cancel_during_answer(self) -> str:
        await self._cancelled.wait()
        return CANCEL

    async def _report_failure(self, exc: BaseException, turn: int | None) -> None:
        failure = describe_failure(exc)
        self._set_state(State.ERROR)
        spoken = message_for(failure)
        self._bus.publish(events.Error(turn=turn, spoken=spoken, **failure))
        log.error(
            "%s failed in %s: %s: %s",
            "an announcement" if turn is None else f"turn {turn}",
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
        """The sentence in the device's own espeak-ng voice, after the error tones (if on);
        the error tones alone if even espeak-ng fails."""
        rate = self._sink.sample_rate
        earcons = self._settings.earcons
        tone = make_earcon(Earcon.ERROR, rate, earcons.file_for(Earcon.ERROR.value))
        try:
            speech = await synthesize_async(sentence, voice=self._settings.assistant.language)
        except EspeakError as exc:
            log.error("offline voice unavailable (%s); playing the error tone", exc)
            return tone
        spoken = resample_once(speech.samples, speech.sample_rate, rate)
        if not earcons.error:
            return spoken
        gap = np.zeros(int(rate * ERROR_TONE_GAP_S), dtype=np.int16)
        return np.concatenate([tone, gap, spoken])


def _echo_canceller(settings: Settings, sink: AudioSink) -> EchoCanceller | None:
    """The canceller, when `[echo]` asks for one and it can work here; says which at start."""
    if settings.echo.enabled is EchoMode.OFF:
        log.info("echo cancellation: off (echo.enabled = off): half-duplex")
        return None
    from assistant.audio.echo_canceller import EchoCanceller, available

    if not available():
        log.warning("echo cancellation: off, pywebrtc-audio is not installed: half-duplex")
        return None
    if not isinstance(sink, Monitored):
        log.warning("echo cancellation: off, the speaker does not tell what it plays")
        return None
    far_end = FarEnd()
    sink.monitor(far_end.played)
    log.info(
        "echo cancellation: on (WebRTC AEC3)%s",
        ": speech over an answer interrupts it" if settings.echo.barge_in else "",
    )
    return EchoCanceller(far_end, settings.echo.reference_delay_ms)


def _wake_word_detector(settings: Settings) -> WakeWordDetector:
    """The wake word mode's detector (its library is loaded only in that mode)."""
    from assistant.wake_word import WakeWordDetector

    wake = settings.wake
    detector = WakeWordDetector(
        wake.words,
        [Path(path).expanduser() for path in wake.model_files],
        probability_cutoff=wake.probability_cutoff,
        refractory_s=wake.refractory_s,
    )
    log.info("listening for the wake word: %s", " or ".join(detector.phrases))
    return detector
