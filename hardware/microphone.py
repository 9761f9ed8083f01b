"""The PyAudio microphone, bridged from PortAudio's callback thread to asyncio.

The stream runs in callback mode. The callback does the least possible: it
timestamps the device's block and hands it to the loop with
`call_soon_threadsafe`, or, while the loop allows a longer handover (nobody
speaking), collects a few blocks first so the loop wakes a few times a second
instead of fifty. Resampling and re-blocking to 16 kHz run on the loop; every
blocking PortAudio call runs in a worker thread (`hardware.pyaudio_support`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

import pyaudio

from assistant.ports import CAPTURE_RATE, AudioBlock, DeviceError
from hardware.capture_rate import ToCaptureRate
from hardware.portaudio_calls import run_blocking, run_quietly
from hardware.pyaudio_support import (
    Opened,
    RateLimitedLog,
    close_stream,
    new_portaudio,
    open_stream,
    start_stream,
    stream_active,
    terminate_portaudio,
)

_LOG = logging.getLogger(__name__)

MIC_RATES = (16_000, 48_000, 44_100)
"""Tried in order when no rate is asked for: native 16 kHz needs no resampling."""

_MAX_ADC_AGE_S = 1.0
"""A capture timestamp claiming more age than this is not trusted."""
_HEALTH_POLL_S = 0.2
"""How often a read waiting for audio re-checks that the stream is still running."""


@dataclass(frozen=True, slots=True)
class _Captured:
    data: bytes
    t_start: float
    status: int


class Microphone:
    """PyAudio capture delivering 16 kHz mono int16 blocks of `period_ms` to the loop."""

    def __init__(
        self,
        *,
        device: str = "",
        rate: int = 0,
        period_ms: int,
        pa: pyaudio.PyAudio | None = None,
        queue_s: float = 2.0,
    ) -> None:
        """`device`: a PortAudio device index, or part of its name; "" = the system default.
        `rate`: the capture rate in Hz; 0 = the first of MIC_RATES the device accepts.
        `period_ms`: the device period, which is also the length of each delivered block.
        `pa`: a PyAudio to share (left running on close); None = one of its own per start.
        `queue_s`: audio held for a loop that falls behind before the oldest block goes.
        """
        self._device = device
        self._rate = rate
        self._period_ms = period_ms
        self._pa_given = pa
        self._pa: pyaudio.PyAudio | None = None
        self._opened: Opened | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # (sequence number, block): a hole in the numbering marks lost audio.
        self._queue: asyncio.Queue[tuple[int, _Captured]] = asyncio.Queue(
            max(2, round(queue_s * 1000 / max(1, period_ms)))
        )
        self._delivered = 0
        self._last_read: int | None = None
        self._callback_rate = 1
        self._converter: ToCaptureRate | None = None
        self._ready: deque[AudioBlock] = deque()
        self._handover_s = 0.0
        # Touched only by PortAudio's callback thread (and reset before a start).
        self._batch: list[_Captured] = []
        self._batch_frames = 0
        self._callback_error: BaseException | None = None
        self._described = ""
        self._overflow_log = RateLimitedLog("microphone %r: input overflow (%d so far)")
        self._drop_log = RateLimitedLog(
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

    def set_handover(self, seconds: float) -> None:
        self._handover_s = max(0.0, seconds)

    async def start(self) -> None:
        if self._opened is not None:
            raise RuntimeError("microphone already started")
        self._loop = asyncio.get_running_loop()
        pa = self._pa_given or await run_blocking(
            new_portaudio, "initialising PortAudio", release=terminate_portaudio
        )
        rates = (self._rate,) if self._rate else MIC_RATES
        try:
            opened = await run_blocking(
                lambda: open_stream(
                    pa,
                    self._device,
                    "input",
                    rates,
                    self._period_ms,
                    self._on_audio,
                ),
                "opening the microphone",
                release=lambda late: close_stream(late.stream, "microphone"),
            )
        except BaseException:
            if self._pa_given is None:
                await run_quietly(lambda: terminate_portaudio(pa), "releasing PortAudio")
            raise
        self._callback_rate = opened.rate
        self._converter = ToCaptureRate(
            opened.rate, opened.channels, CAPTURE_RATE * self._period_ms // 1000
        )
        self._ready.clear()
        self._delivered = 0
        self._last_read = None
        self._batch, self._batch_frames = [], 0
        self._handover_s = 0.0
        self._callback_error = None
        while not self._queue.empty():
            self._queue.get_nowait()
        self._pa, self._opened = pa, opened
        try:
            await run_blocking(
                lambda: start_stream(opened, "microphone"), "starting the microphone"
            )
        except BaseException:
            await self.close()
            raise
        described = (
            f"microphone {opened.name!r}: {opened.rate} Hz x{opened.channels}, "
            f"{self._period_ms} ms periods"
        )
        # Said once: a reopen that changes nothing (every retry in an outage) is not news.
        _LOG.log(logging.DEBUG if described == self._described else logging.INFO, "%s", described)
        self._described = described

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
        """Release the stream and PortAudio; never raises (failures are logged)."""
        opened, self._opened = self._opened, None
        pa, self._pa = self._pa, None
        if opened is not None:
            await run_quietly(
                lambda: close_stream(opened.stream, "microphone"), "closing the microphone"
            )
        if pa is not None and self._pa_given is None:
            await run_quietly(lambda: terminate_portaudio(pa), "releasing PortAudio")

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

    def _check_alive(self) -> None:
        opened = self._opened
        if opened is None:
            raise DeviceError("microphone is not open")
        if self._callback_error is not None:
            raise DeviceError(
                f"microphone {opened.name!r}: the audio callback failed: {self._callback_error!r}"
            )
        if not stream_active(opened, "microphone"):
            raise DeviceError(f"microphone {opened.name!r} stopped delivering (stream inactive)")

    def _on_audio(
        self, in_data: bytes | None, frame_count: int, time_info: Mapping[str, float], status: int
    ) -> tuple[bytes | None, int]:
        """PortAudio thread: timestamp the block and hand it over; nothing more."""
        loop = self._loop
        assert loop is not None
        try:
            now = time.monotonic()
            # PortAudio's clock base varies by host API; only the age of the first
            # sample relative to PortAudio's own "now" is meaningful. The first
            # sample cannot be younger than the block (ALSA-via-Pulse reports less
            # at some rates), and an absurd age means no usable timing at all.
            duration = frame_count / self._callback_rate
            adc_time = time_info.get("input_buffer_adc_time", 0.0)
            age = time_info.get("current_time", 0.0) - adc_time
            if not (adc_time and age <= _MAX_ADC_AGE_S):
                age = duration
            self._batch.append(_Captured(in_data or b"", now - max(age, duration), status))
            self._batch_frames += frame_count
            # Lost samples are handed over at once, so the gap is known in order.
            if self._batch_frames < self._handover_s * self._callback_rate and not status:
                return None, pyaudio.paContinue
            batch, self._batch, self._batch_frames = self._batch, [], 0
            loop.call_soon_threadsafe(self._deliver, batch)
            return None, pyaudio.paContinue
        except Exception as exc:
            if loop.is_closed():
                return None, pyaudio.paComplete  # nobody will read again
            # No logging on PortAudio's thread: read() reports it as a DeviceError.
            self._callback_error = exc
            return None, pyaudio.paAbort

    def _deliver(self, batch: list[_Captured]) -> None:
        """Loop side of the callback: bounded queue, oldest block dropped first."""
        for captured in batch:
            self._delivered += 1
            if captured.status & pyaudio.paInputOverflow:
                self._delivered += 1  # samples were lost before this block: leave a hole
                self._overflow_log.note(self.device_name)
            if self._queue.full():
                self._queue.get_nowait()
                self._drop_log.note(self.device_name)
            self._queue.put_nowait((self._delivered, captured))
