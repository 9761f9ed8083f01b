"""The OpenAI clients over real HTTP against the dev server's OpenAI-compatible routes."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import AsyncIterator

import httpx
import numpy as np
import pytest
from audio_samples import concat, silence, speech_16k

from assistant.audio.decoders import SniffingDecoder
from assistant.audio.wav import encode_wav
from assistant.devserver import (
    DevServerOptions,
    Fault,
    RunningDevServer,
    reply_for,
    speech_for,
    start_devserver,
)
from assistant.devserver.openai_audio import openai_pcm
from assistant.providers.base import AudioChunk, ServiceError, SpeechInput
from assistant.providers.openai import (
    MAX_INPUT_CHARS,
    PCM_CONTENT_TYPE,
    OpenAIClient,
    OpenAISpeechToText,
    OpenAITextToSpeech,
    openai_voices,
    split_input,
)
from assistant.providers.openai_names import OPENAI_FORMATS
from assistant.settings import HttpSettings, OpenAISettings, Secret

KEY = "sk-test-key"
QUESTION = "What is the weather like on Mars?"
SENTENCE = "The first sentence is already playing while the rest is still being written."
TTS_SPEED = 4.0
"""Bodies stream at four times real time: slow enough to see audio before the end."""
CODEC_PADDING_S = 0.1


DEV_SERVER_OPTIONS = DevServerOptions(api_key=KEY, tts_speed=TTS_SPEED)


def _client(server: RunningDevServer, key: str = KEY, **settings: object) -> OpenAIClient:
    config = OpenAISettings(base_url=server.base_url, api_key=Secret(key), **settings)  # type: ignore[arg-type]
    return OpenAIClient(config, HttpSettings(read_timeout_s=10))


@pytest.fixture
async def client(server: RunningDevServer) -> AsyncIterator[OpenAIClient]:
    openai = _client(server)
    yield openai
    await openai.aclose()


def _question() -> SpeechInput:
    return SpeechInput(concat(silence(200), speech_16k(QUESTION), silence(200)), 16_000)


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}"}


async def _speak(client: OpenAIClient, text: str) -> list[tuple[float, AudioChunk]]:
    """Every chunk of the speech for `text`, with its arrival time."""
    return [(time.monotonic(), c) async for c in OpenAITextToSpeech(client).stream(text)]


def _decode(chunks: list[tuple[float, AudioChunk]]) -> tuple[np.ndarray, int, float | None]:
    """Decode chunk by chunk as a player would: (samples, rate, arrival of the first audio)."""
    decoder = SniffingDecoder(chunks[0][1].content_type)
    pieces: list[np.ndarray] = []
    first_audio_at = None
    rate = 0
    for arrived, chunk in chunks:
        for pcm in decoder.feed(chunk.data):
            first_audio_at = arrived if first_audio_at is None else first_audio_at
            pieces.append(pcm.samples)
            rate = pcm.sample_rate
    for pcm in decoder.close():
        pieces.append(pcm.samples)
        rate = pcm.sample_rate
    return np.concatenate(pieces), rate, first_audio_at


# --------------------------------------------------------------------------- speech to text


async def test_transcribe_uploads_a_named_wav(
    server: RunningDevServer, client: OpenAIClient
) -> None:
    assert await OpenAISpeechToText(client).transcribe(_question()) == QUESTION
    record = server.state.records("audio-transcriptions")[-1]
    assert record.status == 200
    assert (record.details["filename"], record.details["content_type"]) == (
        "utterance.wav",
        "audio/wav",
    )
    # Defaults are not sent: only what was configured.
    assert record.details["fields"] == {"model": ["whisper-1"], "response_format": ["json"]}


async def test_optional_transcription_fields_are_sent_when_set(server: RunningDevServer) -> None:
    openai = _client(server, language="en", prompt="Planets.", temperature=0.2)
    try:
        assert await OpenAISpeechToText(openai).transcribe(_question()) == QUESTION
    finally:
        await openai.aclose()
    fields = server.state.records("audio-transcriptions")[-1].details["fields"]
    assert (fields["language"], fields["prompt"], fields["temperature"]) == (
        ["en"],
        ["Planets."],
        ["0.2"],
    )


@pytest.mark.parametrize(
    ("samples", "code"),
    [
        (np.zeros(16_000 * 830, dtype=np.int16), "audio_too_large"),  # 26.56 MB of WAV
        (np.zeros(1_500, dtype=np.int16), "audio_too_short"),  # 94 ms
    ],
)
async def test_refused_before_sending(
    server: RunningDevServer, client: OpenAIClient, samples: np.ndarray, code: str
) -> None:
    with pytest.raises(ServiceError) as caught:
        await OpenAISpeechToText(client).transcribe(SpeechInput(samples, 16_000))
    assert (caught.value.service, caught.value.stage, caught.value.code) == ("openai", "stt", code)
    assert server.state.records() == []


async def _post_file(server: RunningDevServer, data: bytes, **fields: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as raw:
        return await raw.post(
            f"{server.base_url}/audio/transcriptions",
            headers=_auth(),
            files={"file": (fields.pop("filename", "clip.wav"), data, "audio/wav")},
            data={"model": "whisper-1", **fields},  # fields may name another model
        )


async def test_server_refuses_short_audio_like_openai(server: RunningDevServer) -> None:
    response = await _post_file(server, encode_wav(np.zeros(1_500, dtype=np.int16), 16_000))
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "message": "Minimum audio length is 0.1 seconds",
            "type": "invalid_request_error",
            "param": "file",
            "code": "audio_too_short",
        }
    }


async def test_server_refuses_oversize_upload_like_openai(server: RunningDevServer) -> None:
    response = await _post_file(server, bytes(25 * 1024 * 1024 + 1))
    assert response.status_code == 413
    error = response.json()["error"]
    assert re.fullmatch(
        r"Maximum content size limit \(26214400\) exceeded \(\d+ bytes read\)", error["message"]
    )
    assert (error["type"], error["param"], error["code"]) == ("server_error", None, None)


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"filename": "clip.txt"}, "file"),
        ({"response_format": "yaml"}, "response_format"),
        ({"model": "gpt-4o-transcribe", "response_format": "text"}, "response_format"),
        ({"temperature": "1.5"}, "temperature"),
        ({"colour": "blue"}, None),
    ],
)
@pytest.mark.invalid_requests
async def test_server_checks_the_form(
    server: RunningDevServer, fields: dict[str, str], param: str | None
) -> None:
    response = await _post_file(server, encode_wav(speech_16k(QUESTION), 16_000), **fields)
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param)


async def test_server_refuses_what_is_not_audio(server: RunningDevServer) -> None:
    response = await _post_file(server, b"RIFF....WAVEnot really audio")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "file"


async def test_text_and_verbose_json_answers(server: RunningDevServer) -> None:
    wav = encode_wav(concat(speech_16k(QUESTION), silence(300)), 16_000)
    text = await _post_file(server, wav, response_format="text")
    assert text.text == QUESTION + "\n"
    verbose = await _post_file(
        server, wav, response_format="verbose_json", **{"timestamp_granularities[]": "word"}
    )
    body = verbose.json()
    assert (body["text"], body["language"]) == (QUESTION, "english")
    assert [w["word"] for w in body["words"]] == QUESTION.rstrip("?").split()
    assert body["duration"] == pytest.approx(len(speech_16k(QUESTION)) / 16_000 + 0.3, abs=0.01)
    srt = await _post_file(server, wav, response_format="srt")
    assert re.fullmatch(
        rf"1\n00:00:00,000 --> 00:00:0\d,\d{{3}}\n{re.escape(QUESTION)}\n\n", srt.text
    )


async def test_streamed_transcription_events(server: RunningDevServer) -> None:
    wav = encode_wav(speech_16k(QUESTION), 16_000)
    response = await _post_file(server, wav, model="gpt-4o-mini-transcribe", stream="true")
    events = [json.loads(frame[6:]) for frame in response.text.split("\n\n") if frame]
    assert "".join(e["delta"] for e in events[:-1]) == QUESTION
    assert events[-1]["type"] == "transcript.text.done"
    assert (events[-1]["text"], events[-1]["usage"]["type"]) == (QUESTION, "tokens")


# ------------------------------------------------------------------------------ error bodies


async def test_wrong_key_is_a_typed_401(server: RunningDevServer) -> None:
    openai = _client(server, key="sk-wrong-secret")
    try:
        with pytest.raises(ServiceError) as caught:
            await OpenAISpeechToText(openai).transcribe(_question())
    finally:
        await openai.aclose()
    error = caught.value
    assert (error.service, error.status, error.code) == ("openai", 401, "invalid_api_key")
    assert error.message.startswith("Incorrect API key provided")
    assert "sk-wrong-secret" not in str(error)
    assert server.state.records("audio-transcriptions")[-1].status == 401


@pytest.mark.invalid_requests
async def test_empty_key_sends_no_authorization(server: RunningDevServer) -> None:
    openai = _client(server, key="")
    try:
        assert "authorization" not in openai.http.headers
        with pytest.raises(ServiceError) as caught:
            [c async for c in OpenAITextToSpeech(openai).stream(SENTENCE)]
    finally:
        await openai.aclose()
    assert caught.value.status == 401
    assert caught.value.message.startswith("You didn't provide an API key.")


async def test_any_key_is_fine_without_a_server_key() -> None:
    running = await start_devserver(options=DevServerOptions(api_key=None))
    openai = _client(running, key="sk-anything")
    try:
        assert await OpenAISpeechToText(openai).transcribe(_question()) == QUESTION
    finally:
        await openai.aclose()
        await running.stop()


def _openai_error(message: str, error_type: str, code: str | None) -> dict[str, object]:
    return {"error": {"message": message, "type": error_type, "param": None, "code": code}}


TOO_LARGE = "Maximum content size limit (26214400) exceeded (26214401 bytes read)"
RATE_LIMITED = "Rate limit reached for whisper-1 on requests per min (RPM): Limit 3, Used 3."
NO_QUOTA = "You exceeded your current quota, please check your plan and billing details."


@pytest.mark.parametrize(
    ("status", "body", "headers", "code", "message", "retry_after"),
    [
        (413, _openai_error(TOO_LARGE, "server_error", None), {}, "server_error", TOO_LARGE, None),
        (
            429,
            _openai_error(RATE_LIMITED, "requests", "rate_limit_exceeded"),
            {"Retry-After": "1"},
            "rate_limit_exceeded",
            RATE_LIMITED,
            1,
        ),
        (
            429,
            _openai_error(NO_QUOTA, "insufficient_quota", "insufficient_quota"),
            {},
            "insufficient_quota",
            NO_QUOTA,
            None,
        ),
    ],
)
async def test_error_bodies_are_typed(
    server: RunningDevServer,
    client: OpenAIClient,
    status: int,
    body: dict[str, object],
    headers: dict[str, str],
    code: str,
    message: str,
    retry_after: float | None,
) -> None:
    server.state.faults.add(
        Fault("audio-transcriptions", status=status, body=body, headers=headers)
    )
    with pytest.raises(ServiceError) as caught:
        await OpenAISpeechToText(client).transcribe(_question())
    error = caught.value
    assert (error.service, error.stage, error.status, error.code, error.message) == (
        "openai",
        "stt",
        status,
        code,
        message,
    )
    assert error.retry_after == retry_after


@pytest.mark.parametrize("body", [{"transcript": QUESTION}, "not json", [QUESTION]])
async def test_malformed_transcription_answer(
    server: RunningDevServer, client: OpenAIClient, body: object
) -> None:
    server.state.faults.add(Fault("audio-transcriptions", status=200, body=body))
    with pytest.raises(ServiceError) as caught:
        await OpenAISpeechToText(client).transcribe(_question())
    assert (caught.value.service, caught.value.code) == ("openai", "malformed_response")


async def test_json_instead_of_pcm_is_not_played(
    server: RunningDevServer, client: OpenAIClient
) -> None:
    server.state.faults.add(Fault("audio-speech", status=200, body={"status": "queued"}))
    with pytest.raises(ServiceError) as caught:
        [c async for c in OpenAITextToSpeech(client).stream(SENTENCE)]
    assert caught.value.code == "no_audio"


async def test_html_error_page_is_typed(server: RunningDevServer, client: OpenAIClient) -> None:
    page = "<html><body><h1>500 Internal Server Error</h1>" + "x" * 5000 + "</body></html>"
    server.state.faults.add(Fault("audio-speech", status=500, body=page, content_type="text/html"))
    with pytest.raises(ServiceError) as caught:
        [c async for c in OpenAITextToSpeech(client).stream(SENTENCE)]
    assert (caught.value.stage, caught.value.status, caught.value.code) == ("tts", 500, "http_500")
    assert "500 Internal Server Error" in caught.value.message
    assert len(caught.value.message) <= 200


# ------------------------------------------------------------------------------ text to speech


@pytest.mark.parametrize("response_format", OPENAI_FORMATS)
async def test_every_format_decodes_incrementally(
    server: RunningDevServer, response_format: str
) -> None:
    openai = _client(server, response_format=response_format)
    try:
        chunks = await _speak(openai, SENTENCE)
    finally:
        await openai.aclose()
    samples, rate, first_audio_at = _decode(chunks)
    assert len(samples) / rate == pytest.approx(speech_for(SENTENCE).duration, abs=CODEC_PADDING_S)
    if response_format in ("pcm", "mp3", "wav"):
        # Audio came out of the decoder long before the body's last byte arrived.
        assert first_audio_at is not None
        assert first_audio_at < chunks[-1][0] - 0.2
    record = server.state.records("audio-speech")[-1]
    assert record.details["response_format"] == response_format
    expected_type = PCM_CONTENT_TYPE if response_format == "pcm" else record.details["content_type"]
    assert {c.content_type for _, c in chunks} == {expected_type}


async def test_odd_pcm_chunks_decode_to_every_sample(server: RunningDevServer) -> None:
    openai = _client(server, response_format="pcm")
    try:
        chunks = await _speak(openai, SENTENCE)
    finally:
        await openai.aclose()
    assert any(len(c.data) % 2 for _, c in chunks)  # the server splits samples on purpose
    samples, rate, _ = _decode(chunks)
    assert rate == 24_000
    assert np.array_equal(samples, openai_pcm(SENTENCE))


@pytest.mark.parametrize(("model", "sent"), [("gpt-4o-mini-tts", True), ("tts-1", False)])
async def test_instructions_only_go_to_models_that_take_them(
    server: RunningDevServer, model: str, sent: bool
) -> None:
    openai = _client(server, tts_model=model, instructions="Speak calmly.", response_format="mp3")
    try:
        assert await _speak(openai, SENTENCE)
    finally:
        await openai.aclose()
    details = server.state.records("audio-speech")[-1].details
    assert details.get("instructions") == ("Speak calmly." if sent else None)


async def test_voice_id_is_sent_as_an_object(server: RunningDevServer) -> None:
    openai = _client(server, tts_model="gpt-4o-mini-tts", voice_id="voice_1234")
    try:
        assert await _speak(openai, SENTENCE)
    finally:
        await openai.aclose()
    assert server.state.records("audio-speech")[-1].details["voice"] == {"id": "voice_1234"}


async def test_long_input_is_split_at_sentences() -> None:
    # A big chunk size: four minutes of pcm in 1 KB chunks would only test patience.
    running = await start_devserver(options=DevServerOptions(api_key=KEY, tts_chunk_bytes=65_536))
    text = " ".join(f"Sentence number {i} is here to fill the page." for i in range(100))
    assert len(text) > MAX_INPUT_CHARS
    # wav bodies cannot follow each other: the client asks for the same audio as pcm.
    openai = _client(running, response_format="wav")
    try:
        chunks = await _speak(openai, text)
    finally:
        await openai.aclose()
        await running.stop()
    records = running.state.records("audio-speech")
    inputs = [r.details["input"] for r in records]
    assert len(inputs) == 2
    assert all(len(i) <= MAX_INPUT_CHARS and i.endswith(".") for i in inputs)
    assert " ".join(inputs) == text
    assert {r.details["response_format"] for r in records} == {"pcm"}
    samples, _, _ = _decode(chunks)
    assert len(samples) == sum(len(openai_pcm(i)) for i in inputs)


def test_split_falls_back_to_clauses_words_and_hard_cuts() -> None:
    assert split_input("One two. Three four five.", 12) == ["One two.", "Three four", "five."]
    assert split_input("Alpha beta, gamma delta", 14) == ["Alpha beta,", "gamma delta"]
    assert split_input("abcdefghij", 4) == ["abcd", "efgh", "ij"]
    assert split_input("  \n ") == []


def test_voices_follow_the_model() -> None:
    assert len(openai_voices(OpenAISettings(tts_model="tts-1-hd"))) == 9
    assert "cedar" in openai_voices(OpenAISettings(tts_model="gpt-4o-mini-tts"))


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"volume": 11}, None),
        ({"instructions": "Whisper."}, "instructions"),
        ({"stream_format": "sse"}, "stream_format"),
        ({"voice": "ballad"}, "voice"),
        ({"voice": {"id": "v1", "name": "x"}}, "voice"),
        ({"speed": 4.5}, "speed"),
        ({"input": "x" * 4097}, "input"),
        ({"response_format": "ogg"}, "response_format"),
    ],
)
@pytest.mark.invalid_requests
async def test_server_checks_speech_requests(
    server: RunningDevServer, change: dict[str, object], param: str | None
) -> None:
    body = {"model": "tts-1", "input": SENTENCE, "voice": "alloy", **change}
    async with httpx.AsyncClient() as raw:
        response = await raw.post(f"{server.base_url}/audio/speech", headers=_auth(), json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param)


async def test_speech_as_server_sent_events(server: RunningDevServer) -> None:
    body = {
        "model": "gpt-4o-mini-tts",
        "input": SENTENCE,
        "voice": "marin",
        "response_format": "pcm",
        "stream_format": "sse",
    }
    async with httpx.AsyncClient() as raw:
        response = await raw.post(f"{server.base_url}/audio/speech", headers=_auth(), json=body)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(line[6:]) for line in response.text.split("\n\n") if line]
    assert {e["type"] for e in events[:-1]} == {"speech.audio.delta"}
    assert events[-1]["type"] == "speech.audio.done"
    assert set(events[-1]["usage"]) == {"input_tokens", "output_tokens", "total_tokens"}
    pcm = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    assert np.array_equal(np.frombuffer(pcm, "<i2"), openai_pcm(SENTENCE))


# ----------------------------------------------------------------------------- chat completions


async def test_chat_completion_stream_framing(server: RunningDevServer) -> None:
    body = {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": QUESTION}]},
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    async with httpx.AsyncClient() as raw:
        response = await raw.post(f"{server.base_url}/chat/completions", headers=_auth(), json=body)
    assert response.status_code == 200
    assert response.text.endswith("data: [DONE]\n\n")
    frames = response.text.split("\n\n")[:-2]
    chunks = [json.loads(frame.removeprefix("data: ")) for frame in frames]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    content = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1])
    assert content == reply_for(QUESTION)
    finals = [c["choices"][0]["finish_reason"] for c in chunks[:-1]]
    assert finals[-1] == "stop" and set(finals[:-1]) == {None}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 10


async def test_chat_completion_without_stream(server: RunningDevServer) -> None:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": QUESTION}]}
    async with httpx.AsyncClient() as raw:
        response = await raw.post(f"{server.base_url}/chat/completions", headers=_auth(), json=body)
    answer = response.json()
    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"]["content"] == reply_for(QUESTION)
    assert answer["choices"][0]["finish_reason"] == "stop"
    assert server.state.records("chat-completions")[-1].details["query"] == QUESTION
