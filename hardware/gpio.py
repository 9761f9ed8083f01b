"""gpiozero pin factories by name, and opening a device on a pin with errors that say what to do.

Every GPIO device of the process (the talk button, the other buttons, the status LED) is
opened on one pin factory: `Pins` opens it when the first device needs it and closes it
last. Errors name the pin by the label the caller gives (the config key), so the wiring can
turn them into config errors without knowing gpiozero's exceptions.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import TypeVar

from gpiozero import Button, Device
from gpiozero.exc import BadPinFactory, GPIOPinInUse, PinPWMUnsupported, PinUnknownPi
from gpiozero.pins import Factory
from gpiozero.pins.mock import MockFactory, MockPWMPin

from assistant.ports import DeviceError

FACTORIES = {
    "lgpio": ("lgpio", "LGPIOFactory"),
    "rpigpio": ("rpigpio", "RPiGPIOFactory"),
    "pigpio": ("pigpio", "PiGPIOFactory"),
    "native": ("native", "NativeFactory"),
}
"""Each name `button.pin_factory` accepts (besides "" and "mock"): gpiozero's module and class."""

ADVICE = {
    "lgpio": "it needs the lgpio library, which works on every Raspberry Pi, the Pi 5 too: "
    "`sudo apt install python3-lgpio` (Raspberry Pi OS; the venv must then be made with "
    "--system-site-packages) or `.venv/bin/pip install lgpio` (PyPI; on 64-bit systems pip "
    "builds it, which needs `sudo apt install swig liblgpio-dev`)",
    "rpigpio": "it needs the RPi.GPIO module: `sudo apt install python3-rpi-lgpio` or "
    "`.venv/bin/pip install rpi-lgpio` (RPi.GPIO's interface on lgpio: every Pi, the Pi 5 "
    "too); the original RPi.GPIO (python3-rpi.gpio) does not work on a Pi 5",
    "pigpio": "it needs the pigpio module (`sudo apt install python3-pigpio` or "
    "`.venv/bin/pip install pigpio`) and the pigpio daemon running (`sudo pigpiod`); "
    "pigpio does not support the Pi 5: use lgpio there",
    "native": "it needs no library but only knows the GPIO of the Pi 4 and older (not the "
    "Pi 5: use lgpio there) and read-write access to /dev/gpiomem",
    "": "gpiozero found no pin library: on a Raspberry Pi install lgpio (`sudo apt install "
    'python3-lgpio`, or `.venv/bin/pip install lgpio`) and choose the "lgpio" pin '
    'factory; away from a Pi, the "mock" one runs without GPIO',
}
"""What to install (or do) when a factory cannot be used here: shown in its error."""

_NOT_A_PI = 'this board is not a Raspberry Pi; "mock" runs without GPIO'


class PinFactoryError(DeviceError):
    """The configured pin factory cannot be used here: its library is missing, or this
    board is not one it knows."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"pin_factory {name!r}: {reason}")
        self.name = name
        self.reason = reason


class PinError(DeviceError):
    """A device could not be opened on its pin(s): in use, or refused by the library."""

    def __init__(self, pins: Mapping[str, int], reason: str) -> None:
        named = ", ".join(f"{label} = {pin}" for label, pin in pins.items())
        super().__init__(f"{named}: {reason}")
        self.pins = dict(pins)
        """The device's pins, by the labels the caller gave them (config keys)."""
        self.reason = reason


def pin_factory_for(name: str) -> Factory | None:
    """The gpiozero pin factory `name` names, opened: "" = None (gpiozero's own choice,
    shared by every device as `Device.pin_factory`), "mock" = pins that exist only in
    memory (with PWM, so dimmable and RGB LEDs work too), or one of FACTORIES."""
    if name == "":
        return None
    if name == "mock":
        return MockFactory(pin_class=MockPWMPin)
    if name not in FACTORIES:
        choices = ", ".join(repr(n) for n in ("", "mock", *FACTORIES))
        raise PinFactoryError(name, f"unknown pin_factory: use one of {choices}")
    module, cls = FACTORIES[name]
    try:
        factory: Factory = getattr(importlib.import_module(f"gpiozero.pins.{module}"), cls)()
    except Exception as exc:
        # Each library fails its own way: ImportError (not installed), gpiozero's
        # PinUnknownPi (not a Pi), OSError (no pigpio daemon, no /dev/gpiomem),
        # RuntimeError (RPi.GPIO on a Pi 5), AttributeError (an lgpio too old for gpiozero).
        raise PinFactoryError(name, f"{_cause(exc)}; {ADVICE[name]}") from exc
    return factory


def _cause(exc: BaseException) -> str:
    if isinstance(exc, ModuleNotFoundError):
        return f"the {exc.name} module is not installed"
    if isinstance(exc, PinUnknownPi):
        return f"{_NOT_A_PI} ({exc})"
    return f"{type(exc).__name__}: {exc}"


class Pins:
    """The process's one pin factory, opened when the first device asks for it."""

    def __init__(self, factory_name: str) -> None:
        self.factory_name = factory_name
        self._factory: Factory | None = None
        self._opened = False

    def factory(self) -> Factory | None:
        """The factory (None: gpiozero's default, `Device.pin_factory`); raises
        PinFactoryError when it cannot be opened here (each call tries again)."""
        if not self._opened:
            self._factory = pin_factory_for(self.factory_name)
            self._opened = True
        return self._factory

    def close(self) -> None:
        """Close the factory if this opened one; after every device on it is closed."""
        factory, self._factory = self._factory, None
        if factory is not None:
            factory.close()


_D = TypeVar("_D", bound=Device)


def open_device(make: Callable[[], _D], pins: Mapping[str, int]) -> _D:
    """`make()`, the device on `pins` (labelled for errors), with its failures turned into
    PinFactoryError or PinError."""
    try:
        return make()
    except BadPinFactory as exc:
        # gpiozero's own choice ("") found no library it could load.
        raise PinFactoryError("", ADVICE[""]) from exc
    except GPIOPinInUse as exc:
        reason = f"already in use by another device of this process ({exc})"
        raise PinError(pins, reason) from exc
    except PinPWMUnsupported as exc:
        reason = (
            "this pin factory cannot dim a pin (no PWM): use an on/off LED, or a factory "
            "with PWM (lgpio, rpigpio, pigpio)"
        )
        raise PinError(pins, reason) from exc
    except Exception as exc:
        # The pin libraries raise their own kinds (lgpio.error, RuntimeError, OSError).
        if "busy" in str(exc).lower():
            reason = f"in use by another program or a kernel driver ({exc})"
        else:
            reason = f"cannot be opened: {type(exc).__name__}: {exc}"
        raise PinError(pins, reason) from exc


def open_button(pin: int, bounce_ms: int, factory: Factory | None, label: str) -> Button:
    """A push button from `pin` to ground, on the internal pull-up, debounced."""
    bounce = bounce_ms / 1000 if bounce_ms > 0 else None
    return open_device(
        lambda: Button(pin, pull_up=True, bounce_time=bounce, pin_factory=factory), {label: pin}
    )
