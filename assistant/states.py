"""The loop's states, the transitions allowed between them, and the one object that changes them.

  idle ─press─▶ listening ─question ended─▶ transcribing ─transcript─▶ thinking ─audio─▶ speaking
   ▲ ◀─dropped─┘  ▲                              │                        │                 │
   │              └─── nothing heard / empty answer / answer played / barge-in ◀────────────┘
   └────────────────── the same in push-to-talk (but barge-in: listening) ◀─────────────────┘

  any state ─device lost/turn failed─▶ error ─said so, devices open─▶ listening (push-to-talk: idle)
  waiting ─mute─▶ muted ─unmute─▶ listening (push-to-talk: idle); an answer under way ends first
  waiting (idle, listening, muted) ─announcement plays─▶ speaking ─played─▶ waiting

`idle` is where push-to-talk and toggle wait for the button and wake word mode for the
word; hands-free waits in `listening`, so every "back to listening" above is "back to
idle" in those modes. A barge-in (the talk
button, or speech when barge-in by voice is on) during transcribing, thinking or speaking
goes straight to `listening` with the new question already being captured. A speculative
turn (assistant.speculation) runs behind a gate while the loop is still `listening`: its
changes are held and replayed in order when its question is confirmed (listening →
transcribing → thinking), or never happen if it is discarded. A device lost in any state
is `error` until both devices are open again.

`StateMachine` is the only thing that changes the state: everyone else asks it for a
transition. It checks each one against `TRANSITIONS` and publishes it as a `state` event.
An illegal one raises IllegalTransition when strict (the tests) and is logged and refused
otherwise (a device in the field never dies over its own bookkeeping).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from enum import StrEnum

from assistant.events import EventBus, StateChanged

log = logging.getLogger(__name__)

STRICT_ENV = "VOICE_ASSISTANT_STRICT_STATES"
"""Set to 1 (the test suite does) to make an illegal transition raise."""


class State(StrEnum):
    IDLE = "idle"
    """Waiting for the talk button (push-to-talk), starting up, or stopped."""
    LISTENING = "listening"
    """Capturing: VAD or the held button decides where the utterance ends."""
    TRANSCRIBING = "transcribing"
    """The utterance is being uploaded and recognised."""
    THINKING = "thinking"
    """The answer is being written; nothing audible yet."""
    SPEAKING = "speaking"
    """The answer is playing (the rest may still be written and synthesised)."""
    ERROR = "error"
    """Something failed; the loop says so, recovers and returns to listening or idle."""
    MUTED = "muted"
    """Listening is off (the mute button or command): no audio goes anywhere."""


_S = State
TRANSITIONS: Mapping[tuple[State, State], str] = {
    (_S.IDLE, _S.LISTENING): "the talk button is pressed, or hands-free listening starts",
    (_S.LISTENING, _S.IDLE): "push-to-talk: the utterance was dropped (too short); or stopping",
    (_S.LISTENING, _S.TRANSCRIBING): "the question ended (release, VAD hangover), or a "
    "speculation started at a pause is confirmed and its held changes are replayed",
    (_S.TRANSCRIBING, _S.THINKING): "the transcript came back: the answer is requested",
    (_S.TRANSCRIBING, _S.LISTENING): "nothing was recognised, or barge-in",
    (_S.TRANSCRIBING, _S.IDLE): "push-to-talk: nothing was recognised; or stopping",
    (_S.THINKING, _S.SPEAKING): "the answer's first audio plays",
    (_S.THINKING, _S.LISTENING): "the answer was empty, or barge-in",
    (_S.THINKING, _S.IDLE): "push-to-talk: the answer was empty; or stopping",
    (_S.SPEAKING, _S.LISTENING): "the answer has played, or barge-in",
    (_S.SPEAKING, _S.IDLE): "push-to-talk: the answer has played; or stopping",
    **{(s, _S.ERROR): "a device was lost, or the turn failed" for s in State if s is not _S.ERROR},
    (_S.ERROR, _S.LISTENING): "said what failed, and the devices work: listening again",
    (_S.ERROR, _S.IDLE): "push-to-talk: said what failed; or stopping",
    **{
        (s, _S.MUTED): "muted: at once while waiting, or once the answer is over"
        for s in (_S.IDLE, _S.LISTENING, _S.TRANSCRIBING, _S.THINKING, _S.SPEAKING, _S.ERROR)
    },
    **{
        (s, _S.SPEAKING): "an announcement (the `say` command) starts to play between turns"
        for s in (_S.IDLE, _S.LISTENING, _S.MUTED)
    },
    (_S.MUTED, _S.LISTENING): "unmuted (hands-free and the other listening modes)",
    (_S.MUTED, _S.IDLE): "unmuted (push-to-talk, toggle: waiting for the button); or stopping",
}
"""Every allowed change, with why it happens. Staying in a state is no change."""


class IllegalTransition(RuntimeError):
    """A change the table does not allow (raised only when the machine is strict)."""


def allowed(source: State, target: State) -> bool:
    return source is target or (source, target) in TRANSITIONS


class StateMachine:
    """Owns the loop's state: checks every change against the table, then publishes it."""

    def __init__(self, bus: EventBus, *, strict: bool | None = None) -> None:
        """`strict`: raise on an illegal change (default: when VOICE_ASSISTANT_STRICT_STATES=1)."""
        self._bus = bus
        self._state = State.IDLE
        self.strict = os.environ.get(STRICT_ENV) == "1" if strict is None else strict
        self.turn = 0
        """The latest turn's number, carried by each `state` event."""

    @property
    def state(self) -> State:
        return self._state

    def to(self, target: State) -> bool:
        """Move to `target` if the table allows it; True if the state changed."""
        source = self._state
        if source is target:
            return False
        if (source, target) not in TRANSITIONS:
            message = f"illegal state change {source} -> {target} (turn {self.turn})"
            if self.strict:
                raise IllegalTransition(message)
            log.error("%s: refused", message)
            return False
        self._state = target
        self._bus.publish(StateChanged(state=target.value, turn=self.turn))
        return True
