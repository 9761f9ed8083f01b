"""What a client connecting now needs to show the right thing: the `hello` message.

Kept up to date by listening to the bus (a synchronous listener, so the snapshot and the
stream a new client gets after it never overlap or leave a gap: both happen on the event
loop's thread, between two events).
"""

from __future__ import annotations

import time
from typing import Any

from assistant import events
from assistant.event_commands import VolumeLevel

PROTOCOL_VERSION = 1
MAX_SENTENCES = 100
"""Sentences of the current answer kept for the hello (an answer is rarely longer)."""


class Snapshot:
    def __init__(self) -> None:
        self.app: str | None = None
        """The Dify app's name, once read at start (None until then, or if unknown)."""
        self.volume: VolumeLevel | None = None
        self._state = "idle"
        self._turn = 0
        self._muted = False
        self._volume_db: float | None = None
        self._marks: dict[str, Any] | None = None
        self._transcript: str | None = None
        self._sentences: list[str] = []
        self._answer: str | None = None

    def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.StateChanged):
            self._state, self._turn = event.state, event.turn
        elif isinstance(event, events.UtteranceCaptured):
            # A new question: what the page showed of the last one is over.
            self._turn = event.turn
            self._transcript, self._sentences, self._answer = None, [], None
        elif isinstance(event, events.Transcript):
            self._transcript = event.text
        elif isinstance(event, events.Sentence):
            if len(self._sentences) < MAX_SENTENCES:
                self._sentences.append(event.text)
        elif isinstance(event, events.AnswerReplaced):
            self._sentences = [event.text]
        elif isinstance(event, events.Answer):
            self._answer = event.text
        elif isinstance(event, events.Marks):
            self._marks = event.data
        elif isinstance(event, events.Muted):
            self._muted = event.muted
        elif isinstance(event, events.VolumeChanged):
            self._volume_db = event.db

    def hello(self, commands: list[str]) -> dict[str, Any]:
        volume_db = self.volume.db if self.volume is not None else self._volume_db
        return {
            "t": round(time.monotonic(), 6),
            "kind": "hello",
            "protocol": PROTOCOL_VERSION,
            "app": self.app,
            "state": self._state,
            "turn": self._turn,
            "muted": self._muted,
            "volume_db": volume_db,
            "transcript": self._transcript,
            "sentences": list(self._sentences),
            "answer": self._answer,
            "marks": self._marks,
            "commands": commands,
        }
