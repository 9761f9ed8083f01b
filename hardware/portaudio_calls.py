"""Running PortAudio's blocking calls: one at a time, in threads of their own, with time limits.

PortAudio's initialise, open, start, close and terminate are not thread-safe,
so every such call takes `_PA_LOCK` (`portaudio_lock`), waiting for it at most
LOCK_WAIT_S. `run_blocking` runs a call in a daemon thread and bounds the
await: a failing call becomes a DeviceError on the loop instead of a stray
exception, and a call that never returns becomes DeviceWedged instead of a
hang: it still holds the lock, so the process cannot use PortAudio again (the
assistant exits for a restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

from assistant.ports import DeviceError, DeviceWedged

_LOG = logging.getLogger(__name__)

_T = TypeVar("_T")

_PA_LOCK = threading.Lock()
"""PortAudio's initialise/open/start/close/terminate are not thread-safe; workers take turns."""

LOCK_WAIT_S = 5.0
"""A worker waiting longer than this for another PortAudio call gives up with a DeviceError."""
CALL_TIMEOUT_S = 10.0
"""Bound on any awaited blocking PortAudio call (initialising scans every ALSA device)."""

_wedged_call: str | None = None
"""The PortAudio call that never returned, if one has: it still holds `_PA_LOCK`."""


@contextlib.contextmanager
def portaudio_lock(what: str) -> Iterator[None]:
    """Hold PortAudio for one call (`what`, for the error); for the caller's worker thread."""
    if _wedged_call is not None:
        raise DeviceWedged(f"{what}: PortAudio stopped responding earlier ({_wedged_call})")
    if not _PA_LOCK.acquire(timeout=LOCK_WAIT_S):
        raise DeviceError(f"{what}: another PortAudio call has not returned in {LOCK_WAIT_S:g} s")
    try:
        yield
    finally:
        _PA_LOCK.release()


async def run_blocking(
    call: Callable[[], _T],
    what: str,
    *,
    release: Callable[[_T], None] | None = None,
    timeout: float = CALL_TIMEOUT_S,
) -> _T:
    """Run a blocking PortAudio call in a worker; DeviceWedged if it takes over `timeout`.

    A worker cannot be interrupted: if the caller gives up (timeout or
    cancellation), whatever the call still returns is handed to `release`
    in another worker, so nothing is left open. A call that outlives its
    time limit is taken as PortAudio hung for good: every later call fails at
    once with DeviceWedged instead of queueing behind it.
    """
    global _wedged_call
    future = _in_own_thread(call)
    try:
        async with asyncio.timeout(timeout):
            return await asyncio.shield(future)
    except TimeoutError:
        _release_when_done(future, release, what)
        _wedged_call = f"{what} did not return within {timeout:g} s"
        raise DeviceWedged(_wedged_call) from None
    except asyncio.CancelledError:
        # Give the worker a moment so a cancelled open leaves nothing open behind it.
        try:
            await asyncio.wait([future], timeout=LOCK_WAIT_S)
        finally:
            _release_when_done(future, release, what)
        raise


def _in_own_thread(call: Callable[[], _T]) -> asyncio.Future[_T]:
    """Run `call` in a daemon thread of its own; its outcome lands in the returned future.

    Not the loop's executor: asyncio's shutdown and the interpreter's exit wait
    for executor threads, so one PortAudio call that never returns would keep
    the process from ever exiting. A daemon thread is left behind instead.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[_T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        if not future.done():
            outcome()

    def work() -> None:
        try:
            value = call()
        except BaseException as exc:  # handed to the awaiting task, which decides
            outcome = functools.partial(future.set_exception, exc)
        else:
            outcome = functools.partial(future.set_result, value)
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting
            loop.call_soon_threadsafe(settle, outcome)

    threading.Thread(target=work, name="portaudio-call", daemon=True).start()
    return future


async def run_quietly(call: Callable[[], None], what: str) -> None:
    """`run_blocking` for clean-up, which must not fail: a hung call is logged, not raised."""
    try:
        await run_blocking(call, what)
    except DeviceError as exc:
        _LOG.error("%s", exc)


def _release_when_done(
    future: asyncio.Future[_T], release: Callable[[_T], None] | None, what: str
) -> None:
    def done(finished: asyncio.Future[_T]) -> None:
        if finished.cancelled():
            return
        if (exc := finished.exception()) is not None:
            _LOG.warning("%s failed after it was given up on: %s", what, exc)
        elif release is not None:
            _LOG.info("%s returned after it was given up on; releasing it", what)
            value = finished.result()
            _in_own_thread(lambda: release(value))

    if future.done():
        done(future)
    else:
        _LOG.error("%s is still running in PortAudio; its result will be released", what)
        future.add_done_callback(done)
