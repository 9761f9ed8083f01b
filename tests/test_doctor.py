"""`voice-assistant doctor` and `devices`: each check's verdict, on the real parts the tests
have (PulseAudio's null sinks, gpiozero's mock pins, the dev server), and the table and exit
status of the command."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from audio_match import find
from audio_samples import concat, noise, silence
from clean_env import clean_environment
from gpiozero.pins.mock import MockFactory
from pulse import PulseServer

from assistant.devserver import DevServerOptions, RunningDevServer, start_devserver
from assistant.doctor import (
    Examination,
    Result,
    Verdict,
    config_result,
    examine,
    level_verdict,
    passed,
    table,
    tone,
)
from assistant.doctor_devices import configured_buttons, doctor_checks
from assistant.events import EventBus
from assistant.settings import (
    AssistantSettings,
    ButtonSettings,
    DifySettings,
    Secret,
    Settings,
    Trigger,
)

ROOT = Path(__file__).resolve().parent.parent
KEY = "app-doctor"
DEV_SERVER_OPTIONS = DevServerOptions(api_key=KEY, app_mode="completion")


# -- verdicts -----------------------------------------------------------------------------


def test_the_microphone_level_verdicts() -> None:
    assert level_verdict(np.zeros(32_000, dtype=np.int16), 2)[0] is Verdict.FAIL
    assert "silent" in level_verdict(np.zeros(32_000, dtype=np.int16), 2)[1]
    assert "silent" in level_verdict(np.zeros(0, dtype=np.int16), 2)[1]
    verdict, detail = level_verdict(noise(2000, rms=2000), 2)
    assert verdict is Verdict.PASS and detail.startswith("fine: peak")
    loud = np.clip(noise(2000, rms=30_000).astype(np.int32), -32768, 32767).astype(np.int16)
    verdict, detail = level_verdict(loud, 2)
    assert verdict is Verdict.FAIL and detail.startswith("clipping")


class _Check:
    def __init__(self, name: str, outcome: object, needs: tuple[str, ...] = ()) -> None:
        self.name, self.needs, self.timeout_s, self._outcome = name, needs, 0.5, outcome

    async def run(self, exam: Examination) -> list[Result]:
        if isinstance(self._outcome, BaseException):
            raise self._outcome
        if self._outcome == "hang":
            await asyncio.sleep(10)
        return [Result(self.name, self._outcome, "")]  # type: ignore[arg-type]


async def test_checks_run_in_order_and_a_failure_blocks_only_what_needs_it() -> None:
    checks = [
        _Check("a", Verdict.FAIL),
        _Check("b", Verdict.PASS, needs=("a",)),
        _Check("c", Verdict.PASS),
        _Check("d", RuntimeError("broke")),
        _Check("e", "hang"),
        _Check("f", Verdict.PASS),
    ]
    results = await examine(checks, Examination(Settings(), skip=frozenset({"f"})))
    assert [(r.check, r.verdict) for r in results] == [
        ("a", Verdict.FAIL),
        ("b", Verdict.NOT_RUN),
        ("c", Verdict.PASS),
        ("d", Verdict.FAIL),
        ("e", Verdict.FAIL),
        ("f", Verdict.SKIPPED),
    ]
    assert "RuntimeError: broke" in results[3].detail
    assert "no result within" in results[4].detail
    assert not passed(results)
    assert passed([Result("x", Verdict.PASS, ""), Result("y", Verdict.SKIPPED, "")])
    lines = table(results).splitlines()
    assert lines[0].split() == ["check", "verdict", "detail"] and len(lines) == 7


def test_a_config_without_a_key_fails_its_row() -> None:
    row = config_result(Settings(), None, "defaults")
    assert row.verdict is Verdict.FAIL and "no Dify API key" in row.detail


def test_the_buttons_it_asks_for() -> None:
    hands_free = Settings()
    assert configured_buttons(hands_free) == []
    talk = Settings(assistant=AssistantSettings(trigger=Trigger.PUSH_TO_TALK))
    assert configured_buttons(talk) == [("button.pin", 17)]
    # Extension point: the list of checks is the doctor's, in order.
    names = [check.name for check in doctor_checks(talk)]
    assert names == ["devices", "microphone", "tone", "echo", "buttons", "services", "events"]


# -- on the real parts --------------------------------------------------------------------


@pytest.mark.pulse
async def test_every_check_passes_on_working_parts(
    pulse: PulseServer, mock_pins: MockFactory, server: RunningDevServer
) -> None:
    settings = Settings(
        assistant=AssistantSettings(trigger=Trigger.PUSH_TO_TALK),
        button=ButtonSettings(pin=17),
        dify=DifySettings(base_url=server.base_url, api_key=Secret(KEY)),
    )
    loop = asyncio.get_running_loop()
    recording = pulse.start_recording_speaker()

    def say(text: str) -> None:
        """The prompts; a person does what they ask."""
        if text.startswith("speak"):
            pulse.play_into_mic((concat(silence(100), noise(2500, rms=3000)), 16_000))
        elif text.startswith("press button.pin"):
            pin = mock_pins.pin(17)
            loop.call_later(0.3, pin.drive_low)
            loop.call_later(0.5, pin.drive_high)

    exam = Examination(settings, interactive=False, say=say)
    first = config_result(settings, None, "test")
    try:
        results = await examine(doctor_checks(settings), exam, [first])
    finally:
        heard = recording.stop()
    rows = {r.check: r for r in results}
    assert passed([first, *results]), table([first, *results])
    assert rows["microphone"].detail.startswith("fine")
    assert rows["button.pin"].detail.startswith("GPIO17 pressed after")
    assert "key accepted; Text Generator" in rows["dify"].detail
    assert "speech to text on, text to speech on" in rows["dify"].detail
    assert rows["echo"].detail.startswith("WebRTC AEC3: removed")
    # Free, or (another assistant on this machine) served by one: either way it passes.
    assert "127.0.0.1:8765" in rows["events"].detail
    # The tone really reached the speaker.
    reference = tone(48_000)
    assert find(heard, recording.rate, reference, 48_000).score > 0.8


@pytest.mark.pulse
async def test_silence_an_unpressed_button_and_a_refused_key_fail(
    pulse: PulseServer, mock_pins: MockFactory, server: RunningDevServer
) -> None:
    settings = Settings(
        button=ButtonSettings(pin=17, cancel_pin=27) if _has("cancel_pin") else ButtonSettings(),
        dify=DifySettings(base_url=server.base_url, api_key=Secret("app-wrong")),
    )
    exam = Examination(settings, skip=frozenset({"tone"}), say=lambda text: None)
    wanted = ("microphone", "services", "buttons")
    checks = [c for c in doctor_checks(settings) if c.name in wanted]
    results = {r.check: r for r in await examine(checks, exam)}
    assert results["microphone"].verdict is Verdict.FAIL
    assert results["microphone"].detail.startswith("silent")
    assert results["dify"].verdict is Verdict.FAIL
    assert "key was refused (401" in results["dify"].detail
    if _has("cancel_pin"):  # the optional buttons (the controls issue)
        assert results["button.cancel_pin"].verdict is Verdict.FAIL
        assert "no press on GPIO27" in results["button.cancel_pin"].detail


async def test_the_optional_parts_say_off_and_the_event_port_is_checked() -> None:
    from assistant.doctor_parts import EchoCancellerCheck, EventServerCheck
    from assistant.settings import EchoMode, EchoSettings, EventsSettings

    off = Settings(echo=EchoSettings(enabled=EchoMode.OFF), events=EventsSettings(enabled=False))
    exam = Examination(off, say=lambda text: None)
    rows = await examine([EchoCancellerCheck(), EventServerCheck()], exam)
    assert [(r.check, r.verdict) for r in rows] == [
        ("echo", Verdict.SKIPPED),
        ("events", Verdict.SKIPPED),
    ]
    # A port another program holds fails; one a running assistant serves passes.
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        taken_exam = Examination(Settings(events=EventsSettings(port=port)), say=lambda t: None)
        [row] = await examine([EventServerCheck()], taken_exam)
    assert row.verdict is Verdict.FAIL and "taken by another program" in row.detail

    from assistant.event_server import EventServer

    bus = EventBus()
    served = EventServer(EventsSettings(port=0), bus)
    await served.start()
    try:
        mine = Examination(Settings(events=EventsSettings(port=served.port)), say=lambda t: None)
        [row] = await examine([EventServerCheck()], mine)
    finally:
        await served.stop()
    assert row.verdict is Verdict.PASS and "a running assistant serves" in row.detail


def _has(field: str) -> bool:
    return field in ButtonSettings.__dataclass_fields__


# -- the commands -------------------------------------------------------------------------


def _command(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "assistant", *args],
        capture_output=True, text=True, timeout=90, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
    )  # fmt: skip


async def test_doctor_exits_0_only_when_every_check_passed() -> None:
    running = await start_devserver(options=DEV_SERVER_OPTIONS)
    try:
        env = {**clean_environment(), "DIFY_BASE_URL": running.base_url}
        skip = ["--skip", "devices", "--skip", "microphone", "--skip", "tone"]
        good = await asyncio.to_thread(_command, "doctor", *skip, env={**env, "DIFY_API_KEY": KEY})
        refused = await asyncio.to_thread(
            _command, "doctor", *skip, env={**env, "DIFY_API_KEY": "app-wrong"}
        )
        broken = await asyncio.to_thread(
            _command, "doctor", env={**env, "VOICE_ASSISTANT_VAD_FRAME_MS": "25"}
        )
    finally:
        await running.stop()
    assert good.returncode == 0, good.stdout + good.stderr
    rows = _rows(good.stdout)
    assert rows["config"][0] == "pass" and rows["dify"][0] == "pass"
    assert rows["devices"][0] == "skipped" and rows["buttons"][0] == "skipped"
    assert refused.returncode == 1
    assert _rows(refused.stdout)["dify"][0] == "FAIL"
    assert "app-wrong" not in refused.stdout + refused.stderr
    assert broken.returncode == 1
    assert _rows(broken.stdout)["config"] == (
        "FAIL",
        "config error: vad.frame_ms = 25: must be one of 10, 20, 30",
    )
    assert _rows(broken.stdout)["services"][0] == "not run"


def _rows(table_text: str) -> dict[str, tuple[str, str]]:
    lines = table_text.strip().splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["check", "verdict"])
    rows = {}
    for line in lines[start + 1 :]:
        name, rest = line.split(None, 1)
        verdict = "not run" if rest.startswith("not run") else rest.split()[0]
        rows[name] = (verdict, rest[len(verdict) :].strip())
    return rows


@pytest.mark.pulse
def test_devices_lists_and_marks_the_selected_ones(pulse: PulseServer) -> None:
    env = {**clean_environment(), **pulse.env}
    done = _command("devices", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert out.index("microphones (input):") < out.index("speakers (output):")
    marked = [line for line in out.splitlines() if line.startswith(" * ")]
    assert len(marked) == 2, out  # one microphone, one speaker
    assert "takes " in out and " ch, default " in out
    missing = _command("devices", env={**env, "VOICE_ASSISTANT_AUDIO_INPUT_DEVICE": "no-such-mic"})
    assert missing.returncode == 1
    assert "not found: no input device named like 'no-such-mic'" in missing.stdout
