"""The catalogue of events, and the bus that carries them.

Every event kind the assistant publishes is one frozen dataclass below, with its fields
documented: this is the contract for everything that listens (the JSONL writer, LEDs, the
kiosk page, integrators). The loop and its helpers publish these objects; nobody publishes
a bare string. On the wire (`--events-jsonl`, one JSON object per line) an event is
`{"t": ..., "kind": ..., <fields>}`; a field that is None is left out.

Publishing never blocks and never fails because a subscriber is slow: each subscriber has
a bounded queue and loses its oldest events first.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TextIO, TypeVar

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """What every event has."""

    kind: ClassVar[str] = ""
    """The event's name on the wire; one per class."""
    t: float = field(default_factory=time.monotonic)
    """time.monotonic() when it happened (for `barge_in`, the moment of the interruption)."""

    @property
    def data(self) -> dict[str, Any]:
        """The fields as they go on the wire (None left out), without `t` and `kind`."""
        return {
            f.name: value
            for f in dataclasses.fields(self)
            if f.name != "t" and (value := getattr(self, f.name)) is not None
        }

    def to_json(self) -> str:
        return json.dumps({"t": round(self.t, 6), "kind": self.kind, **self.data}, default=str)


_E = TypeVar("_E", bound=type[Event])

CATALOGUE: dict[str, type[Event]] = {}
"""Every event kind, by its wire name."""


def _kind(name: str) -> Callable[[_E], _E]:
    """Class decorator: names the kind and enters it in the catalogue."""

    def register(cls: _E) -> _E:
        if name in CATALOGUE:
            raise ValueError(f"two event classes for {name!r}")
        cls.kind = name
        CATALOGUE[name] = cls
        return cls

    return register


# -- the loop ------------------------------------------------------------------------


@_kind("ready")
@dataclass(frozen=True, slots=True, kw_only=True)
class Ready(Event):
    """The devices are open and the assistant listens (or waits for the button or word)."""

    trigger: str
    """How a question starts: `hands_free`, `push_to_talk`, `toggle` or `wake_word`."""
    echo_cancellation: bool = False
    """Whether the device cancels its own voice in what it hears (and so can be
    interrupted by voice); false: half-duplex."""


@_kind("state")
@dataclass(frozen=True, slots=True, kw_only=True)
class StateChanged(Event):
    """The loop moved to another state (see assistant.states for the diagram)."""

    state: str
    """The new state: idle, listening, transcribing, thinking, speaking or error."""
    turn: int
    """The number of the latest turn (0 before the first)."""


@_kind("speech_started")
@dataclass(frozen=True, slots=True, kw_only=True)
class SpeechStarted(Event):
    """Voice was heard (VAD) or the talk button pressed: an utterance opened."""

    t_speech: float
    """time.monotonic() of the first voiced frame, pre-roll excluded."""


@_kind("utterance_dropped")
@dataclass(frozen=True, slots=True, kw_only=True)
class UtteranceDropped(Event):
    """An utterance ended without a question: too little speech in it."""

    reason: str
    """Why: `too_short` (less than `vad.min_speech_ms` of speech)."""
    speech_ms: int
    """Voiced audio it held."""


@_kind("utterance")
@dataclass(frozen=True, slots=True, kw_only=True)
class UtteranceCaptured(Event):
    """An utterance ended: it becomes the question of a turn."""

    turn: int
    """The turn that answers it."""
    duration_s: float
    """Length of the audio uploaded, pre-roll included."""
    speech_ms: int
    """Voiced audio in it."""
    t_speech_end: float | None = None
    """time.monotonic() of the end of speech: the last voiced frame, or the release."""


@_kind("listening_started")
@dataclass(frozen=True, slots=True, kw_only=True)
class ListeningStarted(Event):
    """Listening began at a moment the user chose or expects: a press or tap of the talk
    button, the follow-up window after an answer, a wake word (not hands-free listening)."""

    by: str
    """`button`, `screen` (the kiosk page's talk button), `follow_up` or `wake_word`."""
    window_s: float | None = None
    """How long it waits for speech before giving up (none while the button is held)."""


@_kind("wake_word")
@dataclass(frozen=True, slots=True, kw_only=True)
class WakeWordHeard(Event):
    """The wake word was heard on the device: listening opens (`listening_started`)."""

    word: str
    """Which model heard it: `okay_nabu`, or a custom model's name."""
    probability: float
    """The model's averaged probability, above its cutoff."""


@_kind("barge_in")
@dataclass(frozen=True, slots=True, kw_only=True)
class BargeIn(Event):
    """The user interrupted an answer; `t` is when (the press, or the first voiced frame)."""

    by: str
    """`button`, `screen`, `voice` or `wake_word`."""


@_kind("answer_paused")
@dataclass(frozen=True, slots=True, kw_only=True)
class AnswerPaused(Event):
    """Voice was heard over the answer (echo cancelled): it is held, silent, until the voice
    proves to be speech (`barge_in`) or not (`answer_resumed`)."""

    t_speech: float
    """The first voiced frame (time.monotonic())."""


@_kind("answer_resumed")
@dataclass(frozen=True, slots=True, kw_only=True)
class AnswerResumed(Event):
    """The sound that paused the answer was no question: it plays on from where it paused."""

    reason: str
    """`too_short` (the sound ended before `echo.barge_in_min_speech_ms`) or `timeout`
    (`echo.resume_after_s` passed without enough speech)."""
    paused_ms: int
    """How long it was held."""


@_kind("conversation_reset")
@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationReset(Event):
    """The next question starts a new conversation (chat apps)."""

    reason: str
    """`long_press` (the talk button held with no speech)."""


@_kind("cancelled")
@dataclass(frozen=True, slots=True, kw_only=True)
class Cancelled(Event):
    """The cancel button (or command) stopped what was happening."""

    by: str
    """`button`, `command`, or `say` (an announcement told to interrupt)."""
    state: str
    """What was stopped: the state the loop was in."""


@_kind("announcement")
@dataclass(frozen=True, slots=True, kw_only=True)
class Announcement(Event):
    """A text given to `say` starts to be spoken (not an answer: no turn of its own)."""

    text: str
    """What is said."""
    waited_s: float
    """How long it waited for the answer or question before it (0: said at once)."""


@_kind("mute")
@dataclass(frozen=True, slots=True, kw_only=True)
class Muted(Event):
    """Listening was turned off or on again."""

    muted: bool
    """True: no audio goes anywhere until unmuted."""


@_kind("volume")
@dataclass(frozen=True, slots=True, kw_only=True)
class VolumeChanged(Event):
    """The output volume was stepped (a tick is heard at the new level)."""

    db: float
    """The level now, in dB (0 = as the voices deliver it)."""
    changed: bool
    """False when it was already at the end of its range."""


@_kind("speculation")
@dataclass(frozen=True, slots=True, kw_only=True)
class Speculation(Event):
    """Work started at a pause in the question, then used or thrown away unseen."""

    turn: int
    """The turn it was started for."""
    outcome: str
    """`started`, `used` or `discarded`."""
    speech_ms: int
    """Voiced audio in the utterance so far."""
    audio_s: float
    """Length of the audio it uploaded."""
    after_ms: float
    """Silence heard when it started."""
    reason: str | None = None
    """Why it was discarded: `resumed`, `dropped`, `changed`, `failed`, `device`, `closed`."""
    error: str | None = None
    """The failure code, when a discarded speculation had failed."""
    transcript: str | None = None
    """What it heard (not on `started`; None when it had not heard yet)."""


# -- one turn ------------------------------------------------------------------------


@_kind("transcript")
@dataclass(frozen=True, slots=True, kw_only=True)
class Transcript(Event):
    """What speech-to-text heard."""

    turn: int
    text: str


@_kind("info")
@dataclass(frozen=True, slots=True, kw_only=True)
class Info(Event):
    """Something worth knowing that is no failure."""

    turn: int
    message: str
    """E.g. `nothing was recognised`."""


@_kind("sentence")
@dataclass(frozen=True, slots=True, kw_only=True)
class Sentence(Event):
    """One sentence of the answer, complete: it goes to speech now."""

    turn: int
    text: str


@_kind("answer_replaced")
@dataclass(frozen=True, slots=True, kw_only=True)
class AnswerReplaced(Event):
    """The service replaced the answer so far (Dify output moderation); this is spoken instead."""

    turn: int
    text: str


@_kind("answer")
@dataclass(frozen=True, slots=True, kw_only=True)
class Answer(Event):
    """The whole answer, once it is written (speech may still be playing)."""

    turn: int
    text: str


@_kind("marks")
@dataclass(frozen=True, slots=True, kw_only=True)
class Marks(Event):
    """A turn's latency marks, in ms after the end of speech; published when the turn ends.

    A mark the turn did not reach is left out."""

    turn: int
    speech_end: float | None = None
    """End of the last voiced frame (VAD) or the button release: 0."""
    speculation: float | None = None
    """When the pause that started this turn's speculative work was noticed."""
    endpoint: float | None = None
    """When the end of the question was decided."""
    upload_start: float | None = None
    upload_end: float | None = None
    transcript: float | None = None
    first_token: float | None = None
    first_sentence: float | None = None
    first_tts_byte: float | None = None
    first_audio: float | None = None
    """First sample of the answer handed to the speaker."""
    last_audio: float | None = None
    """The answer finished playing."""
    speculations_used: int | None = None
    """Speculations of this question that were used (0 or 1)."""
    speculations_discarded: int | None = None
    """Speculations of this question thrown away (the question went on)."""


# -- failures and devices ------------------------------------------------------------


@_kind("error")
@dataclass(frozen=True, slots=True, kw_only=True)
class Error(Event):
    """Something failed: a turn, a device, or the start-up. The same shape from every source."""

    stage: str
    """Where: `stt`, `completion`, `tts`, `device`, `startup` or `internal`."""
    code: str
    """What, in one word: `timeout`, `unreachable`, `http_error`, `device_error`, ..."""
    message: str
    """In words, for a log line or a banner."""
    service: str | None = None
    """The service that failed (`dify`, `openai`, `convai`, `local`), where there is one."""
    status: int | None = None
    """Its HTTP status, where there is one."""
    turn: int | None = None
    """The turn that failed, for a turn's failure."""
    spoken: str | None = None
    """What the device said about it, for a turn's failure."""


@_kind("service_error")
@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceErrorEvent(Event):
    """One attempt at a service failed, even if a retry or a fallback then recovered."""

    service: str
    stage: str
    code: str
    message: str
    status: int | None = None
    next: str
    """What happens now: `retry`, `fallback` or `give_up`."""


@_kind("device_restored")
@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceRestored(Event):
    """The microphone and speaker work again after an outage."""

    outage_s: float
    """How long they were gone."""
    attempts: int
    """Reopen attempts it took."""


def catalogue() -> Iterator[type[Event]]:
    """Every event class, in the order above."""
    return iter(CATALOGUE.values())


# -- the bus -------------------------------------------------------------------------


class Subscription:
    """One subscriber's bounded mailbox."""

    def __init__(self, bus: EventBus, maxsize: int) -> None:
        self._bus = bus
        self._queue: asyncio.Queue[Event] = asyncio.Queue(maxsize)
        self.dropped = 0

    def _offer(self, event: Event) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(event)

    async def get(self) -> Event:
        return await self._queue.get()

    def get_nowait(self) -> Event | None:
        try:
            return self._queue.get_nowait()
        except asyncio.QueueEmpty:
            return None

    def close(self) -> None:
        self._bus._subscriptions.discard(self)


class EventBus:
    def __init__(self) -> None:
        self._subscriptions: set[Subscription] = set()
        self._listeners: list[Callable[[Event], None]] = []

    def subscribe(self, maxsize: int = 1000) -> Subscription:
        sub = Subscription(self, maxsize)
        self._subscriptions.add(sub)
        return sub

    def add_listener(self, listener: Callable[[Event], None]) -> None:
        """A synchronous listener, called in publish order (for cheap sinks like a file)."""
        self._listeners.append(listener)

    def publish(self, event: Event) -> Event:
        for sub in self._subscriptions:
            sub._offer(event)
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                # A broken listener must not take the loop down with it.
                log.exception("event listener failed on %s", event.kind)
        return event


class JsonlWriter:
    """Writes every event as one JSON line; flushed per line so a crash loses nothing.

    The file holds what was said and answered, so only its owner may read it (0600, an
    existing file too; a pipe or terminal is left as it is).
    """

    def __init__(self, path: Path) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        if stat.S_ISREG(os.fstat(fd).st_mode):
            os.fchmod(fd, 0o600)  # O_CREAT's mode applies to new files only
        self._file: TextIO = os.fdopen(fd, "w", encoding="utf-8")

    def __call__(self, event: Event) -> None:
        self._file.write(event.to_json() + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()
