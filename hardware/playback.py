"""The playback ring shared by the PyAudio speaker and the WAV-file sink.

`play()` writes into a fixed-capacity ring on the event loop while the device
(PortAudio's callback thread, or the WAV sink's ticker task) pulls one period at
a time, padding with silence when the ring runs dry. Keeping this machinery
(`SampleRing`, `PlaybackQueue`) in one place gives both sinks the same
backpressure, flush and drain semantics, and the same underrun accounting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable

import numpy as np

_LOG = logging.getLogger(__name__)

_HEALTH_POLL_S = 0.2
"""How often a waiting writer re-checks the device even without progress news."""


class SampleRing:
    """Fixed-capacity FIFO of int16 samples, shared by a writer and a reader thread."""

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError("ring capacity must be positive")
        self._buf = np.zeros(capacity, dtype=np.int16)
        self._start = 0
        self._size = 0
        # Held only for the copies: a PortAudio callback must never wait long.
        self._lock = threading.Lock()

    @property
    def capacity(self) -> int:
        return len(self._buf)

    @property
    def free(self) -> int:
        return len(self._buf) - self._size

    def __len__(self) -> int:
        return self._size

    def write(self, samples: np.ndarray) -> int:
        """Append as many of `samples` as fit; returns how many."""
        cap = len(self._buf)
        with self._lock:
            n = min(len(samples), cap - self._size)
            end = (self._start + self._size) % cap
            first = min(n, cap - end)
            self._buf[end : end + first] = samples[:first]
            self._buf[: n - first] = samples[first:n]
            self._size += n
        return n

    def read_into(self, out: np.ndarray) -> int:
        """Move up to len(out) samples into the front of `out`; returns how many."""
        cap = len(self._buf)
        with self._lock:
            n = min(len(out), self._size)
            first = min(n, cap - self._start)
            out[:first] = self._buf[self._start : self._start + first]
            out[first:n] = self._buf[: n - first]
            self._start = (self._start + n) % cap
            self._size -= n
        return n

    def clear(self) -> int:
        """Drop everything; returns how many samples were dropped."""
        with self._lock:
            dropped = self._size
            self._start = 0
            self._size = 0
        return dropped


class PlaybackQueue:
    """The buffer between `play()` and a device that pulls one period at a time.

    Writers (`put`, `drain`, `flush`) run on the event loop; `pull` runs in the
    device's context: the PortAudio thread (`threaded=True`) or a loop task.
    """

    def __init__(self, capacity: int, loop: asyncio.AbstractEventLoop, *, threaded: bool) -> None:
        self._ring = SampleRing(capacity)
        self._loop = loop
        self._threaded = threaded
        self._progress = asyncio.Event()
        self._waiters = 0
        self._generation = 0
        self._busy = False
        self._dry = True
        self._flushed = False
        self._draining = 0
        self.underruns = 0
        """Times the ring ran dry mid-playback, i.e. not explained by flush() or drain()."""
        self.paused = False
        """While True the device plays silence and the ring keeps its place (set on the
        loop, read by the device: a plain attribute is enough for one flag)."""

    @property
    def capacity(self) -> int:
        return self._ring.capacity

    @property
    def queued(self) -> int:
        """Samples waiting in the ring."""
        return len(self._ring)

    @property
    def is_playing(self) -> bool:
        # _busy covers the period that took the last samples: it is still with the device.
        return len(self._ring) > 0 or self._busy

    def pull(self, out: np.ndarray) -> int:
        """Fill `out` from the ring, silence for what is missing; returns the real samples.
        Paused: all silence, and the ring keeps everything for later."""
        if self.paused:
            out[:] = 0
            return 0
        n = self._ring.read_into(out)
        out[n:] = 0
        dry = n < len(out)
        excused = self._flushed or self._draining > 0
        self._flushed = False
        if dry and not self._dry and not excused:
            self.underruns += 1
        self._dry = dry
        self._busy = n > 0
        # A waiter registers before checking its condition, so a pull that sees
        # no waiter happened before that check and cannot be missed.
        if self._waiters:
            self._wake()
        return n

    def _wake(self) -> None:
        if not self._threaded:
            self._progress.set()
            return
        try:
            self._loop.call_soon_threadsafe(self._progress.set)
        except RuntimeError:
            _LOG.debug("playback progress after the event loop closed; nobody is waiting")

    async def put(self, samples: np.ndarray, timeout: float, check: Callable[[], None]) -> None:
        """Queue all of `samples`, waiting for room; a flush meanwhile drops the rest.

        `timeout` bounds each wait for room (a stalled device), not the whole
        call: a long clip legitimately takes as long as it plays.
        """
        check()
        generation = self._generation
        done = self._ring.write(samples)
        while done < len(samples):
            await self._wait(
                lambda: self._ring.free > 0 or self._generation != generation,
                timeout,
                check,
                f"playback buffer stayed full for {timeout:.2f} s",
            )
            if self._generation != generation:
                return
            done += self._ring.write(samples[done:])

    async def drain(self, timeout: float, check: Callable[[], None]) -> None:
        """Wait until the ring is empty and its last period went to the device."""
        self._draining += 1
        try:
            await self._wait(
                lambda: not self.is_playing,
                timeout,
                check,
                f"playback did not finish within {timeout:.2f} s",
            )
        finally:
            self._draining -= 1

    def flush(self) -> int:
        """Drop all queued audio (and what waiting put() calls still hold)."""
        dropped = self._ring.clear()
        self._generation += 1
        self._flushed = True
        self._progress.set()
        return dropped

    def device_stopped(self) -> None:
        """The device was closed: the period it held is gone, nothing plays until it reopens."""
        self._busy = False
        self._dry = True
        self._progress.set()

    async def _wait(
        self, ready: Callable[[], bool], timeout: float, check: Callable[[], None], message: str
    ) -> None:
        deadline = self._loop.time() + timeout
        self._waiters += 1
        try:
            while not ready():
                check()
                remaining = deadline - self._loop.time()
                if remaining <= 0:
                    raise TimeoutError(message)
                # Cleared and awaited with no await in between, and every set()
                # runs on this loop: a pull after the check still wakes us.
                self._progress.clear()
                # A quiet poll interval is not an error: loop to re-check the
                # device's health and the deadline.
                # asyncio.timeout, not wait_for: Python 3.11's wait_for can
                # swallow a cancellation that races with the event being set.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(remaining, _HEALTH_POLL_S)):
                        await self._progress.wait()
        finally:
            self._waiters -= 1


def as_mono_int16(samples: np.ndarray) -> np.ndarray:
    """`samples` as a sink accepts them, or TypeError/ValueError saying what is wrong."""
    array = np.asarray(samples)
    if array.ndim != 1:
        raise ValueError(f"expected mono samples (one dimension), got shape {array.shape}")
    if array.dtype != np.int16:
        raise TypeError(f"expected int16 samples, got {array.dtype}")
    return array
