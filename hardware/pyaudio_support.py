"""PortAudio plumbing shared by the PyAudio microphone and speaker.

Device selection (`select_device`: default, index or name substring), format
negotiation (the first workable rate, mono if the device allows it), starting
and closing streams. Each of these runs in a worker (`portaudio_calls`), one
PortAudio call at a time, and raises DeviceError instead of PyAudio's own errors.

Known PortAudio trap (19.6 and 19.7, ALSA): starting a stream whose device has vanished
since it was opened deadlocks Pa_StartStream forever (the stream's thread dies
holding the mutex its starter waits for). So a stream is never stopped and
started again: the speaker closes it and opens a new one, and opening checks
that the device is still there.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import pyaudio

from assistant.ports import DeviceError
from hardware.portaudio_calls import portaudio_lock
from hardware.portaudio_library import warn_if_unfixed

_LOG = logging.getLogger(__name__)

_RATE_LIMIT_S = 5.0
"""At most one warning per this many seconds for each recurring condition."""

_PORTAUDIO_ERRORS = (OSError, ValueError)
"""What PyAudio raises: OSError for PortAudio's error codes, ValueError for refused arguments."""

Direction = Literal["input", "output"]
StreamCallback = Callable[[bytes | None, int, Mapping[str, float], int], tuple[bytes | None, int]]


@dataclass(frozen=True, slots=True)
class Opened:
    """A stream opened (not started) on a device, with the format it got."""

    pa: pyaudio.PyAudio
    """The PortAudio instance the stream belongs to."""
    stream: pyaudio.Stream
    """Callback-mode int16 stream."""
    name: str
    """The device's name as PortAudio lists it."""
    rate: int
    """Sample rate the device accepted."""
    channels: int
    """1, or 2 when the device refuses mono."""


_ALSA_ERROR_HANDLER = ctypes.CFUNCTYPE(
    None, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p
)
_JACK_MESSAGE_HANDLER = ctypes.CFUNCTYPE(None, ctypes.c_char_p)


@_ALSA_ERROR_HANDLER
def _ignore_alsa(file: bytes, line: int, function: bytes, err: int, fmt: bytes) -> None:
    return None


@_JACK_MESSAGE_HANDLER
def _ignore_jack(message: bytes) -> None:
    return None


@functools.cache
def _quiet_native_libraries() -> None:
    """Silence ALSA's and JACK's own messages on stderr.

    Every PortAudio initialisation probes each PCM in the ALSA configuration
    (ALSA's jack plugin looks for a JACK server), printing some 40 lines about
    devices that do not exist; while a device is away, every reopen attempt
    does it again. What matters reaches us anyway as PortAudio's error codes,
    in the DeviceError message.
    """
    for library, setters, handler in (
        ("libasound.so.2", ("snd_lib_error_set_handler",), _ignore_alsa),
        ("libjack.so.0", ("jack_set_error_function", "jack_set_info_function"), _ignore_jack),
    ):
        try:
            # The same handle PortAudio or the scan's ALSA jack plugin gets, so
            # the handler is in place before either prints.
            lib = ctypes.CDLL(library)
            for setter in setters:
                getattr(lib, setter)(handler)
        except (OSError, AttributeError) as exc:
            _LOG.debug("cannot quieten %s: %s", library, exc)


def _release_unused_alsa_plugins() -> None:
    """Unload the ALSA plugins PortAudio's device scan loaded and no stream uses.

    The scan opens every PCM the ALSA configuration defines (a52, jack, oss,
    speex, upmix, usb_stream, ... from libasound2-plugins), and ALSA keeps each
    plugin library loaded with everything it links (a52 brings the system's
    whole libavcodec): about 10 MB resident for devices the assistant never
    opens. Freeing ALSA's global configuration also closes its cache of plugin
    libraries no open PCM holds; the next open reads the configuration again
    and loads only the plugin it needs. Takes effect only while no other
    thread opens a PCM, which `portaudio_lock` ensures for ours.
    """
    try:
        freed = ctypes.CDLL("libasound.so.2").snd_config_update_free_global()
    except (OSError, AttributeError) as exc:  # no ALSA (another host API): nothing to free
        _LOG.debug("cannot release ALSA's configuration: %s", exc)
        return
    if freed < 0:
        _LOG.debug("releasing ALSA's configuration failed: error %d", freed)


def new_portaudio() -> pyaudio.PyAudio:
    """A PortAudio instance; the first one alive scans the devices (runs in a worker)."""
    _quiet_native_libraries()
    warn_if_unfixed()
    with portaudio_lock("initialising PortAudio"):
        try:
            pa = pyaudio.PyAudio()
        except _PORTAUDIO_ERRORS as exc:
            raise DeviceError(f"PortAudio failed to initialise: {exc}") from exc
        _release_unused_alsa_plugins()
        return pa


def terminate_portaudio(pa: pyaudio.PyAudio) -> None:
    """Release a PortAudio instance; logs instead of raising (runs in a worker)."""
    try:
        with portaudio_lock("terminating PortAudio"):
            pa.terminate()
    except (DeviceError, *_PORTAUDIO_ERRORS) as exc:
        _LOG.warning("releasing PortAudio failed: %s", exc)


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


def open_stream(
    pa: pyaudio.PyAudio,
    spec: str,
    direction: Direction,
    rates: tuple[int, ...],
    period_ms: int,
    callback: StreamCallback,
) -> Opened:
    """Open (not start) an int16 stream at the first workable rate, mono if possible.

    Runs in a worker thread; every failure is a DeviceError.
    """
    with portaudio_lock(f"opening the {direction} device"):
        try:
            return _try_formats(pa, spec, direction, rates, period_ms, callback)
        except _PORTAUDIO_ERRORS as exc:  # from listing the devices
            raise DeviceError(f"cannot open the {direction} device: {exc}") from exc


def _try_formats(
    pa: pyaudio.PyAudio,
    spec: str,
    direction: Direction,
    rates: tuple[int, ...],
    period_ms: int,
    callback: StreamCallback,
) -> Opened:
    info = select_device(pa, spec, direction)
    index = int(info["index"])
    name = str(info["name"])
    max_channels = int(info["maxInputChannels" if direction == "input" else "maxOutputChannels"])
    failures: list[str] = []
    for rate in rates:
        for channels in (c for c in (1, 2) if c <= max_channels):
            try:
                check_format(pa, direction, index, rate, channels)
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
            except _PORTAUDIO_ERRORS as exc:
                failures.append(f"{rate} Hz x{channels}: {exc}")
                continue
            return Opened(pa, stream, name, rate, channels)
    raise DeviceError(
        f"cannot open {direction} device {name!r} as int16 at {rates} Hz: " + "; ".join(failures)
    )


def check_format(
    pa: pyaudio.PyAudio, direction: Direction, index: int, rate: int, channels: int
) -> None:
    """Whether device `index` takes int16 at `rate` x `channels`: raises (ValueError,
    OSError) with PortAudio's reason when it does not."""
    pa.is_format_supported(
        rate,
        **{
            f"{direction}_device": index,
            f"{direction}_channels": channels,
            f"{direction}_format": pyaudio.paInt16,
        },
    )


def start_stream(opened: Opened, what: str) -> None:
    """Start a freshly opened stream (runs in a worker); DeviceError if it will not."""
    with portaudio_lock(f"starting the {what}"):
        try:
            opened.stream.start_stream()
        except _PORTAUDIO_ERRORS as exc:
            raise DeviceError(f"cannot start {what} {opened.name!r}: {exc}") from exc


def close_stream(stream: pyaudio.Stream, what: str, *, drop: bool = False) -> None:
    """Stop and close a stream; logs instead of raising (runs in a worker).

    `drop`: close at once, which aborts the stream (Pa_AbortStream): whatever
    PortAudio and the sound server still hold is discarded instead of played.
    """
    try:
        with portaudio_lock(f"closing the {what}"):
            if not drop:
                try:
                    stream.stop_stream()
                except _PORTAUDIO_ERRORS as exc:
                    # A vanished device often fails to stop; closing still frees it.
                    _LOG.warning("%s: stopping the stream failed: %s", what, exc)
            stream.close()
    except (DeviceError, *_PORTAUDIO_ERRORS) as exc:
        _LOG.warning("%s: closing the stream failed: %s", what, exc)


def stream_active(opened: Opened, what: str) -> bool:
    """Pa_IsStreamActive, with PortAudio's errors as DeviceError."""
    try:
        return bool(opened.stream.is_active())
    except _PORTAUDIO_ERRORS as exc:
        raise DeviceError(f"{what} {opened.name!r} failed: {exc}") from exc


class RateLimitedLog:
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
