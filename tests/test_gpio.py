"""The GPIO adapters on gpiozero's own MockFactory: pin factories by name, the cancel, mute
and volume buttons, the status LED, and pins already in use.

What the loop does with a press is tested with the loop; here: each press reaches its
callback, on the event loop's thread.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
import time
from collections.abc import Callable

import pytest
from gpiozero import LED, Device
from gpiozero.pins.mock import MockFactory, MockPWMPin

from assistant.ports import DeviceError, LightEffect, LightPattern
from hardware.buttons import PressButton, TalkButton
from hardware.gpio import ADVICE, FACTORIES, PinError, PinFactoryError, Pins, pin_factory_for
from hardware.status_led import GpioStatusLight

LIBRARIES = {"lgpio": "lgpio", "rpigpio": "RPi", "pigpio": "pigpio", "native": None}
"""The module each factory needs (native needs none: it reads the Pi's registers)."""
PACKAGES = {
    "lgpio": ["python3-lgpio", "pip install lgpio"],
    "rpigpio": ["python3-rpi-lgpio", "rpi-lgpio", "not work on a Pi 5"],
    "pigpio": ["python3-pigpio", "pigpiod", "Pi 5"],
    "native": ["Pi 5", "/dev/gpiomem"],
}
"""What each factory's error must tell the user to install, or why it cannot work."""


def _on_a_pi() -> bool:
    try:
        with open("/proc/device-tree/model", encoding="utf-8") as model:
            return "Raspberry Pi" in model.read()
    except OSError:
        return False


# --- pin factories by name ------------------------------------------------------------


def test_every_factory_name_is_known() -> None:
    assert set(FACTORIES) == set(LIBRARIES)
    assert set(ADVICE) == {*FACTORIES, ""}
    assert pin_factory_for("") is None  # gpiozero's own choice, shared as Device.pin_factory
    mock = pin_factory_for("mock")
    assert isinstance(mock, MockFactory) and mock.pin_class is MockPWMPin
    mock.close()
    with pytest.raises(PinFactoryError, match=r"unknown pin_factory.*'lgpio'"):
        pin_factory_for("gpiod")


@pytest.mark.skipif(_on_a_pi(), reason="on a Pi these factories may work")
@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_a_factory_that_cannot_work_here_says_what_to_install(name: str) -> None:
    module = LIBRARIES[name]
    missing = module is not None and importlib.util.find_spec(module) is None
    with pytest.raises(PinFactoryError) as raised:
        pin_factory_for(name)
    message = str(raised.value)
    assert isinstance(raised.value, DeviceError)
    assert message.startswith(f"pin_factory {name!r}: ")
    if missing:
        assert f"the {module} module is not installed" in message
    else:
        # Installed (or none needed), but this machine is not a Raspberry Pi.
        assert "not a Raspberry Pi" in message or "gpiomem" in message, message
    for advice in PACKAGES[name]:
        assert advice in message, (advice, message)


def test_no_default_factory_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    if _on_a_pi():
        pytest.skip("gpiozero finds a factory on a Pi")
    monkeypatch.setattr(Device, "pin_factory", None)
    monkeypatch.delenv("GPIOZERO_PIN_FACTORY", raising=False)
    loop = asyncio.new_event_loop()
    with (
        pytest.warns(Warning),  # gpiozero's PinFactoryFallback for each one it tried
        pytest.raises(PinFactoryError, match=r"no pin library.*python3-lgpio"),
    ):
        PressButton(loop, pin=5, bounce_ms=20, action=lambda: None, label="b")
    loop.close()


def test_pins_open_one_factory_for_every_device() -> None:
    pins = Pins("mock")
    factory = pins.factory()
    assert pins.factory() is factory
    loop = asyncio.new_event_loop()
    talk = TalkButton(loop, pin=17, bounce_ms=20, pin_factory=factory)
    light = GpioStatusLight("pwm", {"leds.pin": 12}, pin_factory=factory)
    light.show(LightPattern(LightEffect.ON))
    assert factory.pin(12).state == 1.0
    light.close()
    talk.close()
    pins.close()
    loop.close()


# --- the cancel, mute and volume buttons ----------------------------------------------


async def _press(pins: MockFactory, pin: int, *, from_thread: bool) -> None:
    def press() -> None:
        pins.pin(pin).drive_low()
        time.sleep(0.01)
        pins.pin(pin).drive_high()

    if from_thread:
        worker = threading.Thread(target=press)
        worker.start()
        await asyncio.to_thread(worker.join)
    else:
        press()


@pytest.mark.parametrize("from_thread", [False, True], ids=["mock", "thread"])
async def test_each_press_calls_its_action_on_the_loop_thread(
    mock_pins: MockFactory, from_thread: bool
) -> None:
    loop = asyncio.get_running_loop()
    calls: asyncio.Queue[tuple[str, int]] = asyncio.Queue()

    def action(name: str) -> Callable[[], None]:
        # put_nowait is not thread-safe: a call from any other thread would show here.
        return lambda: calls.put_nowait((name, threading.get_ident()))

    wired = {"cancel": 5, "mute": 6, "volume_up": 13, "volume_down": 26}
    buttons = [
        PressButton(loop, pin=pin, bounce_ms=20, action=action(name), label=f"button.{name}_pin")
        for name, pin in wired.items()
    ]
    for pin in wired.values():
        # Wired to ground on the internal pull-up, debounced by bounce_ms.
        assert mock_pins.pin(pin).pull == "up"
        assert mock_pins.pin(pin).bounce == pytest.approx(0.02)
    for name, pin in wired.items():
        await _press(mock_pins, pin, from_thread=from_thread)
        called = await asyncio.wait_for(calls.get(), 1)
        assert called == (name, threading.get_ident())  # this test runs on the loop's thread
    await asyncio.sleep(0.05)
    assert calls.empty(), "a release calls nothing"
    for button in buttons:
        button.close()
        button.close()
    mock_pins.pin(5).drive_low()  # closed: no call
    await asyncio.sleep(0.02)
    assert calls.empty()


async def test_a_press_after_the_loop_closed_is_ignored(mock_pins: MockFactory) -> None:
    other = asyncio.new_event_loop()
    calls: list[int] = []
    button = PressButton(other, pin=5, bounce_ms=0, action=lambda: calls.append(1), label="b")
    assert mock_pins.pin(5).bounce is None
    other.close()
    mock_pins.pin(5).drive_low()  # logged, not raised into gpiozero's thread
    assert calls == []
    button.close()


# --- pins in use ----------------------------------------------------------------------


async def test_a_pin_in_use_names_its_key(mock_pins: MockFactory) -> None:
    loop = asyncio.get_running_loop()
    held = LED(5, pin_factory=mock_pins)  # another device on the pin (kept referenced)
    with pytest.raises(PinError, match=r"button.mute_pin = 5: already in use.*GPIO5") as raised:
        PressButton(loop, pin=5, bounce_ms=20, action=lambda: None, label="button.mute_pin")
    assert raised.value.pins == {"button.mute_pin": 5}
    with pytest.raises(PinError, match=r"^button.pin = 5: already in use"):
        TalkButton(loop, pin=5, bounce_ms=20, pin_factory=mock_pins)
    with pytest.raises(PinError, match=r"leds.pin = 5: already in use"):
        GpioStatusLight("led", {"leds.pin": 5}, pin_factory=mock_pins)
    held.close()


async def test_an_rgb_led_names_every_key_and_gpiozero_the_pin(
    mock_pwm_pins: MockFactory,
) -> None:
    held = LED(5, pin_factory=mock_pwm_pins)
    rgb = {"leds.red_pin": 22, "leds.green_pin": 5, "leds.blue_pin": 23}
    with pytest.raises(PinError, match=r"leds.red_pin = 22, leds.green_pin = 5, .*GPIO5"):
        GpioStatusLight("rgb", rgb, pin_factory=mock_pwm_pins)
    # What failed to open released what it had taken.
    GpioStatusLight("led", {"leds.pin": 22}, pin_factory=mock_pwm_pins).close()
    held.close()


def test_a_factory_without_pwm_cannot_dim(mock_pins: MockFactory) -> None:
    with pytest.raises(PinError, match=r"^leds\.pin = 12: this pin factory cannot dim"):
        GpioStatusLight("pwm", {"leds.pin": 12}, pin_factory=mock_pins)
    GpioStatusLight("led", {"leds.pin": 12}, pin_factory=mock_pins).close()


async def test_the_same_pin_opened_twice(mock_pins: MockFactory) -> None:
    loop = asyncio.get_running_loop()
    first = PressButton(loop, pin=6, bounce_ms=20, action=lambda: None, label="button.cancel_pin")
    with pytest.raises(PinError, match=r"button\.volume_up_pin = 6: already in use"):
        PressButton(loop, pin=6, bounce_ms=20, action=lambda: None, label="button.volume_up_pin")
    first.close()


def test_a_busy_pin_of_another_program_says_so() -> None:
    from hardware.gpio import open_device

    def busy() -> Device:
        raise OSError("GPIO busy")  # how lgpio reports a line another program holds

    with pytest.raises(PinError, match=r"leds\.pin = 4: in use by another program"):
        open_device(busy, {"leds.pin": 4})


# --- the status LED -------------------------------------------------------------------


def _levels(pins: MockFactory, number: int, seconds: float) -> set[float]:
    """Every level the pin showed over the next `seconds` (from its recorded changes)."""
    pins.pin(number).clear_states()
    time.sleep(seconds)
    return {round(float(change.state), 3) for change in pins.pin(number).states}


PULSE = LightPattern(LightEffect.PULSE, (1.0, 0.5, 0.0), on_s=0.1, off_s=0.1)
BLINK = LightPattern(LightEffect.BLINK, (1.0, 0.5, 0.0), on_s=0.05, off_s=0.05)


def test_a_plain_led(mock_pwm_pins: MockFactory) -> None:
    light = GpioStatusLight("led", {"leds.pin": 12}, pin_factory=mock_pwm_pins)
    pin = mock_pwm_pins.pin(12)
    assert pin.state == 0
    light.show(LightPattern(LightEffect.ON, (0.0, 0.0, 0.2)))
    assert pin.state == 1  # fully on, whatever the colour
    light.show(BLINK)
    assert _levels(mock_pwm_pins, 12, 0.3) == {0.0, 1.0}
    light.show(PULSE)  # cannot fade: blinks
    assert _levels(mock_pwm_pins, 12, 0.3) == {0.0, 1.0}
    light.show(LightPattern(LightEffect.OFF))
    assert _levels(mock_pwm_pins, 12, 0.15) == {0.0}
    light.close()
    light.close()
    light.show(BLINK)  # closed: nothing


def test_a_dimmable_led_at_its_brightness(mock_pwm_pins: MockFactory) -> None:
    light = GpioStatusLight("pwm", {"leds.pin": 12}, brightness=0.4, pin_factory=mock_pwm_pins)
    pin = mock_pwm_pins.pin(12)
    light.show(LightPattern(LightEffect.ON))
    assert pin.state == pytest.approx(0.4)
    light.show(BLINK)
    assert _levels(mock_pwm_pins, 12, 0.3) == {0.0, 0.4}
    light.show(PULSE)
    levels = _levels(mock_pwm_pins, 12, 0.5)
    assert max(levels) == pytest.approx(0.4) and min(levels) == 0
    assert len([v for v in levels if 0 < v < 0.4]) >= 2, "it fades"
    light.close()
    assert pin.state == 0


def test_an_rgb_led_shows_the_colour(mock_pwm_pins: MockFactory) -> None:
    rgb = {"leds.red_pin": 5, "leds.green_pin": 6, "leds.blue_pin": 13}
    light = GpioStatusLight("rgb", rgb, brightness=0.5, pin_factory=mock_pwm_pins)
    light.show(LightPattern(LightEffect.ON, (1.0, 0.5, 0.0)))
    assert [mock_pwm_pins.pin(n).state for n in (5, 6, 13)] == [0.5, 0.25, 0]
    light.show(BLINK)
    assert _levels(mock_pwm_pins, 5, 0.3) == {0.0, 0.5}
    light.show(BLINK)  # again: the pattern restarts, green blinks with red
    assert _levels(mock_pwm_pins, 6, 0.3) == {0.0, 0.25}
    light.show(PULSE)
    reds = _levels(mock_pwm_pins, 5, 0.5)
    assert len([v for v in reds if 0 < v < 0.5]) >= 2, "it fades"
    light.close()


def test_an_led_wired_to_3v3_lights_on_a_low_pin(mock_pwm_pins: MockFactory) -> None:
    light = GpioStatusLight(
        "pwm", {"leds.pin": 12}, active_high=False, brightness=0.25, pin_factory=mock_pwm_pins
    )
    pin = mock_pwm_pins.pin(12)
    assert pin.state == 1  # off
    light.show(LightPattern(LightEffect.ON))
    assert pin.state == pytest.approx(0.75)
    light.close()
