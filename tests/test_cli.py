"""The command line itself: --version, -v anywhere, the exit codes in --help, the
environment's override prefix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from clean_env import clean_environment

from assistant.cli import _parser

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = ("run", "demo", "doctor", "devices", "voices", "devserver")


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "assistant", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=clean_environment() if env is None else env,
    )


def test_version() -> None:
    done = _cli("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == "voice-assistant 0.1.0"


@pytest.mark.parametrize("command", [(), ("run",), ("doctor",)])
def test_help_lists_the_exit_codes(command: tuple[str, ...]) -> None:
    done = _cli(*command, "--help")
    assert done.returncode == 0
    help_text = done.stdout
    assert "exit status:" in help_text
    for code in ("0", "1", "2", "70", "75", "130"):
        assert any(line.strip().startswith(code + " ") for line in help_text.splitlines()), code
    if not command:
        for name in COMMANDS:
            assert name in help_text


@pytest.mark.parametrize(
    ("argv", "verbose"),
    [
        (["run"], False),
        (["-v", "run"], True),
        (["run", "-v"], True),
        (["run", "--verbose", "--dev-server"], True),
        (["doctor", "-v", "--skip", "buttons"], True),
        (["devserver", "-v"], True),
        (["voices", "--provider", "openai", "-v"], True),
    ],
)
def test_verbose_before_or_after_the_command(argv: list[str], verbose: bool) -> None:
    assert _parser().parse_args(argv).verbose is verbose


def test_a_misspelt_override_variable_stops_the_start_with_the_name_meant() -> None:
    env = {**clean_environment(), "VOICE_ASSISTANT_VAD_HANGOVER": "400", "DIFY_API_KEY": "app-x"}
    done = _cli("run", env=env)
    assert done.returncode == 2
    assert "VOICE_ASSISTANT_VAD_HANGOVER: names no config key" in done.stderr
    assert "did you mean VOICE_ASSISTANT_VAD_HANGOVER_MS?" in done.stderr


def test_the_old_prefix_works_with_one_deprecation_warning() -> None:
    env = {
        **clean_environment(),
        "VA_OPENAI_TTS_MODEL": "tts-1",
        "VA_OPENAI_VOICE": "nova",
        "VA_UNRELATED_TOOL_SETTING": "x",
    }
    done = _cli("voices", "--provider", "openai", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("deprecated") == 1
    assert "VOICE_ASSISTANT_OPENAI_VOICE" in done.stderr
