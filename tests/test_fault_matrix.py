"""The fault matrix: every fault the dev server can inject, on every service it applies to,
through the whole voice loop in file mode over real HTTP.

Each case asks two questions. The first turn's service is faulted until that turn ends
(then the fault is lifted, or the closed port starts answering: the service is back).
The faulted turn must end within its bound with an `error` event naming the service, the
stage and the code, and with its spoken message heard on the speaker; the second turn must
then succeed and be heard. Cases whose `code` is "" expect the answer to survive the fault
instead (a fallback voice, or a failure that comes too late to matter).

Every case runs on its own dev server, and the cases run concurrently (CASES_AT_ONCE at a
time, started by the `matrix` fixture for the whole module): each is mostly waiting for
its real-time microphone and speaker files, so running them one by one would take ten
times longer. Each parametrised test then only waits for its own case and checks it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
from audio_match import find
from audio_samples import concat, silence, speech_16k

from assistant.aio import cancel_and_wait
from assistant.audio.wav import encode_wav
from assistant.devserver import (
    DevServerOptions,
    Fault,
    RunningDevServer,
    reply_for,
    speech_for,
    start_devserver,
)
from assistant.devserver.replies import tokens
from assistant.events import Event, EventBus
from assistant.loop import VoiceLoop
from assistant.providers.base import SpeechSource, SpeechToText, Stages, TextToSpeech
from assistant.providers.chain import SpeechToTextChain, TextToSpeechChain
from assistant.providers.convai import ConvaiClient, ConvaiTextToSpeech
from assistant.providers.dify import (
    DifyClient,
    DifySpeechToText,
    DifyTextToSpeech,
    make_dify_completion,
)
from assistant.providers.local import LocalTextToSpeech
from assistant.providers.openai import OpenAIClient, OpenAISpeechToText, OpenAITextToSpeech
from assistant.settings import (
    ConvaiSettings,
    DifySettings,
    HttpSettings,
    OpenAISettings,
    Secret,
    Settings,
)
from hardware.wav_devices import WavFileSink, WavFileSource, read_wav

pytestmark = pytest.mark.asyncio(loop_scope="module")

QUESTION = "What time is it?"
SECOND = "Tell me a joke."
REPLY_SENTENCES = 1
"""Answers are one sentence ("You asked: ..."), about 2 s of speech."""
STAGE_TIMEOUT_S = 2.0
"""Every stage bound (and the read timeout), so a stalled service costs 2 s, not 30."""
BOUND_S = STAGE_TIMEOUT_S + 1.5
"""From the end of the first question to the turn's error event: the stage bound, plus the
stages before the faulted one and a loaded machine's slack."""
GAP_MS = 9000
"""Silence after the first question: room for the first turn to fail (up to the stage bound
and its slack, BOUND_S) and to say why (up to 4 s), or to be answered, before the second
question starts, with 1.5 s to spare for a loaded machine (7 s left none for a stalled
voice, the latest failure: three of its cases lost their second question in two
fresh-clone runs). What the microphone hears while the assistant speaks is not listened
to."""
CASES_AT_ONCE = 16
MATCH_SCORE = 0.85
STALL_S = STAGE_TIMEOUT_S + 1
"""A stalled request hangs up after this: the client has given up by then, and the request
is in the dev server's log before the case ends."""
FAULT_COUNT = 20
"""Requests a fault answers: more than any turn makes, retries included. It is lifted as
soon as the first turn ends, so the second turn meets a healthy service."""

HTML_500 = (
    "<!DOCTYPE html><html><head><title>500 Internal Server Error</title></head>"
    "<body><h1>Internal Server Error</h1><p>The server encountered an internal error.</p>"
    "</body></html>"
)
HTML_502 = (
    "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway"
    "</h1></center><hr><center>nginx</center></body></html>"
)
HTML_LOGIN = "<html><body><form action='/login'>Please sign in to use this network.</form>"
RATE_LIMITED = {
    "dify": {"code": "too_many_requests", "message": "Too many requests.", "status": 429},
    "openai": {
        "error": {
            "message": "Rate limit reached for requests",
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    },
    # Convai documents no 429: this is what a gateway in front of it would send.
    "convai": "Too Many Requests",
}
RATE_LIMITED_CODE = {
    "dify": "too_many_requests",
    "openai": "rate_limit_exceeded",
    "convai": "http_429",
}
ENDPOINTS = {
    ("dify", "stt"): "audio-to-text",
    ("openai", "stt"): "audio-transcriptions",
    ("dify", "completion"): "completion-messages",
    ("dify", "tts"): "text-to-audio",
    ("openai", "tts"): "audio-speech",
    ("convai", "tts"): "convai-tts",
}


@dataclass(frozen=True)
class Case:
    service: str
    """dify, openai or convai: the service that fails, and what the error must name."""
    stage: str
    """stt, completion or tts."""
    name: str
    """The fault, as the test id shows it."""
    fault: Fault | None
    """What the dev server does; None = the service's port refuses connections."""
    code: str
    """The error code the turn must end with; "" = no error, the answer is still heard."""
    tts: str = ""
    """ProviderSettings-style TTS choice: "" = this case's service for a TTS case, else
    dify; also `dify-stream` and `dify-message-id`."""
    local_voice: bool = False
    """End the TTS chain with the device's own voice, as the factory always does."""
    openai_format: str = "pcm"
    server_options: dict[str, Any] = field(default_factory=dict)
    """Live options of the dev server (`stream_tts`)."""

    @property
    def id(self) -> str:
        return f"{self.service}-{self.stage}-{self.name}"


@dataclass
class Outcome:
    events: list[Event]
    heard: np.ndarray
    rate: int
    faulted_requests: int
    """Requests whose answer the fault changed (retries included)."""


def _armed(endpoint: str, **fields: Any) -> Fault:
    return Fault(endpoint, **{"count": FAULT_COUNT, **fields})


Row = tuple[str, dict[str, Any] | None, str]
"""(name, the fault's fields for the service's endpoint or None for a closed port, code)."""


def _cases(service: str, stage: str, rows: list[Row], **options: Any) -> list[Case]:
    endpoint = ENDPOINTS[service, stage]
    return [
        Case(service, stage, name, None if f is None else _armed(endpoint, **f), code, **options)
        for name, f, code in rows
    ]


def _transport_rows(service: str, stage: str) -> list[Row]:
    """The faults every endpoint can meet: HTTP errors, a closed port, a stall, a cut."""
    # A cut STT answer is half its JSON; a stream is cut after two events or one audio chunk.
    cut_after = {"stt": 0, "completion": 2, "tts": 1}[stage]
    html = {"content_type": "text/html"}
    limited = {"status": 429, "body": RATE_LIMITED[service], "headers": {"Retry-After": "1"}}
    return [
        ("500-html", {"status": 500, "body": HTML_500, **html}, "http_500"),
        ("502", {"status": 502, "body": HTML_502, **html}, "http_502"),
        ("503-empty", {"status": 503, "body": b""}, "http_503"),
        ("429-retry-after", limited, RATE_LIMITED_CODE[service]),
        ("refused", None, "connect_error"),
        ("stall", {"mode": "stall", "stall_s": STALL_S}, "timeout"),
        ("cut", {"mode": "cut", "after": cut_after}, "connection_lost"),
    ]


def _stt_cases(service: str) -> list[Case]:
    return _cases(
        service,
        "stt",
        [
            *_transport_rows(service, "stt"),
            ("invalid-json", {"status": 200, "body": '{"text": "What time'}, "malformed_response"),
            # A captive portal's sign-in page where the transcript was due.
            ("html-200", {"status": 200, "body": HTML_LOGIN, "content_type": "text/html"},
             "malformed_response"),
        ],
    )  # fmt: skip


def _completion_cases() -> list[Case]:
    quota = {"code": "provider_quota_exceeded", "message": "Quota exhausted.", "status": 400}
    not_json = "data: {'event': 'message', 'answer': 'Hi'}\n\n"
    blocking = {"event": "message", "answer": "Hi", "mode": "completion"}
    # The events of the first answer up to and including message_end.
    text_events = len(tokens(reply_for(QUESTION, REPLY_SENTENCES))) + 1
    return [
        *_cases("dify", "completion", [
            *_transport_rows("dify", "completion"),
            ("stall-mid-stream", {"mode": "stall", "after": 2, "stall_s": STALL_S}, "timeout"),
            ("sse-error", {"mode": "sse_error", "body": quota}, "provider_quota_exceeded"),
            ("sse-error-mid-stream", {"mode": "sse_error", "after": 3, "body": quota},
             "provider_quota_exceeded"),
            ("malformed-sse", {"mode": "malformed_sse"}, "malformed_response"),
            ("invalid-json", {"status": 200, "body": not_json,
                              "content_type": "text/event-stream"}, "malformed_response"),
            # A blocking answer where a stream was asked for, and a proxy's page.
            ("json-200", {"status": 200, "body": blocking}, "unexpected_content_type"),
            ("html-200", {"status": 200, "body": HTML_LOGIN, "content_type": "text/html"},
             "unexpected_content_type"),
        ]),
        # An error after message_end where the stream's own speech was due: the text is
        # complete, so the answer stands and the sentence voice says it.
        *_cases("dify", "completion", [
            ("sse-error-after-end-stream-tts",
             {"mode": "sse_error", "after": text_events, "body": quota}, ""),
        ], tts="dify-stream", server_options={"stream_tts": True}),
    ]  # fmt: skip


def _tts_cases(service: str) -> list[Case]:
    return [
        *_cases(service, "tts", [
            *_transport_rows(service, "tts"),
            ("empty-audio", {"mode": "empty_audio"}, "no_audio"),
            ("html-200", {"status": 200, "body": HTML_LOGIN, "content_type": "text/html"},
             "unexpected_content_type"),
        ]),
        # Garbage in a headerless pcm body is still "audio": only a format with structure
        # can be found corrupt, so OpenAI is asked for mp3 here.
        *_cases(service, "tts", [("corrupt-audio", {"mode": "corrupt_audio"}, "bad_audio")],
                openai_format="mp3"),
    ]  # fmt: skip


def _service_specific_cases() -> list[Case]:
    null = {"status": 200, "body": "null", "content_type": "application/json"}
    return [
        # Dify's answer to a message_id it does not know: 200 `null`.
        *_cases("dify", "tts", [("null-200", null, "no_audio")]),
        # Spoken by message_id, a `null` falls back to speaking the text (by text: the
        # fault answers the one request by id only).
        *_cases("dify", "tts", [("null-200-message-id", {**null, "count": 1}, "")],
                tts="dify-message-id"),
        # Convai refuses inside a 200.
        *_cases("convai", "tts", [
            ("json-error-200", {"status": 200, "body": {"result": "No voice found in the request"}},
             "no_voice"),
        ]),
        # With the device's own voice at the end of the chain, as configured for real,
        # a failing voice service leaves the answer spoken anyway.
        *_cases("dify", "tts", [("500-local-voice", {"status": 500}, "")], local_voice=True),
        # A body no decoder can play, under a proper audio type, is found before any of
        # it plays: the local voice says the sentence instead.
        *_cases("dify", "tts", [("corrupt-audio-local-voice", {"mode": "corrupt_audio"}, "")],
                local_voice=True),
    ]  # fmt: skip


# Absent pairs, and why:
# - SSE faults (malformed_sse, sse_error, a stall or cut mid-stream) only on the completion:
#   speech-to-text and text-to-speech answers are not event streams here.
# - corrupt_audio and empty_audio only on text-to-speech: nothing else answers audio.
# - invalid JSON not on text-to-speech: a JSON answer there is a refusal, not the answer
#   (html-200, null-200 and json-error-200 cover a 200 that is not audio).
# - 200 `null` only on Dify /text-to-audio, the JSON error in a 200 only on Convai: the
#   other services never answer that way.
# - An sse_error after message_end only with the stream's own speech (stream_tts): without
#   it nothing follows message_end, so nothing can fail there.
# - OpenAI completion: the assistant's answers come from Dify only.
CASES: list[Case] = [
    *_stt_cases("dify"),
    *_stt_cases("openai"),
    *_completion_cases(),
    *_tts_cases("dify"),
    *_tts_cases("openai"),
    *_tts_cases("convai"),
    *_service_specific_cases(),
]


# --- running one case -------------------------------------------------------------------


class ClosedPort:
    """A bound port that refuses connections until `open` serves the dev server on it."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # Bound but not listening: the kernel refuses connections (RST), nothing queues.
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def open(self, server: RunningDevServer) -> None:
        await server.serve_also(self.sock)


def _settings(server: RunningDevServer, case: Case, closed: ClosedPort | None) -> Settings:
    root = server.base_url.removesuffix("/v1")
    timeouts = HttpSettings(
        connect_timeout_s=1.0,
        read_timeout_s=STAGE_TIMEOUT_S,
        stt_timeout_s=STAGE_TIMEOUT_S,
        completion_timeout_s=STAGE_TIMEOUT_S,
        tts_timeout_s=STAGE_TIMEOUT_S,
    )
    return Settings(
        http=timeouts,
        dify=DifySettings(base_url=server.base_url, api_key=Secret("app-x")),
        openai=OpenAISettings(
            base_url=server.base_url,
            api_key=Secret("sk-x"),
            response_format=case.openai_format,
        ),
        convai=ConvaiSettings(base_url=root, api_key=Secret("convai-x")),
    )


class _Clients:
    """One client per service and stage, so that one stage alone can be pointed at the
    closed port; all closed at the end."""

    def __init__(self, settings: Settings, case: Case, closed: ClosedPort | None) -> None:
        self._settings = settings
        self._case = case
        self._closed = closed
        self._open: list[Any] = []

    def _base(self, service: str, stage: str, base_url: str) -> str:
        if self._closed is None or (service, stage) != (self._case.service, self._case.stage):
            return base_url
        return self._closed.url("" if service == "convai" else "/v1")

    def dify(self, stage: str) -> DifyClient:
        s = self._settings
        dify = dataclasses.replace(s.dify, base_url=self._base("dify", stage, s.dify.base_url))
        return self._keep(DifyClient(dify, s.http, s.assistant.user))

    def openai(self, stage: str) -> OpenAIClient:
        s = self._settings
        base = self._base("openai", stage, s.openai.base_url)
        return self._keep(OpenAIClient(dataclasses.replace(s.openai, base_url=base), s.http))

    def convai(self) -> ConvaiClient:
        s = self._settings
        base = self._base("convai", "tts", s.convai.base_url)
        return self._keep(ConvaiClient(dataclasses.replace(s.convai, base_url=base), s.http))

    def _keep(self, client: Any) -> Any:
        self._open.append(client)
        return client

    async def aclose(self) -> None:
        for client in self._open:
            await client.aclose()


def _stages(case: Case, clients: _Clients) -> Stages:
    """The stages `providers.factory.build_stages` would make, without the device's own
    voice at the end of the TTS chain unless the case asks for it: a failing voice then
    fails the turn, which is what is being tested."""
    stt_service = case.service if case.stage == "stt" else "dify"
    stt: SpeechToText = (
        OpenAISpeechToText(clients.openai("stt"))
        if stt_service == "openai"
        else DifySpeechToText(clients.dify("stt"))
    )
    tts_name = case.tts or (case.service if case.stage == "tts" else "dify")
    voices: list[TextToSpeech] = []
    source, message_tts = SpeechSource.SENTENCES, None
    if tts_name == "openai":
        voices.append(OpenAITextToSpeech(clients.openai("tts")))
    elif tts_name == "convai":
        voices.append(ConvaiTextToSpeech(clients.convai()))
    elif tts_name == "dify-stream":
        source = SpeechSource.ANSWER_STREAM
    elif tts_name == "dify-message-id":
        source, message_tts = SpeechSource.MESSAGE_ID, DifyTextToSpeech(clients.dify("tts"))
        voices.append(DifyTextToSpeech(clients.dify("tts")))
    else:
        voices.append(DifyTextToSpeech(clients.dify("tts")))
    if case.local_voice or not voices:
        voices.append(LocalTextToSpeech("en"))
    return Stages(
        stt=SpeechToTextChain([stt]),
        completion=make_dify_completion(clients.dify("completion")),
        tts=TextToSpeechChain(voices),
        speech_source=source,
        message_tts=message_tts,
    )


async def _reopen(server: RunningDevServer, closed: ClosedPort | None) -> None:
    if closed is not None:
        await closed.open(server)


async def run_case(case: Case, workdir: Path) -> Outcome:
    server = await start_devserver(options=DevServerOptions(reply_sentences=REPLY_SENTENCES))
    closed = ClosedPort() if case.fault is None else None
    clients: _Clients | None = None
    reopening: list[asyncio.Task[None]] = []
    try:
        if case.server_options:
            server.state.set_latency(**case.server_options)
        settings = _settings(server, case, closed)
        clients = _Clients(settings, case, closed)
        stages = _stages(case, clients)
        events: list[Event] = []
        bus = EventBus()
        bus.add_listener(events.append)

        def service_recovers(event: Event) -> None:
            # Once the first turn is over (its error said, if any), back to listening.
            done = event.kind == "state" and event.data["state"] in ("listening", "idle")
            if done and event.data.get("turn") == 1 and not reopening:
                server.state.faults.clear()
                reopening.append(asyncio.create_task(_reopen(server, closed)))

        bus.add_listener(service_recovers)
        if case.fault is not None:
            server.state.faults.add(case.fault)
        mic, out = workdir / f"{case.id}-mic.wav", workdir / f"{case.id}-out.wav"
        speech = concat(
            silence(300), speech_16k(QUESTION), silence(GAP_MS), speech_16k(SECOND), silence(800)
        )
        mic.write_bytes(encode_wav(speech, 16_000))
        source = WavFileSource(mic, block_ms=settings.audio.period_ms)
        sink = WavFileSink(
            out,
            sample_rate=settings.audio.speaker_wav_rate,
            period_ms=settings.audio.period_ms,
            playback_buffer_s=settings.audio.playback_buffer_s,
        )
        loop = VoiceLoop(settings, source, sink, stages, bus, None, lambda: sink.set_t0(source.t0))
        await asyncio.wait_for(loop.run(), 60)
    finally:
        for task in reopening:
            await cancel_and_wait(task)
        if clients is not None:
            await clients.aclose()
        # A stalled request is logged once stopping the server ends it.
        await server.stop()
        if closed is not None:
            closed.sock.close()
    heard, rate = read_wav(out)
    struck = sum(1 for record in server.state.log if record.details.get("fault_struck"))
    return Outcome(events, heard, rate, struck)


# --- the matrix -------------------------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def matrix(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[dict[str, asyncio.Task[Outcome]]]:
    """Every selected case, started at once (CASES_AT_ONCE running at a time)."""
    selected = [
        item.callspec.params["case"]
        for item in request.session.items
        if item.module is request.module and hasattr(item, "callspec")
    ]
    workdir = tmp_path_factory.mktemp("fault-matrix")
    slots = asyncio.Semaphore(CASES_AT_ONCE)

    async def limited(case: Case) -> Outcome:
        async with slots:
            return await run_case(case, workdir)

    tasks = {case.id: asyncio.create_task(limited(case)) for case in selected}
    try:
        yield tasks
    finally:
        for task in tasks.values():
            await cancel_and_wait(task)


def _kinds(outcome: Outcome, kind: str, turn: int | None = None) -> list[Event]:
    return [
        e for e in outcome.events if e.kind == kind and (turn is None or e.data.get("turn") == turn)
    ]


def _heard_at(outcome: Outcome, text: str) -> float:
    """Where `text`, in espeak's voice, starts in what the speaker played."""
    reference = speech_for(text)
    match = find(outcome.heard, outcome.rate, reference.samples, reference.sample_rate)
    assert match.score > MATCH_SCORE, (text, match)
    return match.start_s


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_fault(case: Case, matrix: dict[str, asyncio.Task[Outcome]]) -> None:
    outcome = await matrix[case.id]
    first_answer = reply_for(QUESTION, REPLY_SENTENCES)
    second_answer = reply_for(SECOND, REPLY_SENTENCES)
    assert (outcome.faulted_requests >= 1) == (case.fault is not None)

    if case.code:
        [error] = _kinds(outcome, "error")
        failure = error.data
        assert (failure["turn"], failure["service"], failure["stage"], failure["code"]) == (
            1,
            case.service,
            case.stage,
            case.code,
        ), failure
        [utterance] = _kinds(outcome, "utterance", turn=1)
        took = error.t - utterance.t
        assert took < BOUND_S, f"the failed turn took {took:.2f} s"
        said_at = _heard_at(outcome, failure["spoken"])
    else:
        assert _kinds(outcome, "error") == []
        assert [e.data["text"] for e in _kinds(outcome, "answer", turn=1)] == [first_answer]
        said_at = _heard_at(outcome, first_answer)

    # The next turn succeeds, and is heard after what the first one said.
    assert [e.data["text"] for e in _kinds(outcome, "transcript", turn=2)] == [SECOND]
    assert [e.data["text"] for e in _kinds(outcome, "answer", turn=2)] == [second_answer]
    assert _heard_at(outcome, second_answer) > said_at
