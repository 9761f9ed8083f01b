"""Announcements: texts given to `say` (the event socket's command), spoken between turns.

An announcement is no answer: no question, no turn number, no completion. It waits for
the answer playing and for a question being asked to end (unless told to interrupt the
answer), then goes through the same sentence synthesis as answers (the configured TTS
chain, ending in the local voice) and the same output sink, so the volume, the earcons'
timing and the self-sound gate treat it like any other sound the device makes.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from assistant import events
from assistant.events import EventBus
from assistant.marks import TurnMarks
from assistant.ports import AudioSink
from assistant.providers.base import Stages
from assistant.settings import Settings
from assistant.speech_player import SpeechPlayer
from assistant.states import State
from assistant.text.sentences import SentenceChunker

log = logging.getLogger(__name__)

MAX_WAITING = 8
"""Announcements that may wait at once; beyond it the oldest is dropped (and logged)."""


@dataclass(frozen=True, slots=True)
class Pending:
    text: str
    t_queued: float = field(default_factory=time.monotonic)


class Announcements:
    """The texts waiting to be said, oldest first."""

    def __init__(self) -> None:
        self._waiting: deque[Pending] = deque()

    def __bool__(self) -> bool:
        return bool(self._waiting)

    def add(self, text: str, *, first: bool = False) -> None:
        """Queue `text`: after the others, or before them (`first`: it interrupts)."""
        if len(self._waiting) >= MAX_WAITING:
            dropped = self._waiting.popleft()
            log.warning("too many announcements waiting; dropped %d characters", len(dropped.text))
        if first:
            self._waiting.appendleft(Pending(text))
        else:
            self._waiting.append(Pending(text))

    def take(self) -> Pending:
        return self._waiting.popleft()

    def clear(self) -> None:
        self._waiting.clear()


class Announcement:
    """Saying one text: run it, or interrupt it like an answer."""

    def __init__(
        self,
        pending: Pending,
        stages: Stages,
        sink: AudioSink,
        settings: Settings,
        bus: EventBus,
        set_state: Callable[[State], None],
    ) -> None:
        self._pending = pending
        self._stages = stages
        self._sink = sink
        self._settings = settings
        self._bus = bus
        self._set_state = set_state
        self._player: SpeechPlayer | None = None

    async def run(self) -> None:
        """Say the text, sentence by sentence; raises what the speech chain raises."""
        text = self._pending.text
        waited = max(0.0, time.monotonic() - self._pending.t_queued)
        self._bus.publish(events.Announcement(text=text, waited_s=round(waited, 3)))
        player = self._player = SpeechPlayer.for_settings(
            self._settings,
            self._stages.tts,
            self._sink,
            TurnMarks(0),
            on_first_audio=lambda: self._set_state(State.SPEAKING),
        )
        chunker = SentenceChunker.from_settings(self._settings.speech)
        for sentence in (*chunker.feed(text), *chunker.flush()):
            player.say(sentence)
        player.finish()
        await player.run()

    def interrupt(self) -> None:
        """Silence at once; the caller then cancels `run`."""
        if self._player is not None:
            self._player.interrupt()
        else:
            self._sink.flush()
