"""WAV files that behave like a microphone and a speaker, on one shared timeline.

`WavFileSource` releases a file's audio block by block at the pace a real
microphone would; `WavFileSink` consumes queued audio period by period at the
pace a real speaker would, writing what it "plays" to a WAV file whose sample n
is the sound n samples after the source's start. Together they let the demo,
the tests and session replays measure the assistant's timing from one file.

The playback ring (`hardware.playback`) also serves the PyAudio speaker, so
both sinks share their backpressure, flush and drain semantics; WAV decoding
and encoding live in `hardware.wav_io`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soxr

from assistant.ports import CAPTURE_RATE, AudioBlock, DeviceError, PlayedListener
from hardware.playback import PlaybackQueue, as_mono_int16
from hardware.wav_io import _PcmWavWriter, read_wav  # read_wav: re-exported for callers

_LOG = logging.getLogger(__name__)


class WavFileSource:
    """A WAV file played in real time as if it were a microphone.

    Block k holds the file's 16 kHz samples from k*block_ms, carries
    `t_start = t0 + k*block_ms`, and is released when its last sample has
    "happened" (t0 + (k+1)*block_ms), exactly when a real microphone could
    deliver it. The last block is padded with silence to a full block.
    """

    def __init__(
        self,
        path: str | Path,
        block_ms: int = 20,
        realtime: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if block_ms <= 0:
            raise ValueError("block_ms must be positive")
        self._path = Path(path)
        self._block = CAPTURE_RATE * block_ms // 1000
        self._realtime = realtime
        self._clock = clock
        self._samples: np.ndarray | None = None
        self._t0: float | None = None
        self._next = 0
        self._closed = False
        self._handover_s = 0.0

    @property
    def t0(self) -> float:
        """The timeline origin: clock() when start() finished loading the file."""
        if self._t0 is None:
            raise RuntimeError("WavFileSource not started")
        return self._t0

    @property
    def duration(self) -> float:
        """Length of the file's audio in seconds (known after start())."""
        if self._samples is None:
            raise RuntimeError("WavFileSource not started")
        return len(self._samples) / CAPTURE_RATE

    def set_handover(self, seconds: float) -> None:
        """Release blocks in batches of up to `seconds`, as the microphone does."""
        self._handover_s = max(0.0, seconds)

    async def start(self) -> None:
        """Load the file and start its clock; after close(), resume where it stopped.

        Resuming keeps t0: a loop that reopens its devices gets the blocks it
        missed at once, then real-time pacing again.
        """
        self._handover_s = 0.0
        if self._samples is not None:
            self._closed = False
            return
        try:
            samples, rate = await asyncio.to_thread(read_wav, self._path)
        except (OSError, ValueError) as exc:
            raise DeviceError(f"cannot read {self._path}: {exc}") from exc
        if rate != CAPTURE_RATE and len(samples):
            samples = soxr.resample(samples, rate, CAPTURE_RATE)
        self._samples = np.ascontiguousarray(samples, dtype=np.int16)
        self._t0 = self._clock()

    async def read(self, timeout: float) -> AudioBlock | None:
        if self._samples is None or self._t0 is None:
            raise DeviceError("WavFileSource not started")
        first = self._next * self._block
        if self._closed or first >= len(self._samples):
            return None
        block_s = self._block / CAPTURE_RATE
        t_start = self._t0 + self._next * block_s
        if self._realtime:
            wait = t_start + block_s - self._clock()
            if wait > 0:
                # Not due yet: with a handover, wait for the rest of the batch
                # too; its other blocks are then due and come without a wait.
                wait += max(0.0, self._handover_s - block_s)
            if wait > timeout:
                await asyncio.sleep(timeout)
                raise TimeoutError(f"next block of {self._path.name} is due in {wait:.3f} s")
            if wait > 0:
                await asyncio.sleep(wait)
        samples = self._samples[first : first + self._block]
        if len(samples) < self._block:
            samples = np.concatenate([samples, np.zeros(self._block - len(samples), np.int16)])
        self._next += 1
        return AudioBlock(samples.copy(), t_start)

    async def close(self) -> None:
        self._closed = True


class WavFileSink:
    """A speaker that writes what it plays to a mono 16-bit WAV file, in real time.

    A ticker task acts as the device: it keeps the file one period ahead of
    the clock, pulling from the playback ring (silence when empty), so sample n
    of the file is what sounds at t0 + n/sample_rate. Audio queued at time t
    therefore lands at or after sample (t - t0)*rate, at most one period late,
    like a device with one period of buffering. The ticker counts samples from
    the clock, not wakeups, so a late wakeup never shifts the timeline.
    """

    def __init__(
        self,
        path: str | Path,
        sample_rate: int,
        period_ms: int,
        t0: float | None = None,
        *,
        playback_buffer_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if sample_rate <= 0 or period_ms <= 0 or playback_buffer_s <= 0:
            raise ValueError("sample_rate, period_ms and playback_buffer_s must be positive")
        self._path = Path(path)
        self._rate = sample_rate
        self._period = sample_rate * period_ms // 1000
        self._buffer_s = playback_buffer_s
        self._clock = clock
        self._t0 = t0
        self._file: _PcmWavWriter | None = None
        self._queue: PlaybackQueue | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._started = False
        self._listener: PlayedListener | None = None
        self._paused = False

    @property
    def sample_rate(self) -> int:
        return self._rate

    def monitor(self, listener: PlayedListener | None) -> None:
        """Hand each stretch to `listener` as it is written, timed by its place in the file."""
        self._listener = listener

    def pause(self) -> None:
        self._paused = True
        if self._queue is not None:
            self._advance()  # what was due before the pause did play
            self._queue.paused = True

    def resume(self) -> None:
        self._paused = False
        if self._queue is not None:
            self._advance()  # the pause lasted until now
            self._queue.paused = False
            self._wake.set()

    @property
    def path(self) -> Path:
        return self._path

    @property
    def t0(self) -> float | None:
        """The timeline origin; set at start() if not given before."""
        return self._t0

    @property
    def samples_written(self) -> int:
        return self._file.frames if self._file is not None else 0

    @property
    def underruns(self) -> int:
        return self._queue.underruns if self._queue is not None else 0

    @property
    def is_playing(self) -> bool:
        return self._queue is not None and self._queue.is_playing

    def set_t0(self, t0: float) -> None:
        """Put sample 0 of the file at `t0` (the source's start).

        Audio already written is shifted so it keeps its place in time:
        silence is prepended, or samples from before the new origin are cut.
        """
        if self._file is not None and self._t0 is not None:
            shift = round((self._t0 - t0) * self._rate)
            if shift:
                self._file.shift(shift)
        self._t0 = t0

    async def start(self) -> None:
        """Create the file and start playing; after close(), append on the same timeline."""
        if self._file is not None:
            raise RuntimeError("WavFileSink already started")
        loop = asyncio.get_running_loop()
        try:
            self._file = _PcmWavWriter(self._path, self._rate, resume=self._started)
        except OSError as exc:
            raise DeviceError(f"cannot write {self._path}: {exc}") from exc
        self._started = True
        if self._t0 is None:
            self._t0 = self._clock()
        self._queue = PlaybackQueue(round(self._buffer_s * self._rate), loop, threaded=False)
        self._queue.paused = self._paused
        self._ticker = asyncio.create_task(self._tick(), name=f"wav-sink {self._path.name}")

    async def play(self, samples: np.ndarray, timeout: float) -> None:
        queue = self._require_queue()
        # Catch the "device" up first: after a stalled loop (or while the ticker
        # idles) the time that passed is not written yet, and new audio must not fill it.
        self._advance()
        self._wake.set()
        await queue.put(as_mono_int16(samples), timeout, self._check)

    def flush(self) -> None:
        if self._queue is not None:
            self._advance()  # what was due before the flush did play
            self._queue.flush()
        self.resume()  # what comes next plays at once

    async def drain(self, timeout: float) -> None:
        await self._require_queue().drain(timeout, self._check)

    async def close(self) -> None:
        ticker, self._ticker = self._ticker, None
        crashed = False
        if ticker is not None:
            ticker.cancel()
            await asyncio.wait([ticker])
            crashed = not ticker.cancelled() and ticker.exception() is not None
            if crashed:
                _LOG.error("%s: ticker had failed", self._path, exc_info=ticker.exception())
        if self._file is None:
            return
        try:
            if not crashed:
                self._advance()  # the period in progress at close
        finally:
            file, self._file = self._file, None
            file.close()
            self._queue = None

    def _require_queue(self) -> PlaybackQueue:
        self._check()
        assert self._queue is not None
        return self._queue

    def _check(self) -> None:
        if self._file is None or self._queue is None:
            raise DeviceError(f"WavFileSink {self._path.name} is not open")
        if self._ticker is not None and self._ticker.done():
            exc = None if self._ticker.cancelled() else self._ticker.exception()
            raise DeviceError(f"WavFileSink {self._path.name} stopped: {exc!r}")

    def _advance(self) -> None:
        """Write everything due by now, one period ahead, pulling from the ring."""
        assert self._file is not None and self._queue is not None and self._t0 is not None
        due = math.floor((self._clock() - self._t0) * self._rate) + self._period
        missing = due - self._file.frames
        if missing > 0:
            chunk = np.empty(missing, dtype=np.int16)
            self._queue.pull(chunk)
            if self._listener is not None:
                self._listener(chunk, self._rate, self._t0 + self._file.frames / self._rate)
            self._file.append(chunk)

    async def _tick(self) -> None:
        while True:
            self._advance()
            assert self._file is not None and self._t0 is not None and self._queue is not None
            if not self._queue.is_playing:
                # Nothing queued: sleep until play(). The silence meanwhile is
                # written by the next _advance(), from the clock, all at once.
                self._wake.clear()
                await self._wake.wait()
                continue
            # Being one period ahead, a whole new period is due when the clock
            # reaches the end of what is written.
            wake = self._t0 + self._file.frames / self._rate
            await asyncio.sleep(max(0.0, wake - self._clock()))
