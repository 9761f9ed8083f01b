"""Checks of the GPIO settings ([button] pins, [leds]) that assistant.config runs at load.

Kept apart from config.py's general rules: what a pin may be, which pins an LED needs, and
that no pin is given two functions (a button and an LED, or two buttons, on one pin would
fight over it; gpiozero would refuse the second only once the assistant is running).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator
from typing import Any

from assistant.settings import ButtonSettings, Settings

MAX_BCM_PIN = 27
"""The highest GPIO on the 40-pin header."""

_COLOUR = re.compile(r"#[0-9a-fA-F]{6}")


def _optional_pin(value: int) -> str | None:
    if value == -1 or 0 <= value <= MAX_BCM_PIN:
        return None
    return f"must be -1 (not fitted) or a BCM pin number from 0 to {MAX_BCM_PIN}"


def _colour(value: str) -> str | None:
    return None if _COLOUR.fullmatch(value) else 'must be a colour as "#rrggbb", e.g. "#ff8000"'


CONTROL_PIN_KEYS = tuple(
    f.name for f in dataclasses.fields(ButtonSettings) if f.name.endswith("_pin")
)
"""The optional buttons' keys (cancel_pin, mute_pin, ...); the talk button's is `pin`."""

RULES: dict[str, Callable[[Any], str | None]] = {
    **{f"button.{key}": _optional_pin for key in CONTROL_PIN_KEYS},
    **{f"leds.{key}": _optional_pin for key in ("pin", "red_pin", "green_pin", "blue_pin")},
    "leds.brightness": lambda v: None if 0.01 <= v <= 1 else "must be between 0.01 and 1",
    "leds.error_hold_s": lambda v: None if 0 <= v <= 60 else "must be between 0 and 60",
    **{
        f"leds.{name}_colour": _colour
        for name in ("listening", "thinking", "speaking", "error", "muted")
    },
}
"""Per-key rules, merged into assistant.config's."""


def used_pins(settings: Settings) -> Iterator[tuple[str, int]]:
    """Every pin the settings give a function, as (key, BCM number).

    The talk button's `button.pin` always counts (it has a default, and the trigger can be
    changed on its own); the other buttons when fitted; the LED's pins for its kind.
    """
    button, leds = settings.button, settings.leds
    yield "button.pin", button.pin
    for key in CONTROL_PIN_KEYS:
        if (pin := getattr(button, key)) >= 0:
            yield f"button.{key}", pin
    for key in leds.pin_keys():
        yield f"leds.{key}", getattr(leds, key)


def pin_problem(settings: Settings) -> tuple[str, object, str] | None:
    """The first GPIO setting that cannot work, as (key, value, reason), or None."""
    leds = settings.leds
    for key in leds.pin_keys():
        if getattr(leds, key) < 0:
            return f"leds.{key}", -1, f'must be set (a BCM pin) when leds.kind = "{leds.kind}"'
    seen: dict[int, str] = {}
    for key, pin in used_pins(settings):
        if pin in seen:
            return key, pin, f"GPIO{pin} is already {seen[pin]}: give each function its own pin"
        seen[pin] = key
    return None
