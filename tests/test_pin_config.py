"""The GPIO settings at load time: every pin for one function only, the LED's pins for its
kind, pins and colours that can exist. A bad one stops the start with exit status 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from assistant.config import ConfigError, load_config
from assistant.settings import LedKind, Settings

ROOT = Path(__file__).resolve().parent.parent


def _load(tmp_path: Path, toml: str) -> Settings:
    path = tmp_path / "gpio.toml"
    path.write_text(toml)
    return load_config(path, environ={})


@pytest.mark.parametrize(
    ("toml", "first", "second", "pin"),
    [
        ('[leds]\nkind = "led"\npin = 17\n', "button.pin", "leds.pin", 17),
        ("[button]\ncancel_pin = 5\nmute_pin = 5\n", "button.cancel_pin", "button.mute_pin", 5),
        ("[button]\npin = 22\nvolume_down_pin = 22\n", "button.pin", "button.volume_down_pin", 22),
        (
            '[button]\nvolume_up_pin = 13\n[leds]\nkind = "rgb"\n'
            "red_pin = 12\ngreen_pin = 13\nblue_pin = 16\n",
            "button.volume_up_pin",
            "leds.green_pin",
            13,
        ),
        (
            '[leds]\nkind = "rgb"\nred_pin = 12\ngreen_pin = 16\nblue_pin = 12\n',
            "leds.red_pin",
            "leds.blue_pin",
            12,
        ),
        (
            '[leds]\nkind = "pwm"\npin = 6\n[button]\nmute_pin = 6\n',
            "button.mute_pin",
            "leds.pin",
            6,
        ),
    ],
)
def test_two_functions_on_one_pin_name_both_keys(
    tmp_path: Path, toml: str, first: str, second: str, pin: int
) -> None:
    with pytest.raises(ConfigError) as raised:
        _load(tmp_path, toml)
    message = str(raised.value)
    assert message.startswith(f"config error: {second} = {pin}: GPIO{pin} is already {first}")
    assert raised.value.key == second


@pytest.mark.parametrize(
    ("toml", "key", "reason"),
    [
        ('[leds]\nkind = "led"\n', "leds.pin", 'must be set (a BCM pin) when leds.kind = "led"'),
        ('[leds]\nkind = "rgb"\nred_pin = 12\ngreen_pin = 13\n', "leds.blue_pin", "must be set"),
        ("[button]\nmute_pin = 28\n", "button.mute_pin", "must be -1 (not fitted) or a BCM pin"),
        ("[button]\ncancel_pin = -2\n", "button.cancel_pin", "must be -1 (not fitted)"),
        ("[leds]\nred_pin = 40\n", "leds.red_pin", "must be -1 (not fitted) or a BCM pin"),
        ('[leds]\nkind = "blinkenlights"\n', "leds.kind", "must be one of none, led, pwm, rgb"),
        ('[leds]\nmuted_colour = "orange"\n', "leds.muted_colour", 'as "#rrggbb"'),
        ('[leds]\nlistening_colour = "#00f"\n', "leds.listening_colour", 'as "#rrggbb"'),
        ("[leds]\nbrightness = 0.0\n", "leds.brightness", "between 0.01 and 1"),
        ("[leds]\nerror_hold_s = 90\n", "leds.error_hold_s", "between 0 and 60"),
        ('[button]\npin_factory = "gpiod"\n', "button.pin_factory", "must be one of"),
    ],
)
def test_bad_gpio_settings_name_key_and_reason(
    tmp_path: Path, toml: str, key: str, reason: str
) -> None:
    with pytest.raises(ConfigError, match=f"^config error: {key} = ") as raised:
        _load(tmp_path, toml)
    assert reason in str(raised.value)


def test_a_full_panel_loads(tmp_path: Path) -> None:
    settings = _load(
        tmp_path,
        "[button]\npin = 17\ncancel_pin = 5\nmute_pin = 6\nvolume_up_pin = 22\n"
        'volume_down_pin = 23\npin_factory = "lgpio"\n'
        '[leds]\nkind = "rgb"\nred_pin = 13\ngreen_pin = 16\nblue_pin = 26\n'
        'active_high = false\nbrightness = 0.3\nspeaking_colour = "#FF8000"\n'
        # The pin of another kind of LED is not used, so it is nobody's.
        "pin = 17\n",
    )
    assert settings.leds.kind is LedKind.RGB
    assert settings.leds.pin_keys() == ("red_pin", "green_pin", "blue_pin")
    assert settings.leds.colour("speaking") == (1.0, 128 / 255, 0.0)
    assert (settings.button.cancel_pin, settings.button.volume_down_pin) == (5, 23)


def test_the_cli_exits_2_naming_both_keys(tmp_path: Path) -> None:
    path = tmp_path / "clash.toml"
    path.write_text('[button]\ncancel_pin = 5\n[leds]\nkind = "led"\npin = 5\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VA_", "VOICE_ASSISTANT_"))}
    env["DIFY_API_KEY"] = "app-x"
    done = subprocess.run(
        [sys.executable, "-m", "assistant", "run", "--config", str(path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "config error: leds.pin = 5: GPIO5 is already button.cancel_pin" in done.stderr
