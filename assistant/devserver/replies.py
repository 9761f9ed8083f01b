"""What the dev server's "model" answers, split the way a model streams it.

The answer is deterministic, depends on the query, and has several sentences
so that a client's sentence splitting and early speech can be heard working.
"""

from __future__ import annotations

import re
from decimal import Decimal

_TOKEN = re.compile(r"\s*\S+")
_PRICE_QUANTUM = Decimal("0.0000001")
_PROMPT_OVERHEAD_TOKENS = 24
"""A real app wraps the query in a prompt template; usage counts that too."""
PROMPT_UNIT_PRICE = Decimal("0.001")
COMPLETION_UNIT_PRICE = Decimal("0.002")
PRICE_UNIT = Decimal("0.001")


def reply_for(query: str, sentences: int = 0) -> str:
    """The whole answer to `query`, or only its first `sentences` sentences (0 = all)."""
    asked = " ".join(query.split())
    opening = f"You asked: {asked}" if asked else "You asked nothing at all."
    if opening[-1] not in ".?!":
        opening += "."
    parts = [
        opening,
        "This is the local development server answering.",
        "It speaks in several sentences so that streaming can be heard.",
        "The first sentence is already playing while the rest is still being written.",
    ]
    return " ".join(parts[:sentences] if sentences > 0 else parts)


def tokens(answer: str) -> list[str]:
    """The answer as word-sized stream chunks, each with its leading space.

    Concatenating the chunks gives back the answer exactly.
    """
    return _TOKEN.findall(answer)


def prompt_tokens(query: str) -> int:
    """Token count of the prompt the query would be wrapped in."""
    return _PROMPT_OVERHEAD_TOKENS + len(tokens(query))


def usage(prompt: int, completion: int, latency: float) -> dict[str, object]:
    """Dify's `metadata.usage`, prices as decimal strings like the real service."""
    prompt_price = (prompt * PROMPT_UNIT_PRICE * PRICE_UNIT).quantize(_PRICE_QUANTUM)
    completion_price = (completion * COMPLETION_UNIT_PRICE * PRICE_UNIT).quantize(_PRICE_QUANTUM)
    return {
        "prompt_tokens": prompt,
        "prompt_unit_price": str(PROMPT_UNIT_PRICE),
        "prompt_price_unit": str(PRICE_UNIT),
        "prompt_price": str(prompt_price),
        "completion_tokens": completion,
        "completion_unit_price": str(COMPLETION_UNIT_PRICE),
        "completion_price_unit": str(PRICE_UNIT),
        "completion_price": str(completion_price),
        "total_tokens": prompt + completion,
        "total_price": str(prompt_price + completion_price),
        "currency": "USD",
        "latency": latency,
    }
