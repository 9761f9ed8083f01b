"""Giving freed heap back to the system after each turn.

A turn allocates and frees a few MB (decoded speech, resampler buffers, HTTP
bodies). glibc keeps freed memory for reuse, so resident memory creeps up over
hundreds of turns although nothing leaks (bench/RESULTS.md). `malloc_trim(0)`
returns it; it costs a few milliseconds, so it runs a moment after a turn ends,
while the loop is only listening.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from collections.abc import Callable

from assistant.events import Event

log = logging.getLogger(__name__)

TRIM_DELAY_S = 1.0
"""After the turn's end: the answer's last buffers have been freed by then."""


def _malloc_trim() -> Callable[[], None] | None:
    """glibc's malloc_trim(0), or None where there is no glibc (musl, macOS)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        trim = libc.malloc_trim if libc is not None else None
    except (OSError, AttributeError):
        return None
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int

    def trim_all() -> None:
        trim(0)

    return trim_all


class HeapTrimmer:
    """Bus listener: trims the heap shortly after each turn (`marks` event)."""

    def __init__(self, delay_s: float = TRIM_DELAY_S) -> None:
        self._trim = _malloc_trim()
        self._delay_s = delay_s
        self._pending: asyncio.TimerHandle | None = None
        self.trims = 0

    def on_event(self, event: Event) -> None:
        if event.kind != "marks" or self._trim is None:
            return
        if self._pending is not None:
            self._pending.cancel()
        self._pending = asyncio.get_running_loop().call_later(self._delay_s, self._run)

    def _run(self) -> None:
        self._pending = None
        assert self._trim is not None
        self._trim()
        self.trims += 1

    def close(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
