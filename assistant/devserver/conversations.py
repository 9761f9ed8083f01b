"""Chat conversations the dev server remembers, and what its "model" says in them.

A conversation belongs to the `user` that started it (another user's id is as
unknown as a made-up one) and counts its turns; the reply names the turn, so a
client can hear whether its conversation was continued or started anew.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from assistant.devserver.replies import reply_for


@dataclass(slots=True)
class Conversation:
    user: str
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    turns: int = 0
    """Questions asked in it so far, the one being answered included."""
    created_at: int = field(default_factory=lambda: int(time.time()))


def chat_reply(query: str, turn: int, sentences: int = 0) -> str:
    """The answer to `query` as turn `turn` (1 = first) of a conversation; `sentences` as
    in `reply_for`, the closing turn sentence always included."""
    return f"{reply_for(query, sentences)} This is turn {turn} of our conversation."
