"""API keys never leave the headers: a whole session with failures, searched for the keys;
then the same keys under misspelt names, in the TOML and in the environment."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import pickle
import shutil
import stat
import sys
from pathlib import Path

import pytest
from audio_samples import concat, silence, speech_16k
from clean_env import clean_environment

from assistant.audio.wav import encode_wav
from assistant.devserver import Fault, RunningDevServer
from assistant.events import Error
from assistant.settings import Secret

ROOT = Path(__file__).resolve().parent.parent
DIFY_KEY = "app-SECRET-dify-4f1c9e"
OPENAI_KEY = "sk-SECRET-openai-77ab2d"
CONVAI_KEY = "SECRET-convai-0c3e51"
KEYS = (DIFY_KEY, OPENAI_KEY, CONVAI_KEY)

SPY = """#!/bin/sh
# Notes the environment espeak-ng is started with, then is espeak-ng.
env >> "{log}"
exec "{real}" "$@"
"""


def _assert_no_key(emitted: str) -> None:
    for key in KEYS:
        assert key not in emitted
        assert key.split("-")[-1] not in emitted  # not even a tail of it


def _spy_on_espeak(tmp_path: Path) -> tuple[Path, Path]:
    """A bin directory whose espeak-ng records its environment; and that record."""
    real = shutil.which("espeak-ng")
    assert real is not None
    bin_dir, log = tmp_path / "bin", tmp_path / "espeak-env.txt"
    bin_dir.mkdir()
    spy = bin_dir / "espeak-ng"
    spy.write_text(SPY.format(log=log, real=real))
    spy.chmod(0o755)
    return bin_dir, log


async def _assistant(*args: str, env: dict[str, str], timeout: float) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "assistant", "--verbose", *args,
        cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode or 0, stdout.decode(), stderr.decode()


async def test_no_key_in_output_logs_or_events(server: RunningDevServer, tmp_path: Path) -> None:
    # Faults on every service, so error paths (messages, events, spoken errors) run too.
    for endpoint, status in [
        ("audio-transcriptions", 401),
        ("completion-messages", 500),
        ("audio-speech", 429),
        ("convai-tts", 403),
    ]:
        server.state.faults.add(Fault(endpoint, status=status, count=1))
    mic = tmp_path / "mic.wav"
    question = speech_16k("What is the weather like on Mars?")
    mic.write_bytes(
        encode_wav(concat(silence(300), question, silence(6000), question, silence(500)), 16_000)
    )
    events = tmp_path / "events.jsonl"
    bin_dir, espeak_env = _spy_on_espeak(tmp_path)
    env = clean_environment()
    env.update(
        PATH=f"{bin_dir}:{os.environ['PATH']}",
        DIFY_API_KEY=DIFY_KEY,
        DIFY_BASE_URL=server.base_url,
        OPENAI_API_KEY=OPENAI_KEY,
        OPENAI_BASE_URL=server.base_url,
        CONVAI_API_KEY=CONVAI_KEY,
        VOICE_ASSISTANT_CONVAI_BASE_URL=server.base_url.removesuffix("/v1"),
        VOICE_ASSISTANT_PROVIDERS_STT="openai",
        VOICE_ASSISTANT_PROVIDERS_STT_FALLBACK="dify",
        VOICE_ASSISTANT_PROVIDERS_TTS="openai",
        VOICE_ASSISTANT_PROVIDERS_TTS_FALLBACK="convai,dify",
    )
    code, stdout, stderr = await _assistant(
        "run", "--mic-wav", str(mic), "--speaker-wav", str(tmp_path / "out.wav"),
        "--events-jsonl", str(events), env=env, timeout=120,
    )  # fmt: skip
    assert code == 0, stderr[-3000:]

    emitted = stdout + stderr + events.read_text()
    assert "error" in events.read_text()  # the faults really were met
    assert "transcript" in events.read_text()  # and a turn really was answered
    _assert_no_key(emitted)
    # The keys did reach the services, in their headers.
    assert server.state.records("completion-messages")
    # The events file holds what was said: its owner's alone.
    assert stat.S_IMODE(events.stat().st_mode) == 0o600
    # espeak-ng (the spoken error) ran, with an environment that holds no key.
    assert espeak_env.exists(), "the local voice was never started"
    spoken_env = espeak_env.read_text()
    _assert_no_key(spoken_env)
    assert "CREDENTIALS_DIRECTORY" not in spoken_env and "API_KEY" not in spoken_env


@pytest.mark.parametrize(
    ("toml", "environment"),
    [
        (f'[dify]\napikey = "{DIFY_KEY}"\n', {}),  # misspelt key
        (f'[dfy]\napi_key = "{DIFY_KEY}"\n', {}),  # misspelt section
        (f'[openai]\napi_token = "{OPENAI_KEY}"\n', {}),
        (f'[convai]\nsecret = "{CONVAI_KEY}"\n', {}),
        (f'[dify]\napi_key = ["{DIFY_KEY}"]\n', {}),  # the right key, the wrong type
        ("", {"VOICE_ASSISTANT_DIFY_APIKEY": DIFY_KEY}),
        ("", {"VOICE_ASSISTANT_OPENAI_KEY": OPENAI_KEY}),
        ("", {"VOICE_ASSISTANT_CONVIA_API_KEY": CONVAI_KEY}),
    ],
)
async def test_a_misspelt_key_name_stops_without_showing_the_key(
    tmp_path: Path, toml: str, environment: dict[str, str]
) -> None:
    config = tmp_path / "assistant.toml"
    config.write_text(toml)
    env = {**clean_environment(), **environment}
    code, stdout, stderr = await _assistant("run", "--config", str(config), env=env, timeout=60)
    assert code == 2, stderr
    assert "config error: " in stderr
    _assert_no_key(stdout + stderr)


async def test_a_misspelt_old_prefix_variable_is_ignored_silently(tmp_path: Path) -> None:
    """VA_ is other programs' prefix too: an unknown one is theirs, and its value stays
    unprinted (the run then stops for want of a key, naming none)."""
    env = {**clean_environment(), "VA_DIFY_APIKEY": DIFY_KEY}
    code, stdout, stderr = await _assistant("run", env=env, timeout=60)
    assert code == 2
    assert "no Dify API key" in stderr
    _assert_no_key(stdout + stderr)


def test_a_secret_is_not_a_string() -> None:
    secret = Secret(DIFY_KEY)
    assert not isinstance(secret, str)
    assert secret.reveal() == DIFY_KEY
    logged = "%s" % (secret,)  # noqa: UP031 (what a logging call does with it)
    for shown in (str(secret), repr(secret), f"{secret}", f"{secret!r}", logged):
        assert DIFY_KEY not in shown
    with pytest.raises(TypeError):
        json.dumps({"key": secret})
    with pytest.raises(TypeError):
        "Bearer " + secret  # type: ignore[operator]
    with pytest.raises(TypeError):
        secret[:4]  # type: ignore[index]
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    assert copy.deepcopy(secret) is secret
    # As an event field it goes out as the mask only.
    assert DIFY_KEY not in Error(stage="startup", code="x", message=secret).to_json()  # type: ignore[arg-type]
    assert Secret("a") == Secret("a") and Secret("a") != Secret("b") and not Secret("")
