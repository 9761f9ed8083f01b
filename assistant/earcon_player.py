"""Plays the earcons the events call for: a bus listener that never reaches into the loop.

- `listening_started` (by a button, a tap, the follow-up window, a wake word): the
  listening earcon (none in hands-free: there is no moment that starts listening);
- `utterance`: the thinking cue is armed; if the answer's first audio has not come
  `thinking_cue_after_ms` after the end of speech, a soft blip repeats every
  THINKING_PERIOD_S until it comes (the state leaves `transcribing`/`thinking`), and what
  is left of a blip is flushed that moment, before the answer's first sample is queued;
- the state leaving `speaking` for waiting (not after a barge-in or a cancel): `done`;
- `volume`: a tick, heard at the new level (not over an answer: the answer itself is).

The error earcon belongs to the loop's failure report (it precedes the spoken message).
Everything goes through the output sink, so the volume applies and the capture side
knows it is the device's own sound. A sink that fails is logged, never raised.
"""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np

from assistant.audio.earcons import THINKING_PERIOD_S, Earcon, make_earcon
from assistant.events import (
    BargeIn,
    Cancelled,
    Event,
    ListeningStarted,
    StateChanged,
    UtteranceCaptured,
    VolumeChanged,
)
from assistant.ports import AudioSink, DeviceError
from assistant.settings import EarconSettings

log = logging.getLogger(__name__)

_WAITING = frozenset({"listening", "idle", "muted"})
_THINKING = frozenset({"transcribing", "thinking"})
PLAY_TIMEOUT_S = 2.0


class EarconPlayer:
    def __init__(self, sink: AudioSink, settings: EarconSettings) -> None:
        self._sink = sink
        self._settings = settings
        self._sounds: dict[tuple[Earcon, int], np.ndarray] = {}
        self._state = "idle"
        self._interrupted = False
        self._cue: asyncio.Task[None] | None = None
        self._cue_sounded = False
        """The running cue has played a blip (which may still be in the speaker's buffer)."""
        self._tasks: set[asyncio.Task[None]] = set()

    def on_event(self, event: Event) -> None:
        """Bus listener: cheap, synchronous; playing happens in tasks."""
        if isinstance(event, ListeningStarted):
            if self._settings.listening and event.by != "hands_free":
                self._play(Earcon.LISTENING)
        elif isinstance(event, UtteranceCaptured):
            self._interrupted = False
            if self._settings.thinking and event.t_speech_end is not None:
                self._arm_cue(event.t_speech_end)
        elif isinstance(event, BargeIn | Cancelled):
            self._interrupted = True
            self._stop_cue()
        elif isinstance(event, VolumeChanged):
            if self._settings.tick and self._state != "speaking":
                self._play(Earcon.TICK)
        elif isinstance(event, StateChanged):
            self._on_state(event.state)

    async def aclose(self) -> None:
        self._stop_cue()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=PLAY_TIMEOUT_S)

    def _on_state(self, state: str) -> None:
        previous, self._state = self._state, state
        if state not in _THINKING:
            # Whatever ends the wait (the answer's first audio, a failure, a new
            # question), the cue stops at once: before anything else is queued.
            self._stop_cue()
        answered = previous == "speaking" and state in _WAITING and not self._interrupted
        if answered and self._settings.done:
            self._play(Earcon.DONE)

    def _arm_cue(self, t_speech_end: float) -> None:
        self._stop_cue()
        delay = t_speech_end + self._settings.thinking_cue_after_ms / 1000 - time.monotonic()
        self._cue = self._spawn(self._thinking_cue(max(0.0, delay)))

    async def _thinking_cue(self, delay: float) -> None:
        await asyncio.sleep(delay)
        while self._state in _THINKING:
            self._cue_sounded = True
            await self._play_now(Earcon.THINKING)
            await asyncio.sleep(THINKING_PERIOD_S)

    def _stop_cue(self) -> None:
        cue, self._cue = self._cue, None
        if cue is None:
            return
        cue.cancel()
        if self._cue_sounded:
            # A blip may still sit in the speaker's buffer: drop it, before the answer.
            self._cue_sounded = False
            self._sink.flush()

    def _play(self, earcon: Earcon) -> None:
        self._spawn(self._play_now(earcon))

    def _spawn(self, coro: object) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _play_now(self, earcon: Earcon) -> None:
        try:
            await self._sink.play(self._sound(earcon), timeout=PLAY_TIMEOUT_S)
        except (DeviceError, TimeoutError, OSError) as exc:
            log.debug("earcon %s not played: %s", earcon, exc)

    def _sound(self, earcon: Earcon) -> np.ndarray:
        rate = self._sink.sample_rate
        key = (earcon, rate)
        if key not in self._sounds:
            path = self._settings.file_for(earcon.value)
            self._sounds[key] = make_earcon(earcon, rate, path)
        return self._sounds[key]
