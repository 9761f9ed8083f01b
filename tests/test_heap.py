"""Freed heap goes back to the system a moment after each turn."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from assistant.events import Marks, StateChanged
from assistant.heap import HeapTrimmer


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def test_a_turns_end_trims_the_heap_holes_it_left() -> None:
    trimmer = HeapTrimmer(delay_s=0.05)
    if trimmer._trim is None:
        pytest.fail("glibc's malloc_trim is not available on this Linux")
    # Interleaved blocks under the mmap threshold: freeing every other one leaves holes
    # inside the heap that free() alone never returns.
    blocks = [bytearray(b"\x01" * 60_000) for _ in range(1000)]
    kept = blocks[1::2]
    del blocks
    before = _rss_mb()
    trimmer.on_event(StateChanged(state="idle", turn=0))  # not a turn's end: nothing happens
    await asyncio.sleep(0.1)
    assert trimmer.trims == 0
    trimmer.on_event(Marks(turn=1))
    await asyncio.sleep(0.2)
    assert trimmer.trims == 1
    assert before - _rss_mb() > 15, "about 30 MB of holes should have been returned"
    assert len(kept) == 500
    trimmer.close()
