"""The PyAudio speaker: a ring buffer drained by PortAudio's callback thread.

The callback copies one period out of a lock-protected ring (silence when it
is empty); writing, waiting and bookkeeping run on the event loop, and every
blocking PortAudio call runs in a worker thread (`hardware.pyaudio_support`).

The stream lives only while there is something to play. After `IDLE_CLOSE_S`
of an empty ring it is closed, so an idle assistant pays for no output
callbacks; `prepare()` (speech has begun) or the next `play()` opens a new one,
which takes a few milliseconds. `flush()` with sound still on its way closes it
at once: closing a running stream aborts it, which discards what PortAudio and
the sound server still hold, so a barge-in is silent within a few milliseconds
instead of the stream's two periods of output latency. A closed stream is never
restarted: opening a new one is what checks that the device is still there (see
the PortAudio trap in `hardware.pyaudio_support`).

While monitored (the echo canceller's reference) the stream is kept through a
conversation's silences (`MONITORED_IDLE_CLOSE_S`) and through flushes with nothing
audible in flight (a paused answer): each new stream's first callbacks time it a few
milliseconds differently from the last, and the canceller lets echo through while it
re-finds the room's delay.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping

import numpy as np
import pyaudio

from assistant.ports import DeviceError, PlayedListener
from hardware.playback import PlaybackQueue, as_mono_int16
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

SPEAKER_RATES = (48_000, 44_100, 24_000, 16_000)
"""Tried in order when no rate is asked for."""
IDLE_CLOSE_S = 2.0
"""The output stream is closed after this long with nothing to play."""
MONITORED_IDLE_CLOSE_S = 30.0
"""... or this long while monitored: a follow-up question's answer then plays on the same
stream. Not for ever: an open stream through PulseAudio costs ~2 % of a core here
(`bench.idle`), and a listening assistant should cost next to nothing."""


class Speaker:
    """PyAudio playback pulling from a ring buffer; the stream is open only while needed."""

    def __init__(
        self,
        *,
        device: str = "",
        rate: int = 0,
        period_ms: int,
        playback_buffer_s: float,
        device_timeout_s: float,
        pa: pyaudio.PyAudio | None = None,
    ) -> None:
        """`device`: a PortAudio device index, or part of its name; "" = the system default.
        `rate`: the playback rate in Hz; 0 = the first of SPEAKER_RATES the device accepts.
        `period_ms`: the device period (how much each callback copies out of the ring).
        `playback_buffer_s`: the ring's size; `play()` waits while it is full.
        `device_timeout_s`: a stream PortAudio has not pulled from for this long is broken.
        `pa`: a PyAudio to share (left running on close); None = one of its own per start.
        """
        self._device = device
        self._asked_rate = rate
        self._period_ms = period_ms
        self._buffer_s = playback_buffer_s
        self._device_timeout_s = device_timeout_s
        self._pa_given = pa
        self._pa: pyaudio.PyAudio | None = None
        self._queue: PlaybackQueue | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._name = ""
        self._rate = 0
        self._channels = 0
        self._latency = 0.0
        self._opened: Opened | None = None
        """The running stream; None while idle (closed) or before start()."""
        # Serialises opening streams; an open first waits for the closes under way.
        self._switch = asyncio.Lock()
        self._closing: set[asyncio.Task[None]] = set()
        self._preparing: asyncio.Task[None] | None = None
        # What the callback uses; cleared before its stream is closed.
        self._live: tuple[Opened, PlaybackQueue] | None = None
        self._period_buf = np.zeros(0, dtype=np.int16)
        self._last_callback = 0.0
        self._dry_frames = 0
        self._idle_noted = False
        self._callback_error: BaseException | None = None
        self._described = ""
        self._underflow_log = RateLimitedLog("speaker %r: device underflow (%d so far)")
        self._listener: PlayedListener | None = None
        self._paused = False
        self._sound_until = 0.0
        """time.monotonic() until which what was handed to PortAudio is still to be heard
        (set by the callback for periods with a sample that is not zero)."""

    @property
    def sample_rate(self) -> int:
        if self._queue is None:
            raise RuntimeError("speaker not started: its rate is chosen when the device opens")
        return self._rate

    @property
    def device_name(self) -> str:
        return self._name

    @property
    def channels(self) -> int:
        return self._channels

    @property
    def output_latency(self) -> float:
        """PortAudio's estimate of the time from a callback's return to the sound."""
        return self._latency

    @property
    def stream_open(self) -> bool:
        """True while an output stream exists (closed again when idle or flushed)."""
        return self._opened is not None

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

    def monitor(self, listener: PlayedListener | None) -> None:
        """Hand each period to `listener` as it goes to PortAudio, timed by when it is
        heard (PortAudio's DAC time for it, else the stream's output latency). While a
        listener is set, the stream stays open longer when idle (see the module's
        docstring)."""
        self._listener = listener

    def pause(self) -> None:
        self._paused = True
        if self._queue is not None:
            self._queue.paused = True

    def resume(self) -> None:
        self._paused = False
        if self._queue is not None:
            self._queue.paused = False

    async def start(self) -> None:
        """Open the device (which checks it is there) and keep it until idle."""
        if self._queue is not None:
            raise RuntimeError("speaker already started")
        loop = self._loop = asyncio.get_running_loop()
        pa = self._pa_given or await run_blocking(
            new_portaudio, "initialising PortAudio", release=terminate_portaudio
        )
        self._pa = pa
        rates = (self._asked_rate,) if self._asked_rate else SPEAKER_RATES
        try:
            async with self._switch:
                opened = await self._open(rates)
        except BaseException:
            self._pa = None
            if self._pa_given is None:
                await run_quietly(lambda: terminate_portaudio(pa), "releasing PortAudio")
            raise
        self._name, self._rate = opened.name, opened.rate
        capacity = max(1, round(self._buffer_s * opened.rate))
        self._queue = PlaybackQueue(capacity, loop, threaded=True)
        self._queue.paused = self._paused
        self._live = (opened, self._queue)
        described = (
            f"speaker {opened.name!r}: {opened.rate} Hz x{opened.channels}, "
            f"{self._period_ms} ms periods, "
            f"{self._buffer_s:.1f} s buffer"
        )
        # Said once: a reopen that changes nothing (every retry in an outage) is not news.
        _LOG.log(logging.DEBUG if described == self._described else logging.INFO, "%s", described)
        self._described = described

    async def play(self, samples: np.ndarray, timeout: float) -> None:
        samples = as_mono_int16(samples)
        if self._queue is None:
            raise DeviceError("speaker is not open")
        queue = self._queue
        await self._ensure_stream()  # a failed stream is replaced, or this raises
        await queue.put(samples, timeout, self._check_alive)

    def prepare(self) -> None:
        if self._queue is None or self._opened is not None:
            return
        if self._preparing is not None and not self._preparing.done():
            return
        self._preparing = asyncio.get_running_loop().create_task(self._prepare())

    def flush(self) -> None:
        self.resume()  # what comes next plays at once
        if self._queue is not None:
            dropped = self._queue.flush()
            # Nothing audible in flight (paused, or done): the stream is already silent,
            # and keeping it keeps its timing.
            if time.monotonic() < self._sound_until:
                self._retire_stream()
            _LOG.debug("speaker flushed %d queued samples", dropped)

    async def drain(self, timeout: float) -> None:
        """Wait until the ring is empty, its last period went to PortAudio, and
        the device's output latency has passed, i.e. the last sample was heard."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        queue = self._require_queue()
        was_playing = queue.is_playing
        await queue.drain(timeout, self._check_alive)
        if was_playing and self._opened is not None:
            await asyncio.sleep(max(0.0, min(self._latency, deadline - loop.time())))

    async def close(self) -> None:
        """Release the stream and PortAudio; never raises (failures are logged)."""
        if self._queue is None:
            return
        if self._preparing is not None:
            # Before retiring: a stream it is opening must not appear afterwards.
            self._preparing.cancel()
            await asyncio.wait([self._preparing])
            self._preparing = None
        self._retire_stream()
        if self._closing:
            await asyncio.wait(self._closing)
        self._queue = None
        pa, self._pa = self._pa, None
        if pa is not None and self._pa_given is None:
            await run_quietly(lambda: terminate_portaudio(pa), "releasing PortAudio")

    # -- the stream --------------------------------------------------------------

    async def _ensure_stream(self) -> None:
        """A running stream, opening a new one if idling (or a failure) closed it."""
        if self._stream_ok():
            return
        async with self._switch:
            # Twice at most: once more if a flush retired the stream as it opened.
            for _ in range(2):
                if self._stream_ok():
                    return
                if self._opened is not None:
                    problem = self._stream_problem(self._opened)
                    _LOG.warning("speaker %r: %s; opening it again", self._name, problem)
                    self._retire_stream()
                if self._closing:
                    # A device may allow one stream only: the old one goes first.
                    await asyncio.wait(self._closing)
                queue = self._require_queue()
                opened = await self._open((self._rate,))
                if self._opened is opened:
                    self._live = (opened, queue)
                    return
        raise DeviceError(f"speaker {self._name!r}: the stream was closed as it opened")

    def _stream_ok(self) -> bool:
        opened = self._opened
        return opened is not None and self._live is not None and not self._stream_problem(opened)

    async def _open(self, rates: tuple[int, ...]) -> Opened:
        """Open and start a stream (holding `_switch`); it becomes `_opened`."""
        pa = self._pa
        if pa is None:
            raise DeviceError("speaker is not open")
        opened = await run_blocking(
            lambda: open_stream(
                pa,
                self._device,
                "output",
                rates,
                self._period_ms,
                self._on_output,
            ),
            "opening the speaker",
            release=lambda late: close_stream(late.stream, "speaker", drop=True),
        )
        self._channels = opened.channels
        self._latency = float(opened.stream.get_output_latency())
        self._period_buf = np.zeros(opened.rate * self._period_ms // 1000, np.int16)
        self._dry_frames = 0
        self._idle_noted = False
        self._callback_error = None
        self._last_callback = time.monotonic()
        self._opened = opened
        try:
            await run_blocking(lambda: start_stream(opened, "speaker"), "starting the speaker")
        except BaseException:
            self._opened = None
            await run_quietly(
                lambda: close_stream(opened.stream, "speaker", drop=True), "closing the speaker"
            )
            raise
        return opened

    def _retire_stream(self) -> None:
        """Close the stream now, dropping what it holds; the next play() opens another."""
        opened, self._opened = self._opened, None
        self._live = None
        if self._queue is not None:
            self._queue.device_stopped()
        if opened is not None:
            task = asyncio.get_running_loop().create_task(self._close_stream(opened))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def _close_stream(self, opened: Opened) -> None:
        await run_quietly(
            lambda: close_stream(opened.stream, "speaker", drop=True), "closing the speaker"
        )

    async def _prepare(self) -> None:
        try:
            await self._ensure_stream()
        except DeviceError as exc:
            # play() tries again and reports it; here it is only a head start.
            _LOG.debug("speaker: not reopened ahead of the answer: %s", exc)

    def _on_idle(self, opened: Opened) -> None:
        """Loop side: the ring has been empty for the idle time; close if still so."""
        if self._opened is opened and self._queue is not None and not self._queue.is_playing:
            _LOG.debug("speaker idle: closing the stream")
            self._retire_stream()

    # -- health ------------------------------------------------------------------

    def _require_queue(self) -> PlaybackQueue:
        self._check_alive()
        assert self._queue is not None
        return self._queue

    def _check_alive(self) -> None:
        if self._queue is None:
            raise DeviceError("speaker is not open")
        opened = self._opened
        if opened is None:
            return  # idle: the next play() opens a stream, which checks the device
        if (problem := self._stream_problem(opened)) is not None:
            raise DeviceError(f"speaker {opened.name!r}: {problem}")

    def _stream_problem(self, opened: Opened) -> str | None:
        """Why the running stream is no good, or None."""
        if self._callback_error is not None:
            return f"the audio callback failed: {self._callback_error!r}"
        try:
            if not stream_active(opened, "speaker"):
                return "the stream stopped (device gone?)"
        except DeviceError as exc:
            return str(exc)
        silent_for = time.monotonic() - self._last_callback
        if silent_for > self._device_timeout_s:
            return f"PortAudio has not pulled audio for {silent_for:.1f} s"
        return None

    def _heard_after(self, time_info: Mapping[str, float]) -> float:
        """Seconds from this callback until its first sample is heard: PortAudio's DAC
        time for it when that is usable, else the stream's reported output latency."""
        dac = time_info.get("output_buffer_dac_time", 0.0)
        ahead = dac - time_info.get("current_time", 0.0)
        return ahead if dac and 0.0 <= ahead <= 1.0 else self._latency

    def _on_output(
        self, in_data: bytes | None, frame_count: int, time_info: Mapping[str, float], status: int
    ) -> tuple[bytes | None, int]:
        """PortAudio thread: copy one period out of the ring, silence when it is empty."""
        now = self._last_callback = time.monotonic()
        live = self._live
        loop = self._loop
        assert loop is not None
        if live is None:  # being closed: PortAudio's call came in before the close
            return bytes(2 * frame_count * max(1, self._channels)), pyaudio.paContinue
        opened, queue = live
        try:
            if status & pyaudio.paOutputUnderflow:
                # Logging takes locks and does I/O: leave it to the loop.
                loop.call_soon_threadsafe(self._underflow_log.note, opened.name)
            buf = (
                self._period_buf
                if len(self._period_buf) == frame_count
                else np.empty(frame_count, np.int16)
            )
            heard_after = self._heard_after(time_info)
            if queue.pull(buf):
                self._dry_frames = 0
                self._idle_noted = False
                if buf.any():  # what the far end also counts as audible (see flush())
                    self._sound_until = now + heard_after + frame_count / opened.rate
            else:
                self._dry_frames += frame_count
                idle_s = IDLE_CLOSE_S if self._listener is None else MONITORED_IDLE_CLOSE_S
                if self._dry_frames >= idle_s * opened.rate and not self._idle_noted:
                    self._idle_noted = True
                    loop.call_soon_threadsafe(self._on_idle, opened)
            if (listener := self._listener) is not None:
                listener(buf, opened.rate, now + heard_after)
            if opened.channels == 1:
                return buf.tobytes(), pyaudio.paContinue
            return np.repeat(buf, opened.channels).tobytes(), pyaudio.paContinue
        except Exception as exc:
            silence = bytes(2 * frame_count * opened.channels)
            if loop.is_closed():
                return silence, pyaudio.paComplete  # nobody will queue audio again
            # No logging on PortAudio's thread: the next play() reports it.
            self._callback_error = exc
            return silence, pyaudio.paAbort
