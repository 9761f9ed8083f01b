"""Fixtures of general use: the PulseAudio sound card and gpiozero mock pins."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory
from pulse import PulseServer


@pytest.fixture(scope="session")
def pulse() -> Iterator[PulseServer]:
    """A private PulseAudio server for the whole session, with va_mic and va_speaker.

    While it runs, PULSE_SERVER, PULSE_SOURCE (va_mic.monitor), PULSE_SINK
    (va_speaker) and PULSE_CLIENTCONFIG are set in os.environ, so PyAudio's
    "default"/"pulse" devices capture what `pulse.play_into_mic` plays and
    play into what `pulse.start_recording_speaker` records. Restored after.
    """
    server = PulseServer()
    with pytest.MonkeyPatch.context() as patch:
        for key, value in server.env.items():
            patch.setenv(key, value)
        try:
            server.start()
            yield server
        finally:
            server.stop()


@pytest.fixture
def mock_pins() -> Iterator[MockFactory]:
    """A fresh gpiozero MockFactory, also installed as the default pin factory.

    Drive a button with `mock_pins.pin(17).drive_low()` / `.drive_high()`.
    Devices still open at the end are closed and the previous factory restored.
    """
    previous = Device.pin_factory
    factory = MockFactory()
    Device.pin_factory = factory
    try:
        yield factory
    finally:
        # gpiozero's own shutdown does the same: close whatever still holds a pin.
        with factory._res_lock:
            devices = {
                device
                for refs in factory._reservations.values()
                for ref in refs
                if (device := ref()) is not None
            }
        for device in devices:
            device.close()
        factory.close()
        Device.pin_factory = previous
