"""The status LED through gpiozero: a plain LED, a dimmable (PWM) one, or an RGB one.

Implements assistant.ports.StatusLight. Blinking and pulsing are gpiozero's own, run in its
background thread: `show` only starts or stops them, so it never holds up the event loop.
"""

from __future__ import annotations

import logging
from typing import Literal

from gpiozero import LED, PWMLED, RGBLED
from gpiozero.pins import Factory

from assistant.ports import Colour, LightEffect, LightPattern
from hardware.gpio import open_device

_LOG = logging.getLogger(__name__)

LedKind = Literal["led", "pwm", "rgb"]


class _DimmedPWMLED(PWMLED):
    """A PWMLED whose "fully on" is `peak`.

    gpiozero's blink and pulse write 1.0 for on, and every value goes through `_write`, so
    scaling there dims all of them alike.
    """

    def __init__(self, *args: object, peak: float, **kwargs: object) -> None:
        self._peak = peak  # before super().__init__, which writes the initial value
        super().__init__(*args, **kwargs)

    def _write(self, value: float) -> None:
        super()._write(value * self._peak)


class GpioStatusLight:
    """One status LED. `kind`: "led" (on or off: a pulse becomes a slow blink), "pwm"
    (dimmable: pulses fade) or "rgb" (three PWM channels: shows the pattern's colour)."""

    def __init__(
        self,
        kind: LedKind,
        pins: dict[str, int],
        *,
        active_high: bool = True,
        brightness: float = 1.0,
        pin_factory: Factory | None = None,
    ) -> None:
        """`pins`: the pin of each channel by its label (the config key, for errors): one
        for "led" and "pwm"; red, green and blue, in that order, for "rgb".
        `active_high`: True when a high pin lights it (LED from the pin to ground; an RGB
        LED's common cathode to ground); False for one wired to 3.3 V (common anode).
        `brightness`: the level of "on", 0 to 1 (pwm and rgb).
        Raises PinFactoryError or PinError (DeviceErrors) when a pin cannot be opened."""
        self._kind = kind
        self._brightness = brightness
        numbers = list(pins.values())

        def make() -> LED | PWMLED | RGBLED:
            if kind == "rgb":
                return RGBLED(*numbers, active_high=active_high, pin_factory=pin_factory)
            if kind == "pwm":
                return _DimmedPWMLED(
                    numbers[0], active_high=active_high, peak=brightness, pin_factory=pin_factory
                )
            return LED(numbers[0], active_high=active_high, pin_factory=pin_factory)

        self._device = open_device(make, pins)
        self._closed = False
        _LOG.info("status LED (%s) on %s", kind, ", ".join(f"GPIO{n}" for n in numbers))

    def show(self, pattern: LightPattern) -> None:
        if self._closed:
            return
        effect, on_s, off_s = pattern.effect, pattern.on_s, pattern.off_s
        device = self._device
        if effect is LightEffect.OFF:
            device.off()
        elif isinstance(device, RGBLED):
            colour = self._scaled(pattern.colour)
            if effect is LightEffect.ON:
                device.color = colour
            elif effect is LightEffect.BLINK:
                device.blink(on_s, off_s, on_color=colour)
            else:
                device.pulse(on_s, off_s, on_color=colour)
        elif effect is LightEffect.ON:
            device.on()
        elif effect is LightEffect.PULSE and isinstance(device, PWMLED):
            device.pulse(on_s, off_s)
        else:
            # A plain LED cannot fade: its pulse is a slow blink with the same times.
            device.blink(on_s, off_s)

    def _scaled(self, colour: Colour) -> Colour:
        r, g, b = (channel * self._brightness for channel in colour)
        return (r, g, b)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._device.off()
        finally:
            self._device.close()
