"""Speech over an answer, once the device's own voice is cancelled: pause at once, end the
answer when the voice proves to be speech, play on when it does not.

Any voice the endpointer hears over the answer pauses it at once (silence within a device
period and the output latency: well inside the 300 ms a person expects), since every
moment of talking over the answer costs the user's first words some of their clarity
(AEC3 ducks double talk); only speech that lasts `barge_in_min_speech_ms` ends it, so a
cough, a door or a short word costs a moment of the answer, not the answer. The
endpointer keeps the utterance it opened at the voice's onset, pre-roll included, so a
confirmed interjection is the next question, whole.
"""

from __future__ import annotations

from collections.abc import Callable

from assistant.audio.endpointer import (
    Endpointer,
    EndpointEvent,
    SpeechStarted,
    UtteranceDropped,
    UtteranceEnded,
)
from assistant.audio.output_sink import OutputSink
from assistant.events import AnswerPaused, AnswerResumed, Event

ECHO_SETTLE_S = 0.25
"""Once the answer is paused, what the room still carries of it (the output's latency, the
room's delay up to 120 ms tested, its reverberation) has died away after this long. Only
voice heard after that ends the answer: what the canceller left of the device's own voice
cannot go on past it, a person asking something does."""

SPEECH_GAP_MS = 200
"""Voice heard before the echo settled that is followed by at least this much silence
before the speech that ends the answer is not part of the question: the canceller letting
a moment of the answer through (what paused it), or a word under the answer. The question
is uploaded from the speech after that gap, with its pre-roll."""


class VoiceBargeIn:
    """One answer's watch for speech over it."""

    def __init__(
        self,
        sink: OutputSink,
        endpointer: Endpointer,
        publish: Callable[[Event], object],
        *,
        min_speech_ms: int,
        resume_after_s: float,
    ) -> None:
        self._sink = sink
        self._endpointer = endpointer
        self._publish = publish
        self._min_speech_ms = min_speech_ms
        self._resume_after_s = resume_after_s
        self._onset: float | None = None
        """The first voiced frame of the voice that paused the answer; None while playing."""
        self._paused_at = 0.0

    @property
    def paused(self) -> bool:
        return self._onset is not None

    def heard(self, found: list[EndpointEvent], now: float) -> float | None:
        """What the endpointer made of the latest block; the voice's onset once it is
        speech enough to end the answer, else None."""
        for event in found:
            if isinstance(event, SpeechStarted) and self._onset is None:
                self._onset, self._paused_at = event.t, now
                self._sink.pause()
                self._publish(AnswerPaused(t_speech=event.t))
            elif isinstance(event, UtteranceDropped | UtteranceEnded) and self._onset is not None:
                self.resume("too_short", now)
        if self._onset is None:
            return None
        settled_at = self._paused_at + ECHO_SETTLE_S
        if self._endpointer.last_voiced_end >= settled_at:
            self._endpointer.drop_speech_before(settled_at, SPEECH_GAP_MS)
            if self._endpointer.speech_ms >= self._min_speech_ms:
                return self._onset
        if now - self._paused_at >= self._resume_after_s:
            self.resume("timeout", now)
            self._endpointer.reset()  # that sound is no question: a new voice starts afresh
        return None

    def resume(self, reason: str, now: float) -> None:
        """Play on from where it paused (nothing to do when not paused)."""
        if self._onset is None:
            return
        self._onset = None
        self._sink.resume()
        paused_ms = round((now - self._paused_at) * 1000)
        self._publish(AnswerResumed(reason=reason, paused_ms=paused_ms))

    def close(self) -> None:
        """The answer is over (played, cancelled or interrupted): never leave it held."""
        if self._onset is not None:
            self._onset = None
            self._sink.resume()
