"""Timing of a completion stream: first-token delay, token rate, keep-alive pings, stop.

The latency options are read at every step, so `PUT /_dev/latency` takes
effect on a stream that is already running.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Final

from assistant.devserver.options import DevServerOptions


class Ping:
    """Yielded instead of a token when a keep-alive is due."""


PING: Final = Ping()


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    if seconds > 0:
        # asyncio.timeout, not wait_for: 3.11's wait_for can lose a cancellation.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await stop.wait()


async def paced(
    tokens: Sequence[str], options: Callable[[], DevServerOptions], stop: asyncio.Event
) -> AsyncIterator[str | Ping]:
    """Yield the tokens on schedule, and PING whenever a keep-alive falls due first.

    Like Dify, pings come every `ping_interval_s` since the start of the stream
    whether or not tokens are flowing. Ends early, without error, once `stop` is set.
    """
    loop = asyncio.get_running_loop()
    start = loop.time()
    interval = options().ping_interval_s
    next_ping = start + interval if interval > 0 else float("inf")
    due = start + options().first_token_ms / 1000
    for index, token in enumerate(tokens):
        if index > 0:
            rate = options().tokens_per_second
            due += 1 / rate if rate > 0 else 0.0
        while not stop.is_set():
            now = loop.time()
            if next_ping <= now and next_ping <= due:
                yield PING
                interval = options().ping_interval_s
                next_ping = next_ping + interval if interval > 0 else float("inf")
                continue
            if now >= due:
                break
            await _sleep_unless(stop, min(due, next_ping) - now)
        if stop.is_set():
            return
        yield token
