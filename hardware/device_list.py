"""What PortAudio sees: every microphone and speaker, the rates each takes, and which one a
device setting selects (for `voice-assistant devices` and `doctor`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyaudio

from assistant.ports import DeviceError
from hardware.portaudio_calls import portaudio_lock, run_blocking
from hardware.pyaudio_support import (
    Direction,
    check_format,
    new_portaudio,
    select_device,
    terminate_portaudio,
)

PROBED_RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)
"""The rates asked about: what the settings accept (assistant.config.SAMPLE_RATES)."""


@dataclass(frozen=True, slots=True)
class AudioDevice:
    """One PortAudio device, in one direction."""

    index: int
    name: str
    direction: Direction
    channels: int
    """The most it offers in this direction (the assistant uses the first)."""
    default_rate: int
    rates: tuple[int, ...]
    """Those of PROBED_RATES it accepts for int16, mono if it has it."""
    is_default: bool
    """The system's default device for this direction."""
    selected: bool
    """The device the setting given to `list_devices` picks."""


@dataclass(frozen=True, slots=True)
class DeviceListing:
    devices: tuple[AudioDevice, ...]
    selection_errors: tuple[str, ...]
    """Why a setting selects nothing (its device is not there), one per direction."""


def _accepted_rates(pa: pyaudio.PyAudio, index: int, direction: Direction) -> tuple[int, ...]:
    accepted = []
    for rate in PROBED_RATES:
        try:
            check_format(pa, direction, index, rate, channels=1)
        except (OSError, ValueError):
            continue  # refused: not one of its rates
        accepted.append(rate)
    return tuple(accepted)


def _default_index(get: Callable[[], Any]) -> int | None:
    try:
        return int(get()["index"])
    except OSError:
        return None  # no default device in this direction


def _scan(input_spec: str, output_spec: str) -> DeviceListing:
    pa = new_portaudio()
    try:
        with portaudio_lock("listing the devices"):
            return _listing(pa, input_spec, output_spec)
    finally:
        terminate_portaudio(pa)


def _listing(pa: pyaudio.PyAudio, input_spec: str, output_spec: str) -> DeviceListing:
    directions: tuple[Direction, Direction] = ("input", "output")
    specs = dict(zip(directions, (input_spec, output_spec), strict=True))
    defaults = {
        "input": _default_index(pa.get_default_input_device_info),
        "output": _default_index(pa.get_default_output_device_info),
    }
    selected: dict[str, int | None] = {}
    errors = []
    for direction in directions:
        try:
            selected[direction] = int(select_device(pa, specs[direction], direction)["index"])
        except DeviceError as exc:
            selected[direction] = None
            errors.append(str(exc))
    found = []
    for i in range(pa.get_device_count()):
        info = pa.get_device_info_by_index(i)
        for direction in directions:
            channels = int(info[f"max{direction.title()}Channels"])
            if channels == 0:
                continue
            found.append(
                AudioDevice(
                    index=i,
                    name=str(info["name"]),
                    direction=direction,
                    channels=channels,
                    default_rate=int(info["defaultSampleRate"]),
                    rates=_accepted_rates(pa, i, direction),
                    is_default=defaults[direction] == i,
                    selected=selected[direction] == i,
                )
            )
    return DeviceListing(tuple(found), tuple(errors))


async def list_devices(input_spec: str, output_spec: str, timeout: float = 30.0) -> DeviceListing:
    """Every device in each direction; `*_spec` are the [audio] device settings.

    Each rate is asked of each device, which opens some of them: in a worker, bounded.
    """
    return await run_blocking(
        lambda: _scan(input_spec, output_spec), "listing the devices", timeout=timeout
    )
