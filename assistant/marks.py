"""Per-turn latency marks on one monotonic clock."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

MARK_ORDER = (
    "speech_end",
    "speculation",
    "endpoint",
    "upload_start",
    "upload_end",
    "transcript",
    "first_token",
    "first_sentence",
    "first_tts_byte",
    "first_audio",
    "last_audio",
)
"""The marks of one turn, in the order they normally happen.

speech_end: end of the last voiced frame (VAD) or the button release;
speculation: when the pause that started this turn's speculative work was noticed
(only for a turn that used one; its upload_start and transcript may precede endpoint);
endpoint: when the endpointer decided the utterance was over;
first_audio: first decoded sample handed to the speaker.
"""


@dataclass(slots=True)
class TurnMarks:
    turn: int
    times: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    """Things counted over the turn's utterance (speculations used and discarded)."""

    def mark(self, name: str, t: float | None = None) -> None:
        """Record `name` once; later calls keep the first time."""
        self.times.setdefault(name, time.monotonic() if t is None else t)

    def since_speech_end_ms(self) -> dict[str, float]:
        origin = self.times.get("speech_end")
        if origin is None:
            return {}
        return {
            name: round((self.times[name] - origin) * 1000, 1)
            for name in MARK_ORDER
            if name in self.times
        }

    def summary(self) -> str:
        """One log line: each mark in ms after the end of speech."""
        parts = [f"{name}=+{ms:.0f}ms" for name, ms in self.since_speech_end_ms().items()]
        parts += [f"{name}={count}" for name, count in self.counts.items() if count]
        return f"turn {self.turn}: " + " ".join(parts)
