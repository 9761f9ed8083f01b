"""The API contract check itself: documents in place, good requests pass, bad ones are caught.

Requests go over real HTTP to a dev server started with the check as an extra middleware
and a sink of its own; the session-wide check (conftest.py) sees the same requests, so the
tests that send broken requests on purpose are marked `invalid_requests`.
"""

from __future__ import annotations

import contextlib
import io
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from contracts import (
    CONTRACTS_DIR,
    CONVAI_TTS,
    DIFY_CHAT,
    DIFY_COMPLETION,
    OPENAI_AUDIO,
    UPSTREAM_DOCUMENTS,
    ContractChecker,
    Violation,
)

from assistant.devserver import DevServerOptions, Fault, RunningDevServer, start_devserver

pytest_plugins = ["pytester"]

TESTS_DIR = Path(__file__).resolve().parent
REFERENCE_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "reference"
"""Where the upstream documents come from; absent in a fresh clone."""

KEY = "app-contract-test"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def checker() -> ContractChecker:
    return ContractChecker()


@pytest.fixture
def violations() -> list[Violation]:
    """What this module's own middleware found (the session-wide one records separately)."""
    return []


@pytest.fixture
async def server(
    checker: ContractChecker, violations: list[Violation]
) -> AsyncIterator[RunningDevServer]:
    options = DevServerOptions(api_key=KEY)
    running = await start_devserver(
        options=options, middlewares=[checker.middleware(violations)], control=True
    )
    yield running
    await running.stop()


@pytest.fixture
async def http(server: RunningDevServer) -> AsyncIterator[httpx.AsyncClient]:
    root = f"http://{server.host}:{server.port}"
    async with httpx.AsyncClient(base_url=root, headers=AUTH, timeout=30) as client:
        yield client


def silent_wav(seconds: float = 0.5, rate: int = 16_000) -> bytes:
    """A real 16-bit mono WAV file of silence."""
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(b"\x00\x00" * int(seconds * rate))
    return out.getvalue()


def only(violations: list[Violation]) -> Violation:
    """The single violation recorded."""
    assert len(violations) == 1, violations
    return violations[0]


# --- the documents ------------------------------------------------------------------------


@pytest.mark.parametrize("name", UPSTREAM_DOCUMENTS)
def test_copies_equal_the_shared_reference(name: str) -> None:
    original = REFERENCE_DIR / name
    if not REFERENCE_DIR.is_dir():
        pytest.skip(f"{REFERENCE_DIR} is not there (a fresh clone): the copies are used as is")
    assert (CONTRACTS_DIR / name).read_bytes() == original.read_bytes(), (
        f"tests/contracts/{name} differs from {original}: copy it again (see contracts/README.md)"
    )


@pytest.mark.parametrize(
    ("method", "path", "document"),
    [
        ("POST", "/v1/completion-messages", DIFY_COMPLETION),
        ("POST", "/v1/completion-messages/task-1/stop", DIFY_COMPLETION),
        ("POST", "/v1/audio-to-text", DIFY_COMPLETION),
        ("POST", "/v1/text-to-audio", DIFY_COMPLETION),
        ("GET", "/v1/parameters", DIFY_COMPLETION),
        ("GET", "/v1/info", DIFY_COMPLETION),
        ("POST", "/v1/chat-messages", DIFY_CHAT),
        ("POST", "/v1/chat-messages/task-1/stop", DIFY_CHAT),
        ("POST", "/v1/audio/speech", OPENAI_AUDIO),
        ("POST", "/v1/audio/transcriptions", OPENAI_AUDIO),
        ("POST", "/tts/", CONVAI_TTS),
        ("GET", "/tts/get_available_voices", None),
        ("POST", "/v1/chat/completions", None),
        ("PUT", "/_dev/latency", None),
        ("POST", "/v1/completion-messages-extra", None),
    ],
)
def test_each_path_has_its_document(method: str, path: str, document: str | None) -> None:
    assert ContractChecker.document_for(method, path) == document


# --- conforming requests pass, and the server still reads their bodies --------------------


async def test_dify_completion_request_passes(
    http: httpx.AsyncClient, violations: list[Violation]
) -> None:
    body = {"inputs": {}, "query": "Hello", "response_mode": "blocking", "user": "u1"}
    response = await http.post("/v1/completion-messages", json=body)
    assert response.status_code == 200, response.text
    assert violations == []


async def test_dify_chat_request_passes(
    http: httpx.AsyncClient, violations: list[Violation]
) -> None:
    body = {
        "inputs": {},
        "query": "Hello",
        "response_mode": "blocking",
        "user": "u1",
        "conversation_id": "",
    }
    response = await http.post("/v1/chat-messages", json=body)
    assert response.status_code == 200, response.text
    assert violations == []


async def test_dify_multipart_audio_to_text_passes(
    http: httpx.AsyncClient, violations: list[Violation]
) -> None:
    # The handler streams request.multipart(): a 200 shows the body was handed on intact.
    files = {"file": ("speech.wav", silent_wav(), "audio/wav")}
    response = await http.post("/v1/audio-to-text", files=files, data={"user": "u1"})
    assert response.status_code == 200, response.text
    assert "text" in response.json()
    assert violations == []


async def test_openai_speech_request_passes(
    http: httpx.AsyncClient, violations: list[Violation]
) -> None:
    body = {"model": "tts-1", "input": "Hello there.", "voice": "alloy", "response_format": "wav"}
    response = await http.post("/v1/audio/speech", json=body)
    assert response.status_code == 200, response.text
    assert violations == []


async def test_openai_transcription_request_passes(
    http: httpx.AsyncClient, violations: list[Violation]
) -> None:
    files = {"file": ("speech.wav", silent_wav(), "audio/wav")}
    data = {"model": "whisper-1", "response_format": "json", "language": "en"}
    response = await http.post("/v1/audio/transcriptions", files=files, data=data)
    assert response.status_code == 200, response.text
    assert violations == []


async def test_transcription_form_is_read_as_a_server_reads_it(
    http: httpx.AsyncClient, violations: list[Violation]
) -> None:
    # Form text is cast to the property's type ("0.2" is a number) and `name[]` is an array.
    files = {"file": ("speech.wav", silent_wav(), "audio/wav")}
    data = {
        "model": "whisper-1",
        "response_format": "verbose_json",
        "temperature": "0.2",
        "timestamp_granularities[]": "segment",
    }
    await http.post("/v1/audio/transcriptions", files=files, data=data)
    assert violations == []


async def test_convai_tts_request_passes(
    http: httpx.AsyncClient, violations: list[Violation]
) -> None:
    body = {"transcript": "Hello there.", "voice": "WUFemale 3", "encoding": "wav"}
    headers = {"CONVAI-API-KEY": KEY}
    response = await http.post("/tts/", json=body, headers=headers)
    assert response.status_code == 200, response.text
    assert violations == []


async def test_undocumented_paths_are_not_checked(
    http: httpx.AsyncClient, violations: list[Violation]
) -> None:
    await http.get("/tts/get_available_voices", headers={"CONVAI-API-KEY": KEY})
    await http.post("/v1/chat/completions", json={"nonsense": True})
    assert violations == []


# --- requests that break their document are recorded --------------------------------------


@pytest.mark.invalid_requests
async def test_completion_without_inputs_is_a_violation(
    http: httpx.AsyncClient, violations: list[Violation]
) -> None:
    await http.post("/v1/completion-messages", json={"query": "Hello", "user": "u1"})
    violation = only(violations)
    assert (violation.method, violation.path) == ("POST", "/v1/completion-messages")
    assert violation.document == DIFY_COMPLETION
    assert "'inputs' is a required property" in violation.error


@pytest.mark.invalid_requests
async def test_openai_speech_with_an_unknown_field_is_a_violation(
    http: httpx.AsyncClient, violations: list[Violation]
) -> None:
    body = {"model": "tts-1", "input": "Hello.", "voice": "alloy", "pitch": 2}
    await http.post("/v1/audio/speech", json=body)
    violation = only(violations)
    assert violation.document == OPENAI_AUDIO
    assert "pitch" in violation.error
    assert "Additional properties are not allowed" in violation.error


@pytest.mark.invalid_requests
async def test_transcription_with_an_unknown_part_is_a_violation(
    http: httpx.AsyncClient, violations: list[Violation]
) -> None:
    files = {"file": ("speech.wav", silent_wav(), "audio/wav")}
    await http.post("/v1/audio/transcriptions", files=files, data={"model": "whisper-1", "x": "1"})
    violation = only(violations)
    assert violation.document == OPENAI_AUDIO
    assert "Additional properties are not allowed ('x' was unexpected)" in violation.error


@pytest.mark.invalid_requests
async def test_audio_to_text_without_file_is_a_violation(
    http: httpx.AsyncClient, violations: list[Violation]
) -> None:
    await http.post("/v1/audio-to-text", files={"user": (None, "u1")})
    assert "'file' is a required property" in only(violations).error


@pytest.mark.invalid_requests
async def test_convai_request_without_voice_is_a_violation(
    http: httpx.AsyncClient, violations: list[Violation]
) -> None:
    await http.post("/tts/", json={"transcript": "Hello."}, headers={"CONVAI-API-KEY": KEY})
    violation = only(violations)
    assert (violation.path, violation.document) == ("/tts/", CONVAI_TTS)
    assert "'voice' is a required property" in violation.error


@pytest.mark.invalid_requests
async def test_convai_request_without_key_is_a_violation(
    http: httpx.AsyncClient, violations: list[Violation]
) -> None:
    body = {"transcript": "Hello.", "voice": "WUFemale 3"}
    await http.post("/tts/", json=body)
    assert "CONVAI-API-KEY header is missing" in only(violations).error


@pytest.mark.invalid_requests
async def test_dify_request_without_bearer_token_is_a_violation(
    server: RunningDevServer, violations: list[Violation]
) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as anonymous:
        await anonymous.get("/parameters")
    assert only(violations).document == DIFY_COMPLETION


def _run_with_the_real_conftest(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, test: str
) -> pytest.RunResult:
    """Run the test module `test` through the real conftest.py, in a separate pytest run."""
    pytester.makeconftest((TESTS_DIR / "conftest.py").read_text(encoding="utf-8"))
    monkeypatch.setenv("PYTHONPATH", str(TESTS_DIR))
    pytester.makepyfile(test_module=test)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-o", "asyncio_mode=auto")


def test_session_check_fails_the_test_that_sent_a_bad_request(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the real conftest.py, in a separate pytest run: a bad request fails its test."""
    result = _run_with_the_real_conftest(
        pytester,
        monkeypatch,
        """
        import httpx
        from assistant.devserver import start_devserver

        async def test_sends_a_bad_request():
            server = await start_devserver()
            try:
                async with httpx.AsyncClient(base_url=server.base_url) as http:
                    headers = {"Authorization": "Bearer app-x"}
                    await http.post("/completion-messages", json={"user": "u"}, headers=headers)
            finally:
                await server.stop()
        """,
    )
    # The test body passes; the check fails it at teardown, listing the violation.
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*do not match the API documents*", "*'inputs' is a required*"])


# --- answers that break their document are recorded ---------------------------------------


@contextlib.asynccontextmanager
async def _answering(
    checker: ContractChecker, violations: list[Violation], path: str, status: int, body: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """A bare server behind the check that answers `path` with `body` as JSON."""

    async def answer(request: web.Request) -> web.Response:
        return web.json_response(body, status=status)

    app = web.Application(middlewares=[checker.middleware(violations)])
    app.router.add_route("*", path, answer)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=AUTH) as http:
            yield http
    finally:
        await runner.cleanup()


ASK = {"inputs": {}, "query": "Hello", "response_mode": "blocking", "user": "u1"}
FORM_ITEM = {"label": "Query", "variable": "query", "required": True, "default": ""}


async def test_a_json_answer_that_breaks_its_schema_is_a_violation(
    checker: ContractChecker, violations: list[Violation]
) -> None:
    wrong = {"speech_to_text": {"enabled": "yes"}}
    async with _answering(checker, violations, "/v1/parameters", 200, wrong) as http:
        await http.get("/v1/parameters")
    violation = only(violations)
    assert (violation.kind, violation.document) == ("response", DIFY_COMPLETION)
    assert "HTTP 200" in violation.error and "'yes' is not of type 'boolean'" in violation.error
    assert "its answer" in str(violation)


async def test_a_blocking_answer_is_checked(
    checker: ContractChecker, violations: list[Violation]
) -> None:
    wrong = {"event": "message", "answer": 42, "created_at": "today"}
    async with _answering(checker, violations, "/v1/completion-messages", 200, wrong) as http:
        await http.post("/v1/completion-messages", json=ASK)
    error = only(violations).error
    assert "42 is not of type 'string'" in error and "'today' is not of type 'integer'" in error


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (400, {"code": "invalid_param", "message": "x", "status": 500}, "`status` 500 is not 400"),
        (400, {"error": "bad"}, "'code' is a required property"),
        (401, {"code": "unauthorized", "message": 1, "status": 401}, "1 is not of type 'string'"),
        (
            429,
            {"code": "too_many_requests", "message": "x", "status": 429, "x": 1},
            "'x' was unexp",
        ),
    ],
)
async def test_error_envelopes_are_checked(
    checker: ContractChecker,
    violations: list[Violation],
    status: int,
    body: dict[str, Any],
    expected: str,
) -> None:
    async with _answering(checker, violations, "/v1/completion-messages", status, body) as http:
        await http.post("/v1/completion-messages", json=ASK)
    assert expected in only(violations).error


async def test_a_good_error_envelope_passes(
    checker: ContractChecker, violations: list[Violation]
) -> None:
    body = {"code": "unauthorized", "message": "Access token is invalid", "status": 401}
    async with _answering(checker, violations, "/v1/parameters", 401, body) as http:
        await http.get("/v1/parameters")
    assert violations == []


async def test_input_form_items_are_one_control_each(
    checker: ContractChecker, violations: list[Violation]
) -> None:
    # Upstream's oneOf matches any item thrice; the loaded document requires the control.
    good = {"user_input_form": [{"paragraph": FORM_ITEM}, {"text-input": FORM_ITEM}]}
    async with _answering(checker, violations, "/v1/parameters", 200, good) as http:
        await http.get("/v1/parameters")
    assert violations == []
    two = {"user_input_form": [{"paragraph": FORM_ITEM, "text-input": FORM_ITEM}]}
    async with _answering(checker, violations, "/v1/parameters", 200, two) as http:
        await http.get("/v1/parameters")
    assert "user_input_form" in only(violations).error


async def test_answers_a_fault_made_are_not_checked(
    server: RunningDevServer, http: httpx.AsyncClient, violations: list[Violation]
) -> None:
    server.state.faults.add(Fault("parameters", status=200, body={"text_to_speech": "off"}))
    assert (await http.get("/v1/parameters")).json() == {"text_to_speech": "off"}
    assert violations == []


def test_session_check_fails_a_test_that_received_a_bad_answer(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even a test that sends broken requests on purpose fails on a bad answer."""
    result = _run_with_the_real_conftest(
        pytester,
        monkeypatch,
        """
        import httpx
        import pytest
        from assistant.devserver import routes_info, start_devserver

        @pytest.mark.invalid_requests
        async def test_receives_a_bad_answer(monkeypatch):
            monkeypatch.setattr(routes_info, "app_parameters", lambda _: {"speech_to_text": []})
            server = await start_devserver()
            try:
                async with httpx.AsyncClient(base_url=server.base_url) as http:
                    await http.get("/parameters", headers={"Authorization": "Bearer app-x"})
            finally:
                await server.stop()
        """,
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*do not match the API documents*", "*its answer*"])
