"""Dify apps as they really are, over real HTTP against the dev server: the question sent
where the app's form wants it, and the app checked once at start (a mismatch stops the
assistant with exit status 2; a turned-off feature with a fallback is worked around).

The check's logic on plain dicts is in test_dify_app.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from audio_samples import concat, silence, speech_16k
from clean_env import clean_environment

from assistant.app import RunOptions, run_assistant
from assistant.audio.wav import encode_wav
from assistant.config import ConfigError
from assistant.devserver import DevServerOptions, RunningDevServer, reply_for, start_devserver
from assistant.devserver.conversations import chat_reply
from assistant.devserver.inputs import QUESTION_FORM, InputVariable
from assistant.events import Event, EventBus
from assistant.providers.base import ServiceError
from assistant.providers.dify import DifyClient, make_dify_completion
from assistant.settings import (
    DifySettings,
    HttpSettings,
    OpenAISettings,
    ProviderSettings,
    Secret,
    Settings,
)

ROOT = Path(__file__).resolve().parent.parent
KEY = "app-check-key"
QUESTION = "What is the weather like on Mars?"
LONG_QUESTION = "Could you please tell me what the weather is usually like on the planet Mars?"


def serving(**fields: Any) -> pytest.MarkDecorator:
    """The test's `running` dev server has these DevServerOptions fields."""
    return pytest.mark.parametrize("running", [fields], indirect=True, ids=["app"])


@pytest.fixture
async def running(request: pytest.FixtureRequest) -> AsyncIterator[RunningDevServer]:
    fields = {"api_key": KEY, "reply_sentences": 1, **getattr(request, "param", {})}
    server = await start_devserver(options=DevServerOptions(**fields))
    yield server
    await server.stop()


def _dify(server: RunningDevServer, **fields: Any) -> DifySettings:
    return DifySettings(base_url=server.base_url, api_key=Secret(KEY), **fields)


async def _answer(server: RunningDevServer, question: str = QUESTION, **dify: Any) -> str:
    """One answer through the configured Dify completion, warmed up as at start."""
    client = DifyClient(_dify(server, **dify), HttpSettings(read_timeout_s=10), user="tester")
    try:
        await client.warm()
        text = ""
        async for delta in make_dify_completion(client, speech=False).stream(question):
            text = delta.replace if delta.replace is not None else text + delta.text
        return text
    finally:
        await client.aclose()


def _sent(server: RunningDevServer, endpoint: str = "completion-messages") -> dict[str, Any]:
    return server.state.records(endpoint)[-1].details


# -- where the question goes -------------------------------------------------------------


@serving(user_input_form=QUESTION_FORM)
async def test_the_question_goes_in_the_apps_query_variable(running: RunningDevServer) -> None:
    assert await _answer(running) == reply_for(QUESTION, 1)
    assert _sent(running)["inputs"] == {"query": QUESTION}


@serving(user_input_form=QUESTION_FORM)
async def test_a_current_app_refuses_the_question_in_query_only(running: RunningDevServer) -> None:
    with pytest.raises(ServiceError) as refused:
        await _answer(running, question_variable="")
    assert (refused.value.status, refused.value.code) == (400, "invalid_param")
    assert refused.value.message == "query is required in input form"


@serving(user_input_form=(InputVariable("query", required=True, max_length=40),))
async def test_a_long_question_is_cut_to_the_variables_length(
    running: RunningDevServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, "assistant.providers.dify_app"):
        answer = await _answer(running, LONG_QUESTION)
    sent = _sent(running)["inputs"]["query"]
    assert sent == "Could you please tell me what the"
    assert answer == reply_for(sent, 1)
    assert "over the 40 the app allows in 'query'" in caplog.text


@serving(user_input_form=(InputVariable("question", required=True), InputVariable("tone")))
async def test_auto_picks_the_only_required_text_variable(running: RunningDevServer) -> None:
    # Without a `query` variable the app answers the legacy field: it gets the question too.
    assert await _answer(running) == reply_for(QUESTION, 1)
    assert _sent(running)["inputs"] == {"question": QUESTION}


@serving(user_input_form=QUESTION_FORM)
async def test_the_form_is_read_first_when_start_up_could_not(running: RunningDevServer) -> None:
    client = DifyClient(_dify(running), HttpSettings(read_timeout_s=10), user="tester")
    try:
        assert client.app_parameters is None  # Dify was not reached at start
        deltas = [d async for d in make_dify_completion(client).stream(QUESTION)]
    finally:
        await client.aclose()
    assert "".join(d.text for d in deltas) == reply_for(QUESTION, 1)
    assert [r.endpoint for r in running.state.log] == ["parameters", "completion-messages"]


@serving(user_input_form=QUESTION_FORM, app_mode="chat")
async def test_a_chat_app_gets_the_question_in_its_form_too(running: RunningDevServer) -> None:
    assert await _answer(running, app="chat") == chat_reply(QUESTION, 1, 1)
    assert _sent(running, "chat-messages")["inputs"] == {"query": QUESTION}


# -- the check at start ----------------------------------------------------------------------


async def _start(
    server: RunningDevServer, tmp_path: Path, providers: ProviderSettings, **dify: Any
) -> tuple[ConfigError | None, list[Event], list[dict[str, Any]]]:
    """Run the assistant on a short question; (its ConfigError, the start-up events, the
    JSONL events)."""
    settings = Settings(
        dify=_dify(server, **dify),
        openai=OpenAISettings(base_url=server.base_url, api_key=Secret(KEY)),
        providers=providers,
    )
    mic, out, jsonl = tmp_path / "mic.wav", tmp_path / "out.wav", tmp_path / "events.jsonl"
    mic.write_bytes(encode_wav(concat(silence(300), speech_16k(QUESTION), silence(900)), 16_000))
    bus = EventBus()
    startup: list[Event] = []
    bus.add_listener(lambda e: e.data.get("stage") == "startup" and startup.append(e))
    error = None
    try:
        await asyncio.wait_for(run_assistant(settings, RunOptions(mic, out, jsonl), bus), 90)
    except ConfigError as exc:
        error = exc
    lines = jsonl.read_text().splitlines() if jsonl.exists() else []
    return error, startup, [json.loads(line) for line in lines]


FATAL_CASES = [
    ({"speech_to_text": False}, {}, {}, "providers.stt", "stt_disabled"),
    ({"text_to_speech": False}, {}, {}, "providers.tts", "tts_disabled"),
    ({"text_to_speech": False}, {"tts": "dify-stream"}, {}, "providers.tts", "tts_disabled"),
    ({}, {"tts": "dify-stream"}, {}, "providers.tts", "auto_play_disabled"),
    ({"app_mode": "completion"}, {}, {"app": "chat"}, "dify.app", "wrong_app_type"),
    ({"app_mode": "agent-chat"}, {}, {}, "dify.app", "wrong_app_type"),
    (
        {"app_mode": "agent-chat"},
        {},
        {"app": "chat", "response_mode": "blocking"},
        "dify.response_mode",
        "streaming_only",
    ),
    (
        {"user_input_form": (*QUESTION_FORM, InputVariable("city", "select", required=True))},
        {},
        {},
        "dify.inputs",
        "missing_inputs",
    ),
    (
        {"user_input_form": QUESTION_FORM},
        {},
        {"question_variable": "topic"},
        "dify.question_variable",
        "unknown_question_variable",
    ),
]


@pytest.mark.parametrize(
    ("running", "providers", "dify", "setting", "code"),
    FATAL_CASES,
    indirect=["running"],
    ids=[case[-1] + f"-{index}" for index, case in enumerate(FATAL_CASES)],
)
async def test_an_app_that_cannot_work_stops_the_start(
    running: RunningDevServer,
    tmp_path: Path,
    providers: dict[str, Any],
    dify: dict[str, Any],
    setting: str,
    code: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, "assistant.app"):
        error, startup, _ = await _start(running, tmp_path, ProviderSettings(**providers), **dify)
    assert error is not None and error.key == setting
    # One event and one log line per finding; the first is what the exit names.
    event = startup[0]
    assert (event.kind, event.data["service"], event.data["code"]) == ("error", "dify", code)
    assert event.data["message"].startswith(f"{setting}: ")
    lines = [r.getMessage() for r in caplog.records if r.name == "assistant.app"]
    assert len(lines) == len(startup) and setting in lines[0]
    # Stopped before any question: no upload, no answer.
    assert not running.state.records("audio-to-text")
    assert not running.state.records("completion-messages")


@serving(speech_to_text=False, text_to_speech=False)
async def test_turned_off_features_use_the_fallbacks_from_the_first_turn(
    running: RunningDevServer, tmp_path: Path
) -> None:
    providers = ProviderSettings(
        stt="dify", stt_fallback=("openai",), tts="dify", tts_fallback=("openai",)
    )
    error, startup, events = await _start(running, tmp_path, providers)
    assert error is None
    assert sorted(e.data["code"] for e in startup) == ["stt_disabled", "tts_disabled"]
    assert all("uses openai" in e.data["message"] for e in startup)
    assert [e["text"] for e in events if e["kind"] == "transcript"] == [QUESTION]
    assert [e["text"] for e in events if e["kind"] == "answer"] == [reply_for(QUESTION, 1)]
    assert "error" not in [e["kind"] for e in events if e.get("stage") != "startup"]
    # Dify's turned-off endpoints were never tried.
    assert not running.state.records("audio-to-text")
    assert not running.state.records("text-to-audio")
    assert running.state.records("audio-transcriptions")
    assert running.state.records("audio-speech")


async def test_auto_play_off_gives_the_stream_voice_to_the_fallback(
    running: RunningDevServer, tmp_path: Path
) -> None:
    providers = ProviderSettings(tts="dify-stream", tts_fallback=("dify",))
    error, startup, events = await _start(running, tmp_path, providers)
    assert error is None
    [event] = startup
    assert event.data["code"] == "auto_play_disabled" and "tts uses dify" in event.data["message"]
    sentences = [e["text"] for e in events if e["kind"] == "sentence"]
    assert [r.details["text"] for r in running.state.records("text-to-audio")] == sentences


@serving(speech_to_text=False)
async def test_the_command_exits_with_status_2(running: RunningDevServer, tmp_path: Path) -> None:
    mic = tmp_path / "mic.wav"
    mic.write_bytes(encode_wav(silence(500), 16_000))
    env = clean_environment()
    env.update(DIFY_API_KEY=KEY, DIFY_BASE_URL=running.base_url)
    command = [sys.executable, "-m", "assistant", "run", "--mic-wav", str(mic)]
    command += ["--speaker-wav", str(tmp_path / "out.wav")]
    # Asynchronous, so this loop goes on serving the dev server the command talks to.
    process = await asyncio.create_subprocess_exec(
        *command, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2, stderr.decode()
    assert "config error: providers.stt = 'dify': the Dify app has Speech to Text turned off" in (
        stderr.decode()
    )
    assert KEY not in stderr.decode()
