"""Running the assistant until it ends or is told to stop.

SIGTERM (`systemctl stop`) and SIGINT (Ctrl-C) cancel the run, so every device and
connection is closed on the way out, and systemd hears STOPPING=1 at once. A stop asked
for by SIGTERM is a clean exit (status 0); Ctrl-C exits with 130, as a shell expects.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Coroutine
from typing import Any

from assistant.service_status import stopping

EXIT_INTERRUPTED = 130
"""Ctrl-C (128 + SIGINT), as shells report it."""


async def run_until_stopped(main: Coroutine[Any, Any, None]) -> int:
    """Run `main` to its end, or until SIGTERM/SIGINT; the exit status."""
    task = asyncio.ensure_future(main)
    loop = asyncio.get_running_loop()
    received: list[int] = []

    def stop(signum: int) -> None:
        if not received:
            stopping()
        received.append(signum)
        task.cancel()

    for signum in (signal.SIGTERM, signal.SIGINT):
        # Not on every platform (Windows); Ctrl-C then ends asyncio.run instead.
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop, signum)
    try:
        await task
    except asyncio.CancelledError:
        if not received:
            raise  # cancelled from outside: not ours to turn into an exit status
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(signum)
        if not received:
            stopping()
    if received and received[0] == signal.SIGINT:
        return EXIT_INTERRUPTED
    return 0
