"""The API contract check itself: documents in place, good requests pass, bad ones are caught.

Requests go over real HTTP to a dev server started with the check as an extra middleware
and a sink of its own; the session-wide check (conftest.py) sees the same requests, so the
tests that send broken requests on purpose are marked `invalid_requests`.
"""

from __future__ import annotations

import io
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
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

from assistant.devserver import DevServerOptions, RunningDevServer, start_devserver

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
    running = await start_devserver(options=options, middlewares=[checker.middleware(violations)])
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


def test_session_check_fails_the_test_that_sent_a_bad_request(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the real conftest.py, in a separate pytest run: a bad request fails its test."""
    pytester.makeconftest((TESTS_DIR / "conftest.py").read_text(encoding="utf-8"))
    monkeypatch.setenv("PYTHONPATH", str(TESTS_DIR))
    pytester.makepyfile(
        test_bad="""
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
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-o", "asyncio_mode=auto")
    # The test body passes; the check fails it at teardown, listing the violation.
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*do not match the API documents*", "*'inputs' is a required*"])
