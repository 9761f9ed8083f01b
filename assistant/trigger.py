"""How a question starts and ends, for each trigger mode: all of it in one place.

- `hands_free`: the VAD alone opens and closes every utterance.
- `push_to_talk`: a press opens an utterance at once (with the pre-roll), the release
  closes it; the VAD only classifies. A long press with no speech in it starts a new
  conversation.
- `toggle`: a tap opens a listening window: the VAD opens the utterance when speech comes
  (its pre-roll keeps the first syllable) and its hangover ends it, or a second tap ends
  it there. No speech within `listen_timeout_s` closes the window.
- `wake_word`: the word (assistant.wake_word, fed by the loop) opens a listening window of
  `wake.listen_s`; the audio up to the word is forgotten, so the question's pre-roll
  starts after it and the word is never uploaded. Otherwise as `toggle`'s window.

The kiosk page's on-screen button is press-and-hold in every mode (`hold=True`): a
press opens an utterance (taking over one the VAD opened), the release closes it.

A listening window also opens after an answer (the follow-up window, any mode) and, in
wake word mode, after the word. While a window is open the VAD may open an
utterance; when it closes unused, the loop goes back to waiting. Each opening is
published as `listening_started` (earcons and LEDs follow it).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from assistant.audio.endpointer import Endpointer, EndpointEvent, UtteranceDropped
from assistant.events import ConversationReset, Event, ListeningStarted
from assistant.ports import ButtonEvent
from assistant.settings import Trigger
from assistant.states import State


class TriggerPolicy:
    """Turns button edges and listening windows into what the endpointer does."""

    def __init__(
        self,
        mode: Trigger,
        endpointer: Endpointer,
        *,
        listen_timeout_s: float,
        long_press_s: float,
        publish: Callable[[Event], object],
        reset_conversation: Callable[[], None],
    ) -> None:
        self.mode = mode
        self._endpointer = endpointer
        self._listen_timeout_s = listen_timeout_s
        self._long_press_s = long_press_s
        self._publish = publish
        self._reset_conversation = reset_conversation
        self._pressed_at: float | None = None
        self._window_ends: float | None = None
        """While a listening window is open: when it closes if no speech came."""
        self._carried_over: ListeningStarted | None = None
        """What a press during the answer opened, announced once the answer has stopped."""
        endpointer.hands_free = mode is Trigger.HANDS_FREE

    @property
    def waiting_state(self) -> State:
        """Where the loop waits for a question: listening (hands-free) or idle."""
        return State.LISTENING if self.mode is Trigger.HANDS_FREE else State.IDLE

    @property
    def listening(self) -> bool:
        """Whether audio may become a question now (an utterance or a window is open)."""
        return (
            self.mode is Trigger.HANDS_FREE
            or self._endpointer.in_utterance
            or self._window_ends is not None
        )

    def open_window(self, by: str, seconds: float, t: float | None = None) -> None:
        """Let the VAD open an utterance for `seconds` (after a tap, an answer, a wake word)."""
        t = time.monotonic() if t is None else t
        self._window_ends = t + seconds
        self._endpointer.hands_free = True
        self._publish(ListeningStarted(by=by, window_s=seconds))

    def wake_word_heard(self, t: float, listen_s: float) -> None:
        """The wake word ended at about `t`: listen for the question, from after it."""
        self._endpointer.forget_audio()
        self.open_window("wake_word", listen_s, t)

    def close_window(self) -> None:
        self._window_ends = None
        self._endpointer.hands_free = self.mode is Trigger.HANDS_FREE

    def expired(self, now: float) -> bool:
        """True once, when an open window ran out with no speech: it is closed."""
        if self._window_ends is None or self._endpointer.in_utterance or now < self._window_ends:
            return False
        self.close_window()
        return True

    def utterance_over(self) -> None:
        """The utterance ended (or was dropped): a window it came in is used up."""
        self._pressed_at = None
        self.close_window()

    def edges(
        self, edges: list[ButtonEvent], *, hold: bool = False, by: str = "button"
    ) -> list[EndpointEvent]:
        """Apply a talk button's edges since the last block; what they ended.

        `hold`: the button is press-and-hold in every mode (the kiosk page's), else it
        follows the trigger mode. `by` names it in the events. Edges are timestamped in
        the driver's thread, so handling them once per block (20 ms) still cuts the
        utterance at the true press and release.
        """
        ended: list[EndpointEvent] = []
        for edge in edges:
            if hold or self.mode is Trigger.PUSH_TO_TALK:
                ended += self._push_to_talk(edge, by)
            elif self.mode is Trigger.TOGGLE and edge.kind == "pressed":
                ended += self._tap(edge.t)
        return ended

    def press_during_answer(
        self, edge: ButtonEvent, *, hold: bool = False, by: str = "button"
    ) -> bool:
        """A press while answering: True if it interrupts (then the new question starts)."""
        held = hold or self.mode is Trigger.PUSH_TO_TALK
        if edge.kind != "pressed" or (self.mode is Trigger.HANDS_FREE and not held):
            return False
        if held:
            self._pressed_at = edge.t
            self._endpointer.begin_manual(edge.t)
            self._carried_over = ListeningStarted(by=by)
        else:
            self._window_ends = edge.t + self._listen_timeout_s
            self._endpointer.hands_free = True
            self._carried_over = ListeningStarted(by=by, window_s=self._listen_timeout_s)
        return True

    def announce_carried_over(self) -> None:
        """A press during the answer opened the next question: say it is listening."""
        if self._carried_over is not None:
            self._publish(self._carried_over)
            self._carried_over = None

    def _push_to_talk(self, edge: ButtonEvent, by: str) -> list[EndpointEvent]:
        if edge.kind == "pressed":
            if not self._endpointer.manual:
                # An utterance the VAD opened (hands-free) is taken over, audio and all.
                self._pressed_at = edge.t
                self._endpointer.begin_manual(edge.t)
                self._publish(ListeningStarted(by=by))
            return []
        ended = self._endpointer.end_manual(edge.t)
        held = edge.t - self._pressed_at if self._pressed_at is not None else 0.0
        self._pressed_at = None
        if isinstance(ended, UtteranceDropped) and held >= self._long_press_s:
            self._reset_conversation()
            self._publish(ConversationReset(reason="long_press"))
        return [] if ended is None else [ended]

    def _tap(self, t: float) -> list[EndpointEvent]:
        if self._endpointer.in_utterance:
            # The second tap ends the question right there.
            self.close_window()
            return self._endpointer.flush(t)
        if self._window_ends is not None:
            # Tapped again before saying anything: stop listening.
            self.close_window()
            return []
        self.open_window("button", self._listen_timeout_s, t)
        return []
