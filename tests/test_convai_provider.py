"""The Convai client over real HTTP against the dev server's /tts routes: audio, every error."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from assistant.audio.decoders import PcmChunk, SniffingDecoder
from assistant.audio.wav import encode_wav
from assistant.devserver import (
    DevServerOptions,
    Fault,
    RunningDevServer,
    speech_for,
)
from assistant.devserver.routes_convai import CATALOGUE, DEFAULT_VOICE, find_voice
from assistant.providers.base import AudioChunk, ServiceError
from assistant.providers.convai import (
    ConvaiClient,
    ConvaiTextToSpeech,
    ConvaiVoice,
    convai_voices,
)
from assistant.providers.http import error_from_body
from assistant.settings import ConvaiSettings, HttpSettings, Secret

KEY = "convai-test-key"
TEXT = "The weather on Mars is cold and dusty today."
GCP_VOICE = "WUFemale 3"
"""16 kHz, the only section that also speaks MP3."""
ELEVENLABS_VOICE = "Bella-en-US"
"""44.1 kHz, WAV only."""


DEV_SERVER_OPTIONS = DevServerOptions(api_key=KEY)


def _root(server: RunningDevServer) -> str:
    return f"http://{server.host}:{server.port}"


def _client(
    server: RunningDevServer,
    key: str = KEY,
    voice: str = DEFAULT_VOICE,
    encoding: str = "wav",
    filename: str = "",
) -> ConvaiClient:
    convai = ConvaiSettings(
        base_url=_root(server),
        api_key=Secret(key),
        voice=voice,
        encoding=encoding,
        filename=filename,
    )
    return ConvaiClient(convai, HttpSettings(read_timeout_s=5))


async def _speak(client: ConvaiClient, text: str = TEXT) -> list[AudioChunk]:
    try:
        return [chunk async for chunk in ConvaiTextToSpeech(client).stream(text)]
    finally:
        await client.aclose()


async def _refusal(client: ConvaiClient, text: str = TEXT) -> ServiceError:
    with pytest.raises(ServiceError) as caught:
        await _speak(client, text)
    return caught.value


def _decode(chunks: list[AudioChunk]) -> list[PcmChunk]:
    decoder = SniffingDecoder(chunks[0].content_type)
    return [pcm for chunk in chunks for pcm in decoder.feed(chunk.data)] + decoder.close()


def _duration(pcm: list[PcmChunk]) -> float:
    return sum(piece.duration for piece in pcm)


@pytest.mark.parametrize(
    ("voice", "rate"), [(GCP_VOICE, 16_000), (ELEVENLABS_VOICE, 44_100), (DEFAULT_VOICE, 24_000)]
)
async def test_wav_is_decoded_at_the_rate_its_header_says(
    server: RunningDevServer, voice: str, rate: int
) -> None:
    chunks = await _speak(_client(server, voice=voice, filename="reply"))
    assert len(chunks) > 1  # streamed in pieces, not handed over whole
    assert {c.content_type for c in chunks} == {"audio/wav"}
    pcm = _decode(chunks)
    assert {piece.sample_rate for piece in pcm} == {rate}
    assert _duration(pcm) == pytest.approx(speech_for(TEXT).duration, abs=0.05)
    record = server.state.records("convai-tts")[-1]
    assert (record.status, record.details["sample_rate"]) == (200, rate)
    assert record.details["transcript"] == TEXT
    assert (record.details["voice"], record.details["encoding"]) == (voice, "wav")
    assert record.details["filename"] == "reply"


async def test_mp3_for_a_voice_that_speaks_it(server: RunningDevServer) -> None:
    chunks = await _speak(_client(server, voice=GCP_VOICE, encoding="mp3"))
    assert {c.content_type for c in chunks} == {"audio/mpeg"}
    pcm = _decode(chunks)
    assert {piece.sample_rate for piece in pcm} == {16_000}
    # Bare frames carry no encoder-delay tag, so up to ~70 ms of leading and one 36 ms frame
    # of trailing silence stay in (16 kHz MPEG-2 frames are 576 samples).
    assert _duration(pcm) == pytest.approx(speech_for(TEXT).duration, abs=0.15)


async def test_latency_options_pace_the_body(server: RunningDevServer) -> None:
    server.state.set_latency(tts_first_byte_ms=300, tts_speed=4.0)
    started = time.monotonic()
    stream = ConvaiTextToSpeech(client := _client(server, voice=GCP_VOICE)).stream(TEXT)
    try:
        await anext(stream)
        first = time.monotonic() - started
        async for _ in stream:
            pass
        total = time.monotonic() - started
    finally:
        await stream.aclose()
        await client.aclose()
    assert first >= 0.29
    # The rest follows at 4x real time, not all at once.
    assert total >= 0.3 + 0.8 * speech_for(TEXT).duration / 4


@pytest.mark.parametrize(
    ("key", "code", "message"),
    [
        ("", "api_key_error", "api_key error."),
        ("wrong-key", "invalid_api_key", "Invalid API key provided."),
    ],
)
@pytest.mark.invalid_requests
async def test_key_refusals_are_typed_403s(
    server: RunningDevServer, key: str, code: str, message: str
) -> None:
    error = await _refusal(_client(server, key=key))
    assert (error.service, error.stage, error.status) == ("convai", "tts", 403)
    assert (error.code, error.message) == (code, message)
    assert "wrong-key" not in str(error)


@pytest.mark.parametrize(
    ("voice", "encoding"), [("no-such-voice", "wav"), (ELEVENLABS_VOICE, "mp3")]
)
async def test_voice_and_encoding_mismatch_is_a_typed_400(
    server: RunningDevServer, voice: str, encoding: str
) -> None:
    error = await _refusal(_client(server, voice=voice, encoding=encoding))
    assert (error.service, error.status, error.code) == ("convai", 400, "incorrect_encoding")
    assert error.message == "Incorrect encoding for the mentioned voice."


async def test_missing_voice_is_a_200_json_refusal(server: RunningDevServer) -> None:
    error = await _refusal(_client(server, voice=""))
    assert (error.service, error.stage, error.status) == ("convai", "tts", 200)
    assert (error.code, error.message) == ("no_voice", "No voice found in the request")


@pytest.mark.invalid_requests
async def test_missing_transcript_is_a_200_json_refusal(server: RunningDevServer) -> None:
    error = await _refusal(_client(server), text="")
    assert (error.status, error.code) == (200, "no_transcript")
    assert error.message == "No transcript found in the request"
    # The server says the same when the field is absent altogether.
    async with httpx.AsyncClient(base_url=_root(server)) as raw:
        response = await raw.post(
            "/tts/", json={"voice": GCP_VOICE}, headers={"CONVAI-API-KEY": KEY}
        )
    assert response.status_code == 200
    assert response.json() == {"result": "No transcript found in the request"}


async def test_json_labelled_as_audio_is_caught_by_its_first_bytes(
    server: RunningDevServer,
) -> None:
    body = '\n  {"result": "No voice found in the request"}'
    server.state.faults.add(Fault("convai-tts", status=200, body=body, content_type="audio/wav"))
    error = await _refusal(_client(server))
    assert (error.status, error.code) == (200, "no_voice")


async def test_unknown_json_in_a_200_is_a_convai_error(server: RunningDevServer) -> None:
    server.state.faults.add(
        Fault("convai-tts", status=200, body="null", content_type="application/json")
    )
    error = await _refusal(_client(server))
    assert (error.status, error.code) == (200, "convai_error")


async def test_server_failure_is_a_typed_500(server: RunningDevServer) -> None:
    body = {"result": "Error encountered while processing the TTS request."}
    server.state.faults.add(Fault("convai-tts", status=500, body=body))
    error = await _refusal(_client(server))
    assert (error.service, error.status, error.code) == ("convai", 500, "tts_failed")
    assert error.message == body["result"]
    assert server.state.records("convai-tts")[-1].details["fault"] is True


@pytest.mark.parametrize(
    ("served", "label"),
    [
        ("application/octet-stream", "audio/wav"),
        ("audio/x-wav", "audio/x-wav"),
    ],
)
async def test_chunks_are_labelled_by_the_more_specific_type(
    server: RunningDevServer, served: str, label: str
) -> None:
    speech = speech_for("Hi.")
    body = encode_wav(speech.samples, speech.sample_rate)
    server.state.faults.add(Fault("convai-tts", status=200, body=body, content_type=served))
    chunks = await _speak(_client(server))
    assert {c.content_type for c in chunks} == {label}
    assert b"".join(c.data for c in chunks) == body


async def test_empty_200_body_is_an_error(server: RunningDevServer) -> None:
    server.state.faults.add(Fault("convai-tts", status=200, body=b"", content_type="audio/wav"))
    error = await _refusal(_client(server))
    assert (error.status, error.code) == (200, "no_audio")


async def test_unreachable_service_is_a_typed_error() -> None:
    settings = ConvaiSettings(base_url="http://127.0.0.1:9", api_key=Secret(KEY))
    error = await _refusal(ConvaiClient(settings, HttpSettings(connect_timeout_s=1)))
    assert (error.service, error.code) == ("convai", "connect_error")


async def test_voice_list_is_parsed(server: RunningDevServer) -> None:
    client = _client(server)
    try:
        voices = await convai_voices(client)
    finally:
        await client.aclose()
    assert len(voices) == sum(len(section.voices) for section in CATALOGUE)
    fable = next(v for v in voices if v.voice_value == DEFAULT_VOICE)
    assert fable == ConvaiVoice(
        section="Open AI voices",
        name="Fable (Young Feminine voice)",
        voice_value=DEFAULT_VOICE,
        lang_codes=("en-US", "de-DE", "fr-FR", "es-ES", "fi-FI"),
        gender="FEMALE",
    )
    assert {v.section for v in voices} == {section.name for section in CATALOGUE}
    assert all(find_voice(v.voice_value) is not None for v in voices)
    assert server.state.records("convai-voices")[-1].status == 200


@pytest.mark.parametrize(
    ("key", "status", "code"), [("", 400, "api_key_error"), ("wrong", 401, "invalid_api_key")]
)
async def test_voice_list_key_refusals(
    server: RunningDevServer, key: str, status: int, code: str
) -> None:
    client = _client(server, key=key)
    try:
        with pytest.raises(ServiceError) as caught:
            await convai_voices(client)
    finally:
        await client.aclose()
    assert (caught.value.service, caught.value.stage) == ("convai", "voices")
    assert (caught.value.status, caught.value.code) == (status, code)


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (401, "Unauthorized", "invalid_api_key"),  # undocumented bodies: known by status
        (500, "Internal Server Error", "http_500"),
        (500, {"result": "Server side failure."}, "convai_error"),
        (200, "[1, 2]", "malformed_response"),
        (200, "<html>", "malformed_response"),
    ],
)
async def test_voice_list_failures(
    server: RunningDevServer, status: int, body: object, code: str
) -> None:
    server.state.faults.add(Fault("convai-voices", status=status, body=body))
    client = _client(server)
    try:
        with pytest.raises(ServiceError) as caught:
            await convai_voices(client)
    finally:
        await client.aclose()
    assert caught.value.code == code


async def test_odd_voice_entries_are_skipped(server: RunningDevServer) -> None:
    good = {"Ok Voice": {"voice_value": "ok", "lang_codes": ["en-US"], "gender": "MALE"}}
    body = {"GCP Voices": [good, {"Broken": {"lang_codes": []}}, "junk"], "Odd": "not a list"}
    server.state.faults.add(Fault("convai-voices", status=200, body=body))
    client = _client(server)
    try:
        voices = await convai_voices(client)
    finally:
        await client.aclose()
    assert voices == [ConvaiVoice("GCP Voices", "Ok Voice", "ok", ("en-US",), "MALE")]


async def test_languages_endpoint_shape(server: RunningDevServer) -> None:
    async with httpx.AsyncClient(base_url=_root(server)) as raw:
        response = await raw.get("/tts/get_available_languages")
    assert response.status_code == 200
    languages = response.json()
    assert {"en-US": {"lang_code": "en-US", "lang_name": "English (US)"}} in languages
    assert all(len(entry) == 1 for entry in languages)


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (403, {"ERROR": "api_key error."}, ("api_key_error", "api_key error.")),
        (
            403,
            {"API_ERROR": "Invalid API key provided."},
            ("invalid_api_key", "Invalid API key provided."),
        ),
        (
            200,
            {"result": "No voice found in the request"},
            ("convai_error", "No voice found in the request"),
        ),
        # The shapes of the other services still win where they apply.
        (
            400,
            {"code": "invalid_param", "message": "Text is required", "status": 400},
            ("invalid_param", "Text is required"),
        ),
        (
            401,
            {"error": {"message": "bad key", "type": "auth", "code": "invalid_api_key"}},
            ("invalid_api_key", "bad key"),
        ),
        (422, {"detail": "voice missing"}, ("http_422", "voice missing")),
        (502, "Bad Gateway", ("http_502", "Bad Gateway")),
    ],
)
def test_error_from_body_shapes(status: int, body: object, expected: tuple[str, str]) -> None:
    raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    assert error_from_body("convai", "tts", status, raw) == expected
