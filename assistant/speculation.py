"""Speculative work during the silence hangover: one utterance's speculations, start to end.

The endpointer notices a pause (SpeechPaused, after `speculate_after_ms`) well before its
hangover ends the utterance. The loop then starts the turn right away, behind a Gate: with
`speculate = "stt"` the utterance so far is uploaded at once, but the turn changes no state,
publishes nothing and asks for no answer until the end of the question is confirmed; with
"stt+completion" the answer is requested too, and only its speech waits. Then:

- speech resumes, or the utterance is dropped: the speculation is discarded. Its task is
  cancelled (a completion in flight is stopped at the service, as on a barge-in), and nothing
  it did is ever published or heard.
- the utterance ends with exactly the audio the speculation took: it is used. Its gate opens,
  the held events and state changes go out in order, and the loop carries on with the turn
  already running, with no second upload.
- the utterance ends with other audio (the length cap), or the speculation already failed:
  discarded, and the loop starts an ordinary turn.

At most one speculation is in flight per utterance. Each start, use and discard is a
`speculation` event; the counts of used and discarded ones go into the turn's marks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from assistant import events
from assistant.aio import cancel_and_wait
from assistant.audio.endpointer import Utterance
from assistant.events import Event, EventBus
from assistant.failures import describe_failure
from assistant.settings import Speculate
from assistant.states import State

if TYPE_CHECKING:
    from assistant.turn import Turn


class Gate:
    """Holds a speculative turn's outward effects until the end of its question is confirmed.

    Events and state changes are kept in order and replayed by `open`; the turn awaits
    `wait` before it asks for the answer (`stt`) or before its speech starts
    (`stt+completion`). A gate that never opens lets nothing out.
    """

    def __init__(
        self, bus: EventBus, set_state: Callable[[State], None], *, answer_early: bool
    ) -> None:
        self.answer_early = answer_early
        """True: the answer may be requested before the gate opens (only speech waits)."""
        self._bus = bus
        self._set_state = set_state
        self._held: list[Callable[[], object]] = []
        self._opened = asyncio.Event()

    @property
    def is_open(self) -> bool:
        return self._opened.is_set()

    def call(self, action: Callable[[], object]) -> None:
        """Run `action` now if the gate is open, else when it opens."""
        if self._opened.is_set():
            action()
        else:
            self._held.append(action)

    def publish(self, event: Event) -> None:
        self.call(partial(self._bus.publish, event))

    def set_state(self, state: State) -> None:
        self.call(partial(self._set_state, state))

    def open(self) -> None:
        self._opened.set()
        held, self._held = self._held, []
        for action in held:
            action()

    async def wait(self) -> None:
        await self._opened.wait()


@dataclass(slots=True)
class Speculation:
    """A turn started at a pause, running behind its gate."""

    turn: Turn
    """The turn, numbered as the next one; it keeps the number if used."""
    task: asyncio.Task[None]
    """`turn.run(utterance)`."""
    gate: Gate
    """What holds the turn's events, state changes and sound until it is used."""
    utterance: Utterance
    """What the endpointer would upload if the pause turned out to be the end."""


def same_audio(a: Utterance, b: Utterance) -> bool:
    """Whether two utterances carry the same audio.

    The endpointer's buffer only grows within an utterance, so the same start and length
    mean the same samples.
    """
    return a.t_start == b.t_start and len(a.samples) == len(b.samples)


class Speculator:
    """Starts, discards and hands over the speculations of the loop's utterances."""

    def __init__(self, mode: Speculate, bus: EventBus, set_state: Callable[[State], None]) -> None:
        self.mode = mode
        self._bus = bus
        self._set_state = set_state
        self._active: Speculation | None = None
        self._retiring: set[asyncio.Task[None]] = set()
        self._used = 0
        self._discarded = 0

    def start(self, utterance: Utterance, make_turn: Callable[[Gate], Turn]) -> None:
        """Start the turn for `utterance` behind a gate (unless off, or one is in flight)."""
        if self.mode is Speculate.OFF or self._active is not None:
            return
        gate = Gate(self._bus, self._set_state, answer_early=self.mode is Speculate.STT_COMPLETION)
        turn = make_turn(gate)
        task = asyncio.create_task(turn.run(utterance))
        self._active = Speculation(turn, task, gate, utterance)
        self._publish(self._active, "started")

    def discard(self, reason: str) -> None:
        """Cancel the speculation in flight, if any; nothing it did is ever let out."""
        active, self._active = self._active, None
        if active is None:
            return
        extra: dict[str, Any] = {"reason": reason}
        if active.task.done() and not active.task.cancelled():
            failure = active.task.exception()
            if failure is not None:
                extra["error"] = describe_failure(failure)["code"]
        active.task.cancel()
        # Not awaited here: the loop must keep reading the microphone. A cancelled
        # completion still stops its service task as it unwinds (see Turn._answer).
        self._retiring.add(active.task)
        active.task.add_done_callback(self._retired)
        self._discarded += 1
        self._publish(active, "discarded", **extra)

    def adopt(self, utterance: Utterance) -> Speculation | None:
        """The speculation that already covers `utterance`, confirmed and let out; or None
        (a mismatched or failed one is discarded: the caller starts an ordinary turn)."""
        active = self._active
        if active is None:
            return None
        if not same_audio(active.utterance, utterance):
            self.discard("changed")
            return None
        task = active.task
        if task.done() and not task.cancelled() and task.exception() is not None:
            # Failed before the end was even confirmed: an ordinary turn uploads again.
            self.discard("failed")
            return None
        self._active = None
        self._used += 1
        active.turn.marks.counts.update(self.take_counts())
        active.turn.marks.mark("endpoint", utterance.t_detected)
        self._publish(active, "used")
        active.gate.open()
        return active

    def abandon(self, reason: str) -> None:
        """The utterance is over without a turn (dropped, device lost): discard, reset counts."""
        self.discard(reason)
        self.take_counts()

    def take_counts(self) -> dict[str, int]:
        """The utterance's counts, for its turn's marks; they start again from zero."""
        counts = {"speculations_used": self._used, "speculations_discarded": self._discarded}
        self._used = self._discarded = 0
        return counts

    async def aclose(self) -> None:
        """Discard what is in flight and wait until every cancelled speculation has unwound."""
        self.abandon("closed")
        for task in list(self._retiring):
            await cancel_and_wait(task)

    def _retired(self, task: asyncio.Task[None]) -> None:
        self._retiring.discard(task)
        if not task.cancelled():
            # Retrieved: a discarded speculation's failure is nobody's turn failure.
            task.exception()

    def _publish(self, speculation: Speculation, outcome: str, **extra: Any) -> None:
        utterance = speculation.utterance
        self._bus.publish(
            events.Speculation(
                turn=speculation.turn.marks.turn,
                outcome=outcome,
                speech_ms=utterance.speech_ms,
                audio_s=round(utterance.duration, 3),
                after_ms=round((utterance.t_detected - utterance.t_speech_end) * 1000, 1),
                transcript=None if outcome == "started" else speculation.turn.transcript,
                **extra,
            )
        )
