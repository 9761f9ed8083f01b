"""Wiring for `doctor` and `devices`: the checks that need the real microphone, speaker and
buttons, and the doctor's list of checks in the order they run.

Part of the wiring (with app.py, cli.py, demo.py) because it opens devices from `hardware/`;
the checks themselves, their verdicts and the table are in `assistant.doctor`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from assistant.app import RunOptions, _make_sink, _make_source
from assistant.config import ConfigError, load_config
from assistant.doctor import (
    Check,
    Examination,
    Result,
    ServicesCheck,
    Verdict,
    config_result,
    examine,
    is_interactive,
    level_verdict,
    passed,
    table,
    tone,
)
from assistant.ports import DeviceError
from assistant.settings import Settings

if TYPE_CHECKING:
    from hardware.gpio import Pins

LEVEL_SECONDS = 2.0
"""How long the microphone check listens."""
PRESS_WITHIN_S = 10.0
"""How long each button check waits for its press."""
DEVICE_TIMEOUT_S = 30.0
"""Bound on opening a device, listing them, playing the tone."""


class DevicesCheck:
    """The microphone and speaker the settings select exist (and what they accept)."""

    name = "devices"
    needs = ()
    timeout_s = DEVICE_TIMEOUT_S

    async def run(self, exam: Examination) -> list[Result]:
        from hardware.device_list import list_devices

        audio = exam.settings.audio
        listing = await list_devices(audio.input_device, audio.output_device)
        if listing.selection_errors:
            return [Result(self.name, Verdict.FAIL, "; ".join(listing.selection_errors))]
        chosen = [d for d in listing.devices if d.selected]
        parts = [
            f"{'microphone' if d.direction == 'input' else 'speaker'} {d.index} {d.name!r} "
            f"({d.channels} ch, {', '.join(map(str, d.rates)) or 'no probed rate'} Hz)"
            for d in chosen
        ]
        return [Result(self.name, Verdict.PASS, "; ".join(parts))]


class MicrophoneCheck:
    """Two seconds of the microphone, while the user speaks: silent, fine or clipping."""

    name = "microphone"
    needs = ("devices",)
    timeout_s = DEVICE_TIMEOUT_S

    async def run(self, exam: Examination) -> list[Result]:
        settings = exam.settings
        microphone = _make_source(settings, RunOptions())
        await microphone.start()
        try:
            exam.say(f"speak or clap near the microphone for {LEVEL_SECONDS:g} s...")
            blocks = []
            deadline = time.monotonic() + LEVEL_SECONDS
            while time.monotonic() < deadline:
                block = await microphone.read(timeout=settings.audio.device_timeout_s)
                if block is None:
                    break
                blocks.append(block.samples)
        finally:
            await microphone.close()
        samples = np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.int16)
        verdict, detail = level_verdict(samples, LEVEL_SECONDS)
        return [Result(self.name, verdict, detail)]


class ToneCheck:
    """A short tone on the speaker; at a terminal, the user says whether it was heard."""

    name = "tone"
    needs = ("devices",)
    timeout_s = DEVICE_TIMEOUT_S + 60  # room for the user to answer

    async def run(self, exam: Examination) -> list[Result]:
        speaker = _make_sink(exam.settings, RunOptions())
        await speaker.start()
        try:
            exam.say("playing a test tone (440 Hz, 0.8 s)...")
            rate = speaker.sample_rate
            await speaker.play(tone(rate), timeout=5.0)
            await speaker.drain(timeout=5.0)
        finally:
            await speaker.close()
        played = f"played 0.8 s of 440 Hz at -12 dBFS, {rate} Hz"
        if not exam.interactive:
            return [Result(self.name, Verdict.PASS, played + " (nobody asked if it was heard)")]
        answer = await asyncio.to_thread(input, "did you hear it? [Y/n] ")
        if answer.strip().lower().startswith("n"):
            return [Result(self.name, Verdict.FAIL, played + "; not heard: volume, wiring?")]
        return [Result(self.name, Verdict.PASS, played + "; heard")]


def configured_buttons(settings: Settings) -> list[tuple[str, int]]:
    """(config key, BCM pin) of every button the settings use: the talk button unless
    hands-free or wake word, and every `*_pin` of [button] that is fitted (not -1)."""
    button = settings.button
    found = []
    if settings.assistant.trigger.uses_button:
        found.append(("button.pin", button.pin))
    for f in dataclasses.fields(button):
        if f.name.endswith("_pin") and (pin := getattr(button, f.name)) >= 0:
            found.append((f"button.{f.name}", pin))
    return found


class ButtonsCheck:
    """Each configured button, pressed within PRESS_WITHIN_S (Enter skips one)."""

    name = "buttons"
    needs = ()

    def __init__(self, buttons: list[tuple[str, int]]) -> None:
        self._buttons = buttons
        self.timeout_s = (PRESS_WITHIN_S + 5) * max(1, len(buttons))

    async def run(self, exam: Examination) -> list[Result]:
        if not self._buttons:
            return [Result(self.name, Verdict.SKIPPED, "none configured (hands_free, no *_pin)")]
        from hardware.gpio import Pins

        pins = Pins(exam.settings.button.pin_factory)
        try:
            return [await self._one(exam, pins, label, pin) for label, pin in self._buttons]
        finally:
            pins.close()

    async def _one(self, exam: Examination, pins: Pins, label: str, pin: int) -> Result:
        from hardware.gpio import open_button

        loop = asyncio.get_running_loop()
        pressed: asyncio.Future[float] = loop.create_future()
        try:
            button = open_button(pin, exam.settings.button.bounce_ms, pins.factory(), label)
        except DeviceError as exc:
            return Result(label, Verdict.FAIL, str(exc))
        started = time.monotonic()

        def on_press() -> None:  # gpiozero's thread
            loop.call_soon_threadsafe(
                lambda: pressed.done() or pressed.set_result(time.monotonic() - started)
            )

        button.when_pressed = on_press
        skip = _enter_pressed(loop) if exam.interactive else None
        hint = " (Enter to skip)" if exam.interactive else ""
        exam.say(f"press {label} (GPIO{pin}) within {PRESS_WITHIN_S:g} s{hint}...")
        try:
            waiting = [pressed, *([skip] if skip is not None else [])]
            done, _ = await asyncio.wait(
                waiting, timeout=PRESS_WITHIN_S, return_when="FIRST_COMPLETED"
            )
        finally:
            button.when_pressed = None
            button.close()
            if skip is not None:
                loop.remove_reader(sys.stdin.fileno())
                skip.cancel()
        if pressed in done:
            return Result(label, Verdict.PASS, f"GPIO{pin} pressed after {pressed.result():.1f} s")
        if skip is not None and skip in done:
            return Result(label, Verdict.SKIPPED, "skipped at the prompt")
        return Result(
            label,
            Verdict.FAIL,
            f"no press on GPIO{pin} within {PRESS_WITHIN_S:g} s: is it wired from the pin to "
            f"ground, and is {label} its BCM number?",
        )


def _enter_pressed(loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
    """A future that completes when a line arrives on stdin."""
    entered: asyncio.Future[None] = loop.create_future()

    def read() -> None:
        sys.stdin.readline()
        if not entered.done():
            entered.set_result(None)

    loop.add_reader(sys.stdin.fileno(), read)
    return entered


def doctor_checks(settings: Settings) -> list[Check]:
    """Every check, in the order it runs.

    Extension point: a new part of the assistant adds its check here, where it belongs in
    the order, built from the settings and reporting "off" when left off.
    """
    from assistant.doctor_parts import EchoCancellerCheck, EventServerCheck

    return [
        DevicesCheck(),
        MicrophoneCheck(),
        ToneCheck(),
        EchoCancellerCheck(),
        ButtonsCheck(configured_buttons(settings)),
        ServicesCheck(),
        EventServerCheck(),
    ]


def print_devices(settings: Settings) -> int:
    """`voice-assistant devices`: every microphone and speaker PortAudio sees, with rates and
    channels, `*` on the ones the settings select; 1 when a setting selects none."""
    from hardware.device_list import list_devices

    audio = settings.audio
    listing = asyncio.run(list_devices(audio.input_device, audio.output_device))
    for direction, title, key in (
        ("input", "microphones (input)", "audio.input_device"),
        ("output", "speakers (output)", "audio.output_device"),
    ):
        print(f"{title}:")
        devices = [d for d in listing.devices if d.direction == direction]
        for d in devices:
            mark = "*" if d.selected else " "
            default = " (system default)" if d.is_default else ""
            rates = ", ".join(str(r) for r in d.rates) or "none of the usual"
            print(f" {mark} {d.index:>3}  {d.name}{default}")
            print(f"        {d.channels} ch, default {d.default_rate} Hz, takes {rates} Hz")
        if not devices:
            print("   (none)")
        spec = getattr(audio, key.split(".")[1])
        print(f"   {key} = {spec!r}")
    for error in listing.selection_errors:
        print(f"not found: {error}")
    return 1 if listing.selection_errors else 0


def run_doctor(
    config: Path | None,
    skip: frozenset[str],
    say: Callable[[str], None] | None = None,
) -> int:
    """Load the settings, run every check, print the table; 0 only if none failed."""
    source = str(config) if config is not None else "defaults (no config file)"
    try:
        settings: Settings | None = load_config(config)
        error = None
    except ConfigError as exc:
        settings, error = None, exc
    first = config_result(settings, error, source)
    if settings is None:
        # Nothing can be checked without settings; the rows say so.
        names = [check.name for check in doctor_checks(Settings())]
        results = [first, *(Result(name, Verdict.NOT_RUN, "needs config") for name in names)]
    else:
        exam = Examination(settings, skip, is_interactive())
        if say is not None:
            exam.say = say
        results = [first, *asyncio.run(examine(doctor_checks(settings), exam, [first]))]
    print(table(results))
    return 0 if passed(results) else 1
