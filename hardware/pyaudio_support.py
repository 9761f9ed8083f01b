"""PortAudio plumbing shared by the PyAudio microphone and speaker.

Device selection (`select_device`: default, index or name substring), format
negotiation (the first workable rate, mono if the device allows it), starting
and shutting streams down, and running the blocking open in a worker thread so
that a cancelled open still releases its device. PortAudio's initialise, open,
close and terminate are not thread-safe, so every such call takes `_PA_LOCK`.
Also the rate-limited warning both devices use for recurring stream conditions.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import pyaudio

from hardware.interfaces import DeviceError

_LOG = logging.getLogger(__name__)

_PA_LOCK = threading.Lock()
"""PortAudio's initialise/open/close/terminate are not thread-safe; worker threads take turns."""

_RATE_LIMIT_S = 5.0
"""At most one warning per this many seconds for each recurring condition."""

Direction = Literal["input", "output"]
_StreamCallback = Callable[[bytes | None, int, Mapping[str, float], int], tuple[bytes | None, int]]


@dataclass(frozen=True, slots=True)
class _Opened:
    pa: pyaudio.PyAudio
    stream: pyaudio.Stream
    name: str
    rate: int
    channels: int


def select_device(pa: pyaudio.PyAudio, spec: str, direction: Direction) -> Mapping[str, Any]:
    """The device info for `spec`: "" = default, digits = index, else a name substring."""
    key = "maxInputChannels" if direction == "input" else "maxOutputChannels"
    devices = [pa.get_device_info_by_index(i) for i in range(pa.get_device_count())]
    usable = [d for d in devices if int(d[key]) > 0]
    available = ", ".join(f"{d['index']}: {d['name']!r}" for d in usable) or "none"
    spec = spec.strip()
    if not spec:
        try:
            if direction == "input":
                return pa.get_default_input_device_info()
            return pa.get_default_output_device_info()
        except OSError as exc:
            raise DeviceError(
                f"no default {direction} device ({exc}); available: {available}"
            ) from exc
    if spec.isdigit():
        index = int(spec)
        for device in usable:
            if int(device["index"]) == index:
                return device
        raise DeviceError(f"no {direction} device with index {index}; available: {available}")
    for device in usable:
        if spec.casefold() in str(device["name"]).casefold():
            return device
    raise DeviceError(f"no {direction} device named like {spec!r}; available: {available}")


def _open_stream(
    pa_given: pyaudio.PyAudio | None,
    spec: str,
    direction: Direction,
    rates: tuple[int, ...],
    period_ms: int,
    callback: _StreamCallback,
) -> _Opened:
    """Open (not start) an int16 stream at the first workable rate, mono if possible.

    Runs in a worker thread. Creates a PyAudio instance when none is given and
    terminates it again if opening fails.
    """
    with _PA_LOCK:
        try:
            pa = pa_given if pa_given is not None else pyaudio.PyAudio()
        except OSError as exc:
            raise DeviceError(f"PortAudio failed to initialise: {exc}") from exc
        try:
            return _try_formats(pa, spec, direction, rates, period_ms, callback)
        except BaseException:
            if pa_given is None:
                pa.terminate()
            raise


def _try_formats(
    pa: pyaudio.PyAudio,
    spec: str,
    direction: Direction,
    rates: tuple[int, ...],
    period_ms: int,
    callback: _StreamCallback,
) -> _Opened:
    info = select_device(pa, spec, direction)
    index = int(info["index"])
    name = str(info["name"])
    max_channels = int(info["maxInputChannels" if direction == "input" else "maxOutputChannels"])
    failures: list[str] = []
    for rate in rates:
        for channels in (c for c in (1, 2) if c <= max_channels):
            try:
                pa.is_format_supported(
                    rate,
                    **{
                        f"{direction}_device": index,
                        f"{direction}_channels": channels,
                        f"{direction}_format": pyaudio.paInt16,
                    },
                )
                stream = pa.open(
                    rate=rate,
                    channels=channels,
                    format=pyaudio.paInt16,
                    input=direction == "input",
                    output=direction == "output",
                    input_device_index=index if direction == "input" else None,
                    output_device_index=index if direction == "output" else None,
                    frames_per_buffer=max(1, rate * period_ms // 1000),
                    stream_callback=callback,
                    start=False,
                )
            except (ValueError, OSError) as exc:
                failures.append(f"{rate} Hz x{channels}: {exc}")
                continue
            return _Opened(pa, stream, name, rate, channels)
    raise DeviceError(
        f"cannot open {direction} device {name!r} as int16 at {rates} Hz: " + "; ".join(failures)
    )


def _start(stream: pyaudio.Stream) -> None:
    with _PA_LOCK:
        stream.start_stream()


def _shutdown(stream: pyaudio.Stream | None, pa: pyaudio.PyAudio | None, what: str) -> None:
    """Stop and close a stream, then terminate PyAudio; runs in a worker thread."""
    with _PA_LOCK:
        try:
            if stream is not None:
                try:
                    stream.stop_stream()
                except OSError as exc:
                    # A vanished device often fails to stop; closing still frees it.
                    _LOG.warning("%s: stopping the stream failed: %s", what, exc)
                stream.close()
        finally:
            if pa is not None:
                pa.terminate()


async def _run_opener(
    opener: Callable[[], _Opened], on_cancel: Callable[[_Opened], None]
) -> _Opened:
    """Run a blocking open in a worker; if cancelled, release what it opened."""
    task = asyncio.ensure_future(asyncio.to_thread(opener))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        # The worker cannot be interrupted: wait for it so nothing is left open.
        await asyncio.wait([task])
        if not task.cancelled() and task.exception() is None:
            await asyncio.to_thread(on_cancel, task.result())
        elif not task.cancelled():
            _LOG.warning("device open failed after cancellation: %s", task.exception())
        raise


class _RateLimitedLog:
    """A warning that repeats at most once per interval, carrying the count so far."""

    def __init__(self, message: str) -> None:
        self._message = message
        self._last = -_RATE_LIMIT_S
        self.count = 0

    def note(self, *args: object) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self._last >= _RATE_LIMIT_S:
            self._last = now
            _LOG.warning(self._message, *args, self.count)
