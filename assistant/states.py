"""The loop's states; only VoiceLoop changes them, every change is published."""

from enum import StrEnum


class State(StrEnum):
    IDLE = "idle"
    """Waiting for the talk button (push-to-talk) or starting up."""
    LISTENING = "listening"
    """Capturing: VAD or the held button decides where the utterance ends."""
    TRANSCRIBING = "transcribing"
    """The utterance is being uploaded and recognised."""
    THINKING = "thinking"
    """The answer is being written; nothing audible yet."""
    SPEAKING = "speaking"
    """The answer is playing (the rest may still be written and synthesised)."""
    ERROR = "error"
    """Something failed; the loop says so, recovers and returns to listening."""
