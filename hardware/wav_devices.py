"""WAV files that behave like a microphone and a speaker, on one shared timeline.

`WavFileSource` releases a file's audio block by block at the pace a real
microphone would; `WavFileSink` consumes queued audio period by period at the
pace a real speaker would, writing what it "plays" to a WAV file whose sample n
is the sound n samples after the source's start. Together they let the demo,
the tests and session replays measure the assistant's timing from one file.

The playback machinery (`SampleRing`, `PlaybackQueue`) also serves the PyAudio
speaker, so both sinks share their backpressure, flush and drain semantics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soxr

from hardware.interfaces import CAPTURE_RATE, AudioBlock, DeviceError

_LOG = logging.getLogger(__name__)

_HEALTH_POLL_S = 0.2
"""How often a waiting writer re-checks the device even without progress news."""

_WAVE_PCM = 1
_WAVE_FLOAT = 3
_WAVE_EXTENSIBLE = 0xFFFE
_HEADER_BYTES = 44


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """The first channel of a WAV file as int16, and its sample rate.

    Accepts integer PCM (8, 16, 24, 32 bit), IEEE float (32, 64 bit) and the
    extensible header; the `wave` module of Python 3.11 knows only the first.
    """
    raw = Path(path).read_bytes()
    if len(raw) < 12 or raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        raise ValueError(f"{path}: not a RIFF/WAVE file")
    fmt, data = _chunks(raw, path)
    tag, channels, rate, _, block_align, bits = struct.unpack("<HHIIHH", fmt[:16])
    if tag == _WAVE_EXTENSIBLE and len(fmt) >= 26:
        tag = int.from_bytes(fmt[24:26], "little")  # first bytes of the subformat GUID
    if channels < 1 or block_align < channels or rate <= 0:
        raise ValueError(f"{path}: inconsistent fmt chunk ({channels} ch, {rate} Hz)")
    width = block_align // channels
    frames = len(data) // block_align
    pcm = np.frombuffer(data[: frames * block_align], dtype=np.uint8)
    return _decode(pcm.reshape(frames, channels, width)[:, 0, :], tag, bits, path), rate


def _chunks(raw: bytes, path: str | Path) -> tuple[bytes, bytes]:
    fmt: bytes | None = None
    pos = 12
    while pos + 8 <= len(raw):
        chunk_id = raw[pos : pos + 4]
        size = int.from_bytes(raw[pos + 4 : pos + 8], "little")
        # Slicing clamps streamed headers (size 0x7fffffff) to what the file holds.
        body = raw[pos + 8 : pos + 8 + size]
        if chunk_id == b"fmt ":
            fmt = body
        elif chunk_id == b"data":
            if fmt is None or len(fmt) < 16:
                raise ValueError(f"{path}: data chunk before a valid fmt chunk")
            return fmt, body
        pos += 8 + size + (size & 1)
    raise ValueError(f"{path}: no data chunk")


def _decode(first: np.ndarray, tag: int, bits: int, path: str | Path) -> np.ndarray:
    """Bytes of one channel, shape (frames, width), to int16."""
    flat = np.ascontiguousarray(first).reshape(-1)
    if tag == _WAVE_PCM and bits == 8:
        return ((flat.astype(np.int16) - 128) << 8).astype(np.int16)
    if tag == _WAVE_PCM and bits == 16:
        return flat.view("<i2").astype(np.int16)
    if tag == _WAVE_PCM and bits == 24:
        padded = np.zeros((len(first), 4), dtype=np.uint8)
        padded[:, 1:] = first
        return (padded.reshape(-1).view("<i4") >> 16).astype(np.int16)
    if tag == _WAVE_PCM and bits == 32:
        return (flat.view("<i4") >> 16).astype(np.int16)
    if tag == _WAVE_FLOAT and bits in (32, 64):
        values = flat.view("<f4" if bits == 32 else "<f8")
        return np.clip(np.round(values * 32767.0), -32768, 32767).astype(np.int16)
    raise ValueError(f"{path}: unsupported WAV encoding (format tag {tag}, {bits} bit)")


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

    async def start(self) -> None:
        """Load the file and start its clock; after close(), resume where it stopped.

        Resuming keeps t0: a loop that reopens its devices gets the blocks it
        missed at once, then real-time pacing again.
        """
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
        """Fill `out` from the ring, silence for what is missing; returns the real samples."""
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
        sample_rate: int = 24_000,
        period_ms: int = 20,
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
        self._started = False

    @property
    def sample_rate(self) -> int:
        return self._rate

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
        self._ticker = asyncio.create_task(self._tick(), name=f"wav-sink {self._path.name}")

    async def play(self, samples: np.ndarray, timeout: float) -> None:
        queue = self._require_queue()
        # Catch the "device" up first: after a stalled loop the ticker has not
        # yet written the time that passed, and new audio must not fill it.
        self._advance()
        await queue.put(as_mono_int16(samples), timeout, self._check)

    def flush(self) -> None:
        if self._queue is not None:
            self._advance()  # what was due before the flush did play
            self._queue.flush()

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
            self._file.append(chunk)

    async def _tick(self) -> None:
        while True:
            self._advance()
            assert self._file is not None and self._t0 is not None
            # Being one period ahead, a whole new period is due when the clock
            # reaches the end of what is written.
            wake = self._t0 + self._file.frames / self._rate
            await asyncio.sleep(max(0.0, wake - self._clock()))


def as_mono_int16(samples: np.ndarray) -> np.ndarray:
    """`samples` as a sink accepts them, or TypeError/ValueError saying what is wrong."""
    array = np.asarray(samples)
    if array.ndim != 1:
        raise ValueError(f"expected mono samples (one dimension), got shape {array.shape}")
    if array.dtype != np.int16:
        raise TypeError(f"expected int16 samples, got {array.dtype}")
    return array


class _PcmWavWriter:
    """A mono 16-bit WAV written incrementally; the header is fixed on close."""

    def __init__(self, path: Path, rate: int, *, resume: bool = False) -> None:
        self._rate = rate
        if resume:
            # Reopened after close(): keep what was written; the time the sink
            # was closed is filled with silence by the next catch-up.
            self._file = path.open("r+b")
            self.frames = max(0, self._file.seek(0, 2) - _HEADER_BYTES) // 2
        else:
            self._file = path.open("w+b")
            self.frames = 0
        self._write_header()

    def append(self, samples: np.ndarray) -> None:
        self._file.write(samples.astype("<i2", copy=False).tobytes())
        self.frames += len(samples)

    def shift(self, samples: int) -> None:
        """Prepend `samples` of silence (> 0) or cut that many from the front (< 0)."""
        self._file.seek(_HEADER_BYTES)
        data = self._file.read()
        data = bytes(2 * samples) + data if samples > 0 else data[-2 * samples :]
        self._file.seek(_HEADER_BYTES)
        self._file.truncate()
        self._file.write(data)
        self.frames = len(data) // 2

    def close(self) -> None:
        try:
            self._write_header()
        finally:
            self._file.close()

    def _write_header(self) -> None:
        data_bytes = 2 * self.frames
        header = struct.pack(
            "<4sI4s4sIHHIIHH4sI",
            b"RIFF",
            36 + data_bytes,
            b"WAVE",
            b"fmt ",
            16,
            _WAVE_PCM,
            1,
            self._rate,
            2 * self._rate,
            2,
            16,
            b"data",
            data_bytes,
        )
        self._file.seek(0)
        self._file.write(header)
        self._file.seek(0, 2)
