"""Small asyncio helpers the stages share."""

from __future__ import annotations

import asyncio


async def cancel_and_wait(task: asyncio.Task[object]) -> None:
    """Cancel `task` and wait until it has finished.

    Unlike `with suppress(CancelledError): await task`, a cancellation of the
    *caller* while it waits is not swallowed: it still propagates.
    """
    task.cancel()
    await asyncio.wait([task])
    if not task.cancelled():
        # Mark a failure as retrieved: the task reports its own errors.
        task.exception()
