"""What can be asked of the assistant from outside: the one small interface the loop exposes.

Buttons (the cancel, mute and volume buttons; the talk button has its own edge queue, see
assistant.ports.Button), and later the kiosk page's commands, call these. Every call is
cheap, never blocks and never raises: it is made on the event loop's thread and the loop
acts on it at its next step.
"""

from __future__ import annotations

from typing import Protocol


class Controls(Protocol):
    def cancel(self) -> None:
        """Stop whatever is happening: silence at once, requests cancelled, the Dify task
        stopped, an utterance being captured dropped; then back to waiting."""

    def toggle_mute(self) -> None:
        """Stop all listening (no audio goes anywhere), or resume it."""

    def set_muted(self, muted: bool) -> None:
        """Mute or unmute explicitly."""

    def volume_step(self, steps: int) -> None:
        """Turn the output up (positive) or down (negative) by whole steps."""

    def reset_conversation(self) -> None:
        """The next question starts a new conversation (chat apps)."""
