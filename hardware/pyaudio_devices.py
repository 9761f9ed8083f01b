"""Microphone and speaker through PyAudio, bridged from PortAudio's threads to asyncio.

Both streams run in callback mode. The callbacks run on PortAudio's thread and
do the least possible: the microphone's hands the bytes and a timestamp to the
loop with `call_soon_threadsafe`; the speaker's copies one period out of a
lock-protected ring. Everything else (resampling, waiting, bookkeeping) runs
on the event loop, and every blocking PortAudio call runs in a worker thread
(see `hardware.pyaudio_support` for device selection, opening and shutdown).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pyaudio
import soxr

from assistant.settings import AudioSettings
from hardware.interfaces import CAPTURE_RATE, AudioBlock, DeviceError
from hardware.playback import PlaybackQueue, as_mono_int16
from hardware.pyaudio_support import (
    _open_stream,
    _Opened,
    _RateLimitedLog,
    _run_opener,
    _shutdown,
    _start,
)

_LOG = logging.getLogger(__name__)

MIC_RATES = (16_000, 48_000, 44_100)
"""Tried in order when AudioSettings.input_rate is 0: native 16 kHz needs no resampling."""
SPEAKER_RATES = (48_000, 44_100, 24_000, 16_000)
"""Tried in order when AudioSettings.output_rate is 0."""

_MAX_ADC_AGE_S = 1.0
"""A capture timestamp claiming more age than this is not trusted."""
_HEALTH_POLL_S = 0.2
"""How often a read waiting for audio re-checks that the stream is still running."""
_RESYNC_S = 0.1
"""A block timestamp this far off the running timeline restarts it."""
_DRIFT_GAIN = 0.02
"""How fast the timeline follows late timestamps: slow enough to average out GIL waits."""
_RESAMPLE_QUALITY = "LQ"
"""soxr's 16-bit recipe: ample for speech, and its output lags ~15 ms less than HQ's."""


@dataclass(frozen=True, slots=True)
class _Captured:
    data: bytes
    t_start: float
    status: int


class _ToCaptureRate:
    """Device-rate chunks in, fixed-size CAPTURE_RATE blocks with their start times out.

    soxr emits in bursts (nothing for one chunk, two chunks' worth the next);
    re-blocking here costs no latency overall, because the VAD needs whole
    frames anyway, and it gives every consumer regular blocks.
    """

    def __init__(self, rate: int, channels: int, block: int) -> None:
        self._rate = rate
        self._channels = channels
        self._block = block
        self._resampler: soxr.ResampleStream | None = None
        self._in_count = 0
        self._out_count = 0
        self._pending = np.zeros(0, dtype=np.int16)
        self._t_next: float | None = None
        self.reset()

    def reset(self) -> None:
        """Forget the stream so far (after a gap, so the filter does not smear across it)."""
        if self._rate != CAPTURE_RATE:
            self._resampler = soxr.ResampleStream(
                self._rate, CAPTURE_RATE, 1, dtype="int16", quality=_RESAMPLE_QUALITY
            )
        self._in_count = 0
        self._out_count = 0
        self._pending = np.zeros(0, dtype=np.int16)
        self._t_next = None

    def _smooth(self, measured: float, frames: int) -> float:
        """A steady timeline through noisy callback timestamps.

        The noise is mostly lateness (the callback waits for the GIL before it
        reads the clock), so an earlier-than-predicted time is believed at
        once, a later one only slowly (that is clock drift), and a large jump
        (a stall, lost samples) restarts the timeline.
        """
        predicted = self._t_next
        if predicted is None or abs(measured - predicted) > _RESYNC_S or measured < predicted:
            t = measured
        else:
            t = predicted + (measured - predicted) * _DRIFT_GAIN
        self._t_next = t + frames / self._rate
        return t

    def push(self, data: bytes, t_start: float) -> list[AudioBlock]:
        samples = np.frombuffer(data, dtype=np.int16)
        if self._channels > 1:
            samples = samples[:: self._channels]  # the first channel of interleaved frames
        samples = np.ascontiguousarray(samples)
        t_start = self._smooth(t_start, len(samples))
        if self._resampler is None:
            out, t_out = samples, t_start
        else:
            out = self._resampler.resample_chunk(samples)
            # soxr aligns output sample j with input sample j*ratio; anchoring
            # that on this chunk's own timestamp keeps device clock drift out.
            ratio = self._rate / CAPTURE_RATE
            t_out = t_start + (self._out_count * ratio - self._in_count) / self._rate
            self._in_count += len(samples)
        self._out_count += len(out)
        if not len(out):
            return []
        # Pending samples come right before `out`: date them from the newest anchor too.
        t_first = t_out - len(self._pending) / CAPTURE_RATE
        pending = np.concatenate([self._pending, out]) if len(self._pending) else out
        full = len(pending) // self._block
        blocks = [
            AudioBlock(
                pending[i * self._block : (i + 1) * self._block].copy(),
                t_first + i * self._block / CAPTURE_RATE,
            )
            for i in range(full)
        ]
        self._pending = pending[full * self._block :].copy()
        return blocks


class Microphone:
    """PyAudio capture delivering 16 kHz mono int16 blocks of `period_ms` to the loop."""

    def __init__(
        self, settings: AudioSettings, pa: pyaudio.PyAudio | None = None, *, queue_s: float = 2.0
    ) -> None:
        self._settings = settings
        self._pa_given = pa
        self._opened: _Opened | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # (sequence number, block): a hole in the numbering marks lost audio.
        self._queue: asyncio.Queue[tuple[int, _Captured]] = asyncio.Queue(
            max(2, round(queue_s * 1000 / max(1, settings.period_ms)))
        )
        self._delivered = 0
        self._last_read: int | None = None
        self._callback_rate = 1
        self._converter: _ToCaptureRate | None = None
        self._ready: deque[AudioBlock] = deque()
        self._overflow_log = _RateLimitedLog("microphone %r: input overflow (%d so far)")
        self._drop_log = _RateLimitedLog(
            "microphone %r: loop too slow, dropped the oldest block (%d so far)"
        )

    @property
    def device_name(self) -> str:
        return self._opened.name if self._opened else ""

    @property
    def device_rate(self) -> int:
        """The rate the device captures at (blocks are resampled to CAPTURE_RATE)."""
        return self._opened.rate if self._opened else 0

    @property
    def channels(self) -> int:
        return self._opened.channels if self._opened else 0

    @property
    def overflows(self) -> int:
        """Callbacks that PortAudio flagged with an input overflow (lost samples)."""
        return self._overflow_log.count

    @property
    def dropped_blocks(self) -> int:
        """Device blocks dropped because the loop did not read them in time."""
        return self._drop_log.count

    async def start(self) -> None:
        if self._opened is not None:
            raise RuntimeError("microphone already started")
        self._loop = asyncio.get_running_loop()
        rates = (self._settings.input_rate,) if self._settings.input_rate else MIC_RATES
        opened = await _run_opener(
            lambda: _open_stream(
                self._pa_given,
                self._settings.input_device,
                "input",
                rates,
                self._settings.period_ms,
                self._on_audio,
            ),
            self._release,
        )
        self._callback_rate = opened.rate
        self._converter = _ToCaptureRate(
            opened.rate, opened.channels, CAPTURE_RATE * self._settings.period_ms // 1000
        )
        self._ready.clear()
        self._delivered = 0
        self._last_read = None
        while not self._queue.empty():
            self._queue.get_nowait()
        self._opened = opened
        try:
            await asyncio.to_thread(_start, opened.stream)
        except OSError as exc:
            await self.close()
            raise DeviceError(f"cannot start microphone {opened.name!r}: {exc}") from exc
        _LOG.info(
            "microphone %r: %d Hz x%d, %d ms periods",
            opened.name,
            opened.rate,
            opened.channels,
            self._settings.period_ms,
        )

    async def read(self, timeout: float) -> AudioBlock:
        if self._opened is None or self._converter is None:
            raise DeviceError("microphone is not open")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._ready:
            seq, captured = await self._next_captured(deadline, timeout)
            if self._last_read is not None and seq != self._last_read + 1:
                self._converter.reset()  # do not resample or date across lost audio
            self._last_read = seq
            self._ready.extend(self._converter.push(captured.data, captured.t_start))
        return self._ready.popleft()

    async def close(self) -> None:
        opened, self._opened = self._opened, None
        if opened is not None:
            await asyncio.to_thread(self._release, opened)

    async def _next_captured(self, deadline: float, timeout: float) -> tuple[int, _Captured]:
        """The next device block; the stream's health is re-checked while waiting,
        so a vanished device is reported at once, not after the whole timeout."""
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue.empty():
                return self._queue.get_nowait()
            self._check_alive()
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(
                    f"microphone {self.device_name!r} delivered nothing for {timeout:.2f} s"
                )
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
            # cancellation that lands as the queue delivers, and the loop never stops.
            try:
                async with asyncio.timeout(min(remaining, _HEALTH_POLL_S)):
                    return await self._queue.get()
            except TimeoutError:
                continue  # nothing yet: re-check the stream and the deadline

    def _release(self, opened: _Opened) -> None:
        _shutdown(opened.stream, opened.pa if self._pa_given is None else None, "microphone")

    def _check_alive(self) -> None:
        opened = self._opened
        if opened is None:
            raise DeviceError("microphone is not open")
        try:
            active = opened.stream.is_active()
        except OSError as exc:
            raise DeviceError(f"microphone {opened.name!r} failed: {exc}") from exc
        if not active:
            raise DeviceError(f"microphone {opened.name!r} stopped delivering (stream inactive)")

    def _on_audio(
        self, in_data: bytes | None, frame_count: int, time_info: Mapping[str, float], status: int
    ) -> tuple[bytes | None, int]:
        """PortAudio thread: timestamp the block and hand it over; nothing more."""
        now = time.monotonic()
        # PortAudio's clock base varies by host API; only the age of the first
        # sample relative to PortAudio's own "now" is meaningful. The first
        # sample cannot be younger than the block (ALSA-via-Pulse reports less
        # at some rates), and an absurd age means no usable timing at all.
        duration = frame_count / self._callback_rate
        age = time_info.get("current_time", 0.0) - time_info.get("input_buffer_adc_time", 0.0)
        if not (time_info.get("input_buffer_adc_time") and age <= _MAX_ADC_AGE_S):
            age = duration
        age = max(age, duration)
        assert self._loop is not None
        captured = _Captured(in_data or b"", now - age, status)
        try:
            self._loop.call_soon_threadsafe(self._deliver, captured)
        except RuntimeError:
            return None, pyaudio.paComplete  # the loop is closed: nobody will read again
        return None, pyaudio.paContinue

    def _deliver(self, captured: _Captured) -> None:
        """Loop side of the callback: bounded queue, oldest block dropped first."""
        self._delivered += 1
        if captured.status & pyaudio.paInputOverflow:
            self._delivered += 1  # samples were lost before this block: leave a hole
            self._overflow_log.note(self.device_name)
        if self._queue.full():
            self._queue.get_nowait()
            self._drop_log.note(self.device_name)
        self._queue.put_nowait((self._delivered, captured))


class Speaker:
    """PyAudio playback pulling from a ring buffer; the stream never stops between answers."""

    def __init__(self, settings: AudioSettings, pa: pyaudio.PyAudio | None = None) -> None:
        self._settings = settings
        self._pa_given = pa
        self._opened: _Opened | None = None
        self._queue: PlaybackQueue | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # What the callback uses; kept until the stream is closed, while
        # _opened is cleared first so that close() is idempotent.
        self._live: tuple[_Opened, PlaybackQueue] | None = None
        self._period_buf = np.zeros(0, dtype=np.int16)
        self._callback_channels = 1
        self._last_callback = 0.0
        self._underflow_log = _RateLimitedLog("speaker %r: device underflow (%d so far)")

    @property
    def sample_rate(self) -> int:
        if self._opened is None:
            raise RuntimeError("speaker not started: its rate is chosen when the device opens")
        return self._opened.rate

    @property
    def device_name(self) -> str:
        return self._opened.name if self._opened else ""

    @property
    def channels(self) -> int:
        return self._opened.channels if self._opened else 0

    @property
    def output_latency(self) -> float:
        """PortAudio's estimate of the time from a callback's return to the sound."""
        return self._opened.stream.get_output_latency() if self._opened else 0.0

    @property
    def underruns(self) -> int:
        """Times the ring ran dry mid-playback (the writer fell behind)."""
        return self._queue.underruns if self._queue else 0

    @property
    def device_underflows(self) -> int:
        """Callbacks PortAudio flagged as late (the device itself ran out)."""
        return self._underflow_log.count

    @property
    def is_playing(self) -> bool:
        return self._queue is not None and self._queue.is_playing

    async def start(self) -> None:
        if self._opened is not None:
            raise RuntimeError("speaker already started")
        loop = self._loop = asyncio.get_running_loop()
        rates = (self._settings.output_rate,) if self._settings.output_rate else SPEAKER_RATES
        opened = await _run_opener(
            lambda: _open_stream(
                self._pa_given,
                self._settings.output_device,
                "output",
                rates,
                self._settings.period_ms,
                self._on_output,
            ),
            self._release,
        )
        capacity = max(1, round(self._settings.playback_buffer_s * opened.rate))
        self._queue = PlaybackQueue(capacity, loop, threaded=True)
        self._period_buf = np.zeros(opened.rate * self._settings.period_ms // 1000, np.int16)
        self._last_callback = time.monotonic()
        self._callback_channels = opened.channels
        self._opened = opened
        self._live = (opened, self._queue)
        try:
            await asyncio.to_thread(_start, opened.stream)
        except OSError as exc:
            await self.close()
            raise DeviceError(f"cannot start speaker {opened.name!r}: {exc}") from exc
        _LOG.info(
            "speaker %r: %d Hz x%d, %d ms periods, %.1f s buffer",
            opened.name,
            opened.rate,
            opened.channels,
            self._settings.period_ms,
            self._settings.playback_buffer_s,
        )

    async def play(self, samples: np.ndarray, timeout: float) -> None:
        await self._require_queue().put(as_mono_int16(samples), timeout, self._check_alive)

    def flush(self) -> None:
        if self._queue is not None:
            dropped = self._queue.flush()
            _LOG.debug("speaker flushed %d queued samples", dropped)

    async def drain(self, timeout: float) -> None:
        """Wait until the ring is empty, its last period went to PortAudio, and
        the device's output latency has passed, i.e. the last sample was heard."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        queue = self._require_queue()
        was_playing = queue.is_playing
        await queue.drain(timeout, self._check_alive)
        if was_playing:
            await asyncio.sleep(max(0.0, min(self.output_latency, deadline - loop.time())))

    async def close(self) -> None:
        opened, self._opened = self._opened, None
        if opened is not None:
            try:
                await asyncio.to_thread(self._release, opened)
            finally:
                self._live = None
                self._queue = None

    def _release(self, opened: _Opened) -> None:
        _shutdown(opened.stream, opened.pa if self._pa_given is None else None, "speaker")

    def _require_queue(self) -> PlaybackQueue:
        self._check_alive()
        assert self._queue is not None
        return self._queue

    def _check_alive(self) -> None:
        opened = self._opened
        if opened is None or self._queue is None:
            raise DeviceError("speaker is not open")
        try:
            active = opened.stream.is_active()
        except OSError as exc:
            raise DeviceError(f"speaker {opened.name!r} failed: {exc}") from exc
        if not active:
            raise DeviceError(f"speaker {opened.name!r} stopped (stream inactive)")
        silent_for = time.monotonic() - self._last_callback
        if silent_for > self._settings.device_timeout_s:
            raise DeviceError(
                f"speaker {opened.name!r} has not pulled audio for {silent_for:.1f} s"
            )

    def _on_output(
        self, in_data: bytes | None, frame_count: int, time_info: Mapping[str, float], status: int
    ) -> tuple[bytes | None, int]:
        """PortAudio thread: copy one period out of the ring, silence when it is empty."""
        self._last_callback = time.monotonic()
        live = self._live
        if live is None:  # closed between PortAudio's call and ours
            return bytes(2 * frame_count * self._callback_channels), pyaudio.paComplete
        opened, queue = live
        if status & pyaudio.paOutputUnderflow:
            # Logging takes locks and does I/O: leave it to the loop.
            assert self._loop is not None
            try:
                self._loop.call_soon_threadsafe(self._underflow_log.note, opened.name)
            except RuntimeError:  # the loop is closed: nobody will queue audio again
                return bytes(2 * frame_count * opened.channels), pyaudio.paComplete
        buf = (
            self._period_buf
            if len(self._period_buf) == frame_count
            else np.empty(frame_count, np.int16)
        )
        queue.pull(buf)
        if opened.channels == 1:
            return buf.tobytes(), pyaudio.paContinue
        return np.repeat(buf, opened.channels).tobytes(), pyaudio.paContinue
