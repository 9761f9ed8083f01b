"""The local Dify-compatible dev server, driven over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import io
import json
import signal
import struct
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import av
import httpx
import numpy as np
import pytest
import soxr

from assistant.devserver import (
    DEFAULT_PHRASES,
    DevServerOptions,
    Fault,
    RunningDevServer,
    reply_for,
    speech_for,
    start_devserver,
)
from assistant.devserver.synth import encode_mp3

AUTH = {"Authorization": "Bearer app-test"}
MARS = "What is the weather like on Mars?"
RATE = 16_000
REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
async def client(server: RunningDevServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base_url, headers=AUTH, timeout=30) as http:
        yield http


def control_url(server: RunningDevServer, path: str) -> str:
    return f"http://{server.host}:{server.port}/_dev/{path}"


# --- audio helpers -----------------------------------------------------------------


def wav_bytes(
    samples: np.ndarray, rate: int, channels: int = 1, extra_chunk: bool = False
) -> bytes:
    """A RIFF/WAVE 16-bit PCM file, optionally with a LIST chunk before `data`."""
    data = np.asarray(samples, dtype="<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * 2 * channels, 2 * channels, 16)
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt
    if extra_chunk:
        info = b"INFOISFT\x05\x00\x00\x00test\x00\x00"  # odd-sized subchunk, padded
        chunks += b"LIST" + struct.pack("<I", len(info)) + info
    chunks += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def espeak_upload(
    text: str,
    *,
    pad_s: float = 0.3,
    noise: float = 0.0,
    gain: float = 1.0,
    keep: float = 1.0,
    round_trip: bool = False,
) -> np.ndarray:
    """espeak speech as a 16 kHz mono float recording, with the given imperfections."""
    speech = speech_for(text)
    audio = speech.samples.astype(np.float32) / 32768
    if round_trip:
        # Like a PulseAudio null-sink round trip: 48 kHz in the middle, clocks a
        # hair apart.
        audio = soxr.resample(audio, speech.sample_rate, 48_000)
        audio = soxr.resample(audio, 48_000 * 1.0003, RATE)
    else:
        audio = soxr.resample(audio, speech.sample_rate, RATE)
    if keep < 1.0:
        voiced = np.flatnonzero(np.abs(audio) > 0.01)
        audio = audio[: int(voiced[0] + (voiced[-1] - voiced[0]) * keep)]
    pad = np.zeros(int(pad_s * RATE), dtype=np.float32)
    audio = np.concatenate([pad, audio * gain, pad])
    rng = np.random.default_rng(7)
    return (audio + rng.normal(0, noise, len(audio))).astype(np.float32)


def to_int16(audio: np.ndarray) -> np.ndarray:
    return np.clip(np.round(audio * 32767), -32768, 32767).astype(np.int16)


def decode_mp3(data: bytes) -> tuple[float, int]:
    """(duration in seconds, sample rate) of MP3 bytes, decoded with PyAV."""
    samples = 0
    rate = 0
    with av.open(io.BytesIO(data)) as container:
        for frame in container.decode(audio=0):
            samples += frame.samples
            rate = frame.sample_rate
    return samples / rate, rate


async def transcribe(
    client: httpx.AsyncClient, data: bytes, content_type: str = "audio/wav"
) -> httpx.Response:
    files = {"file": ("speech.wav", data, content_type)}
    return await client.post("/audio-to-text", files=files, data={"user": "tester"})


def sse_blocks(raw: bytes) -> list[str]:
    """The stream split at blank lines; the framing must leave nothing after the last."""
    text = raw.decode()
    assert text.endswith("\n\n")
    return text[:-2].split("\n\n")


# --- auth and routing --------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "Authorization header must be provided and start with 'Bearer'"),
        ("Bearer", "Authorization header must be provided and start with 'Bearer'"),
        ("Basic dXNlcjpwYXNz", "Authorization scheme must be 'Bearer'"),
        ("Bearer wrong-key", "Access token is invalid"),
    ],
)
@pytest.mark.invalid_requests
async def test_auth_errors(header: str | None, message: str) -> None:
    running = await start_devserver(options=DevServerOptions(api_key="app-secret"))
    try:
        headers = {"Authorization": header} if header is not None else {}
        async with httpx.AsyncClient(base_url=running.base_url) as http:
            refused = await http.get("/parameters", headers=headers)
            accepted = await http.get("/parameters", headers={"Authorization": "Bearer app-secret"})
    finally:
        await running.stop()
    assert refused.status_code == 401
    assert refused.headers["content-type"] == "application/json"
    assert refused.json() == {"code": "unauthorized", "message": message, "status": 401}
    assert accepted.status_code == 200
    assert [r.status for r in running.state.log] == [401, 200]


async def test_any_bearer_token_without_api_key(server: RunningDevServer) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        ok = await http.get("/parameters", headers={"Authorization": "bearer whatever"})
    assert ok.status_code == 200


async def test_parameters_and_unknown_path(client: httpx.AsyncClient) -> None:
    params = (await client.get("/parameters")).json()
    assert params["text_to_speech"] == {
        "enabled": True,
        "voice": "en",
        "language": "en-US",
        "autoPlay": "disabled",
    }
    assert params["speech_to_text"] == {"enabled": True}
    assert params["user_input_form"] == []
    assert params["system_parameters"]["audio_file_size_limit"] == 50
    assert "image" in params["file_upload"]
    missing = await client.get("/nowhere")
    assert missing.status_code == 404
    assert missing.json()["code"] == "not_found"


# --- audio-to-text refusals --------------------------------------------------------


@pytest.mark.parametrize("content_type", ["audio/x-wav", "application/octet-stream", "audio/mpeg"])
async def test_stt_refuses_unsupported_types(client: httpx.AsyncClient, content_type: str) -> None:
    wav = wav_bytes(to_int16(espeak_upload(MARS)), RATE)
    response = await transcribe(client, wav, content_type)
    assert response.status_code == 415
    assert response.json() == {
        "code": "unsupported_audio_type",
        "message": "Audio type not allowed.",
        "status": 415,
    }


async def test_stt_refuses_uploads_over_30_mb(client: httpx.AsyncClient) -> None:
    too_big = wav_bytes(np.zeros((30 * 1024 * 1024) // 2, dtype=np.int16), RATE)
    response = await transcribe(client, too_big)
    assert response.status_code == 413
    assert response.json()["code"] == "audio_too_large"
    assert "30 mb" in response.json()["message"]
    # The connection is still usable for the next request.
    assert (await client.get("/parameters")).status_code == 200


@pytest.mark.invalid_requests
async def test_stt_refuses_missing_empty_and_fake_audio(client: httpx.AsyncClient) -> None:
    missing = await client.post("/audio-to-text", data={"user": "tester"}, files={"other": b"x"})
    assert missing.status_code == 400
    assert missing.json()["code"] == "bad_request"

    empty = await transcribe(client, b"")
    assert empty.status_code == 400
    assert empty.json() == {
        "code": "no_audio_uploaded",
        "message": "Please upload your audio.",
        "status": 400,
    }

    # Raw PCM without a header, labelled as WAV: a classic client bug.
    raw_pcm = to_int16(espeak_upload(MARS)).tobytes()
    headerless = await transcribe(client, raw_pcm)
    assert headerless.status_code == 400
    assert headerless.json()["code"] == "completion_request_error"
    assert "RIFF" in headerless.json()["message"]

    eight_bit = bytearray(wav_bytes(np.zeros(1600, dtype=np.int16), RATE))
    struct.pack_into("<H", eight_bit, 34, 8)  # bits per sample in the fmt chunk
    not_16_bit = await transcribe(client, bytes(eight_bit))
    assert not_16_bit.status_code == 400
    assert "16-bit" in not_16_bit.json()["message"]

    garbage_mp3 = await transcribe(client, b"not an mp3 at all" * 50, "audio/mp3")
    assert garbage_mp3.status_code == 400
    assert garbage_mp3.json()["code"] == "completion_request_error"


# --- recognition -------------------------------------------------------------------


async def test_recognises_default_phrase_with_noise_and_silence(
    client: httpx.AsyncClient, server: RunningDevServer
) -> None:
    recording = espeak_upload(MARS, pad_s=0.3, noise=0.003)
    response = await transcribe(client, wav_bytes(to_int16(recording), RATE))
    assert response.status_code == 200
    assert response.json() == {"text": MARS}
    record = server.state.log[-1]
    assert record.endpoint == "audio-to-text"
    assert record.details["transcript"] == MARS
    assert record.details["content_type"] == "audio/wav"
    assert record.details["upload_bytes"] == 44 + 2 * len(recording)
    assert record.details["audio_duration_s"] == pytest.approx(len(recording) / RATE, abs=0.01)


async def test_recognises_registered_phrase_after_round_trip(
    client: httpx.AsyncClient, server: RunningDevServer
) -> None:
    phrase = "Please water the tomatoes in the greenhouse."
    registered = await client.post(control_url(server, "phrases"), json={"texts": [phrase]})
    assert registered.json()["added"] == [phrase]
    recording = espeak_upload(phrase, gain=0.7, noise=0.002, round_trip=True)
    # Stereo 48 kHz with a LIST chunk before the data: still a valid 16-bit WAV.
    stereo = np.repeat(to_int16(soxr.resample(recording, RATE, 48_000))[:, None], 2, axis=1)
    wav = wav_bytes(stereo.reshape(-1), 48_000, channels=2, extra_chunk=True)
    response = await transcribe(client, wav, "audio/WAV")
    assert response.json() == {"text": phrase}


async def test_cut_off_speech_gives_a_shorter_transcript(client: httpx.AsyncClient) -> None:
    half = espeak_upload(MARS, keep=0.5)
    text = (await transcribe(client, wav_bytes(to_int16(half), RATE))).json()["text"]
    assert text != MARS
    assert MARS.startswith(text)
    assert 2 <= len(text.split()) <= 5


async def test_unknown_speech_silence_and_mp3(client: httpx.AsyncClient) -> None:
    other = espeak_upload("Bananas are berries but strawberries are not.")
    unknown = (await transcribe(client, wav_bytes(to_int16(other), RATE))).json()["text"]
    assert unknown.startswith("I heard ") and unknown.endswith(" seconds of speech.")

    silence = wav_bytes(np.zeros(RATE, dtype=np.int16), RATE)
    assert (await transcribe(client, silence)).json() == {"text": ""}

    # An MP3 upload goes through PyAV instead of the WAV parser.
    mp3 = encode_mp3(speech_for(DEFAULT_PHRASES[1]))
    assert (await transcribe(client, mp3, "audio/mp3")).json() == {"text": DEFAULT_PHRASES[1]}


# --- completion-messages -----------------------------------------------------------


async def test_streaming_framing_pings_and_usage(server: RunningDevServer) -> None:
    server.state.set_latency(ping_interval_s=0.05, first_token_ms=300)
    query = "How far away is the Moon?"
    async with httpx.AsyncClient(base_url=server.base_url, headers=AUTH) as http:
        body = {"inputs": {}, "query": query, "user": "tester", "response_mode": "streaming"}
        async with http.stream("POST", "/completion-messages", json=body) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            raw = b"".join([chunk async for chunk in response.aiter_raw()])
    blocks = sse_blocks(raw)
    assert blocks[0] == "event: ping"  # the bare keep-alive: no data line
    events = [json.loads(b.removeprefix("data: ")) for b in blocks if b != "event: ping"]
    assert all(b == "event: ping" or (b.startswith("data: ") and "\n" not in b) for b in blocks)
    messages, end = events[:-1], events[-1]
    assert {e["event"] for e in messages} == {"message"}
    assert "".join(e["answer"] for e in messages) == reply_for(query)
    assert len(messages) > 20 and messages[1]["answer"].startswith(" ")
    first = messages[0]
    for event in events:
        assert event["task_id"] == first["task_id"]
        assert event["message_id"] == first["message_id"] == event["id"]
        assert isinstance(event["created_at"], int)
    assert end["event"] == "message_end"
    assert end["files"] is None
    assert end["metadata"]["retriever_resources"] == []
    usage = end["metadata"]["usage"]
    assert set(usage) == {
        "prompt_tokens",
        "prompt_unit_price",
        "prompt_price_unit",
        "prompt_price",
        "completion_tokens",
        "completion_unit_price",
        "completion_price_unit",
        "completion_price",
        "total_tokens",
        "total_price",
        "currency",
        "latency",
    }
    assert usage["completion_tokens"] == len(messages)
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert isinstance(usage["total_price"], str) and float(usage["total_price"]) > 0
    assert usage["latency"] >= 0.3


@pytest.mark.parametrize("mode", ["blocking", None])
async def test_blocking_completion(client: httpx.AsyncClient, mode: str | None) -> None:
    body: dict[str, object] = {"inputs": {}, "query": "Tell me a joke.", "user": "tester"}
    if mode is not None:
        body["response_mode"] = mode
    response = await client.post("/completion-messages", json=body)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    data = response.json()
    assert data["event"] == "message"
    assert data["mode"] == "completion"
    assert data["answer"] == reply_for("Tell me a joke.")
    assert data["answer"].count(". ") >= 3
    assert data["id"] == data["message_id"]
    assert data["metadata"]["usage"]["currency"] == "USD"
    assert isinstance(data["created_at"], int) and data["task_id"]


@pytest.mark.invalid_requests
async def test_completion_refusals(client: httpx.AsyncClient) -> None:
    no_user = await client.post("/completion-messages", json={"inputs": {}, "query": "hi"})
    assert no_user.status_code == 400
    assert no_user.json() == {
        "code": "invalid_param",
        "message": "Arg user must be provided.",
        "status": 400,
    }
    bad_json = await client.post(
        "/completion-messages", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert bad_json.status_code == 400
    assert bad_json.json()["code"] == "bad_request"
    no_inputs = await client.post("/completion-messages", json={"query": "hi", "user": "u"})
    assert no_inputs.status_code == 400
    assert no_inputs.json()["code"] == "invalid_param"
    assert "inputs" in no_inputs.json()["message"]


@pytest.mark.invalid_requests
async def test_stop_ends_the_stream_for_the_same_user_only(server: RunningDevServer) -> None:
    server.state.set_latency(tokens_per_second=40)
    query = "What time is it?"
    async with httpx.AsyncClient(base_url=server.base_url, headers=AUTH) as http:
        body = {"inputs": {}, "query": query, "user": "alice", "response_mode": "streaming"}
        events = []
        async with http.stream("POST", "/completion-messages", json=body) as response:
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                events.append(json.loads(line[6:]))
                if len(events) == 2:
                    stop_url = f"/completion-messages/{events[0]['task_id']}/stop"
                    other = await http.post(stop_url, json={"user": "mallory"})
                    assert other.json() == {"result": "success"}
                if len(events) == 5:
                    stopped = await http.post(stop_url, json={"user": "alice"})
                    assert stopped.status_code == 200
                    assert stopped.json() == {"result": "success"}
        missing_user = await http.post(stop_url, json={})
    assert missing_user.status_code == 400
    assert missing_user.json()["message"] == "Arg user must be provided."
    assert events[-1]["event"] == "message_end"
    answer = "".join(e.get("answer", "") for e in events)
    assert reply_for(query).startswith(answer) and len(answer) < len(reply_for(query)) / 2
    record = server.state.records("completion-messages")[-1]
    assert record.details["stopped"] is True
    assert record.details["answer"] == answer


# --- text-to-audio -----------------------------------------------------------------


async def test_text_to_audio_is_chunked_mpeg(client: httpx.AsyncClient) -> None:
    text = "The first sentence is already playing."
    async with client.stream("POST", "/text-to-audio", json={"text": text, "user": "u"}) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"] == "audio/mpeg"
        assert resp.headers.get("transfer-encoding") == "chunked"
        assert "content-length" not in resp.headers
        data = b"".join([chunk async for chunk in resp.aiter_bytes()])
    duration, rate = decode_mp3(data)
    assert rate in (22_050, 24_000)
    assert duration == pytest.approx(speech_for(text).duration, abs=0.15)


async def test_text_to_audio_by_message_id(client: httpx.AsyncClient) -> None:
    body = {"inputs": {}, "query": "Hello", "user": "u", "response_mode": "blocking"}
    completion = (await client.post("/completion-messages", json=body)).json()
    spoken = await client.post(
        "/text-to-audio",
        json={"message_id": completion["message_id"], "text": "ignored", "user": "u"},
    )
    assert spoken.status_code == 200
    duration, _ = decode_mp3(spoken.content)
    assert duration == pytest.approx(speech_for(completion["answer"]).duration, abs=0.15)

    for unknown in (
        {"message_id": "5ad4cb98-f0c7-4085-b384-88c403be6290", "user": "u"},
        {"message_id": completion["message_id"], "user": "someone-else"},
    ):
        nothing = await client.post("/text-to-audio", json=unknown)
        assert nothing.status_code == 200
        assert nothing.headers["content-type"] == "application/json"
        assert nothing.json() is None

    no_text = await client.post("/text-to-audio", json={"user": "u"})
    assert no_text.status_code == 400
    assert no_text.json()["code"] == "invalid_param"

    # A provider voice name espeak-ng does not know falls back to the default voice.
    alloy = await client.post("/text-to-audio", json={"text": "Hi.", "user": "u", "voice": "alloy"})
    assert alloy.status_code == 200 and decode_mp3(alloy.content)[0] > 0.2


# --- latency and faults ------------------------------------------------------------


async def test_latency_settings_take_effect(
    client: httpx.AsyncClient, server: RunningDevServer
) -> None:
    wav = wav_bytes(to_int16(espeak_upload(MARS)), RATE)
    await transcribe(client, wav)  # warm: phrases fingerprinted
    latency = {
        "stt_latency_ms": 400,
        "first_token_ms": 300,
        "tokens_per_second": 100,
        "tts_first_byte_ms": 300,
        "tts_speed": 4,
    }
    changed = await client.put(control_url(server, "latency"), json=latency)
    assert changed.json()["tts_speed"] == 4.0

    started = time.monotonic()
    await transcribe(client, wav)
    assert time.monotonic() - started >= 0.4

    started = time.monotonic()
    body = {"inputs": {}, "query": "q", "user": "u", "response_mode": "streaming"}
    async with client.stream("POST", "/completion-messages", json=body) as response:
        lines = response.aiter_lines()
        async for line in lines:
            if line.startswith("data: "):
                break
        first_token = time.monotonic() - started
        async for _ in lines:
            pass
    total = time.monotonic() - started
    tokens = len(reply_for("q").split())
    assert first_token >= 0.3
    assert total >= 0.3 + (tokens - 1) / 100

    text = "Speech that is paced at four times real time."
    started = time.monotonic()
    async with client.stream("POST", "/text-to-audio", json={"text": text, "user": "u"}) as r:
        chunks = r.aiter_raw()
        await chunks.__anext__()
        first_byte = time.monotonic() - started
        async for _ in chunks:
            pass
    total = time.monotonic() - started
    assert first_byte >= 0.3
    assert total >= 0.3 + 0.8 * speech_for(text).duration / 4
    assert total < 0.3 + speech_for(text).duration  # clearly faster than real time

    bad = await client.put(control_url(server, "latency"), json={"voice": "de"})
    assert bad.status_code == 400


async def test_fault_injection(client: httpx.AsyncClient, server: RunningDevServer) -> None:
    fault = {
        "endpoint": "completion-messages",
        "status": 429,
        "body": {"code": "too_many_requests", "message": "Too many requests.", "status": 429},
        "count": 2,
        "headers": {"Retry-After": "3"},
    }
    assert (await client.post(control_url(server, "faults"), json=fault)).status_code == 200
    body = {"inputs": {}, "query": "q", "user": "u"}
    for _ in range(2):
        refused = await client.post("/completion-messages", json=body)
        assert refused.status_code == 429
        assert refused.json()["code"] == "too_many_requests"
        assert refused.headers["retry-after"] == "3"
    assert (await client.post("/completion-messages", json=body)).status_code == 200

    server.state.faults.add(
        Fault(
            "text-to-audio", status=502, body="<html>Bad Gateway</html>", content_type="text/html"
        )
    )
    gateway = await client.post("/text-to-audio", json={"text": "Hi.", "user": "u"})
    assert gateway.status_code == 502
    assert gateway.headers["content-type"].startswith("text/html")
    assert gateway.text == "<html>Bad Gateway</html>"

    default = {"endpoint": "audio-to-text"}
    assert (await client.post(control_url(server, "faults"), json=default)).status_code == 200
    failed = await transcribe(client, b"whatever")
    assert failed.status_code == 500
    assert failed.json()["code"] == "internal_server_error"

    log = (await client.get(control_url(server, "log"))).json()
    assert [entry["status"] for entry in log] == [429, 429, 200, 502, 500]
    assert [entry.get("fault", False) for entry in log] == [True, True, False, True, True]

    bad = await client.post(control_url(server, "faults"), json={"endpoint": "nowhere"})
    assert bad.status_code == 400
    bad_headers = {"endpoint": "parameters", "headers": {"Retry-After": 1}}
    assert (await client.post(control_url(server, "faults"), json=bad_headers)).status_code == 400
    await client.post(control_url(server, "faults"), json=fault)
    assert (await client.post(control_url(server, "reset"))).json() == {"result": "success"}
    assert server.state.log == []
    assert (await client.post("/completion-messages", json=body)).status_code == 200


@pytest.mark.invalid_requests
async def test_fault_without_body_answers_in_the_endpoint_service_shape(
    client: httpx.AsyncClient, server: RunningDevServer
) -> None:
    root = f"http://{server.host}:{server.port}"
    for endpoint in ("chat-completions", "convai-tts", "convai-voices"):
        server.state.faults.add(Fault(endpoint))
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}
    openai = await client.post("/chat/completions", json=chat)
    assert (openai.status_code, openai.json()) == (
        500,
        {
            "error": {
                "message": "The server had an error while processing your request. "
                "Sorry about that!",
                "type": "server_error",
                "param": None,
                "code": None,
            }
        },
    )
    convai_key = {"CONVAI-API-KEY": "any"}
    tts = await client.post(
        f"{root}/tts/", json={"transcript": "Hi.", "voice": "FEMALE"}, headers=convai_key
    )
    assert (tts.status_code, tts.json()) == (
        500,
        {"result": "Error encountered while processing the TTS request."},
    )
    voices = await client.get(f"{root}/tts/get_available_voices", headers=convai_key)
    assert (voices.status_code, voices.json()) == (
        500,
        {"result": "Server side failure. Please reach out to support."},
    )


# --- the CLI entry point -----------------------------------------------------------


async def test_serve_forever_prints_base_url_and_stops_on_sigint() -> None:
    code = "from assistant.devserver import serve_forever; serve_forever('127.0.0.1', 0)"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE, cwd=REPO_ROOT
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        base_url = line.split()[-1]
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        async with httpx.AsyncClient(base_url=base_url, headers=AUTH) as http:
            assert (await http.get("/parameters")).status_code == 200
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
