"""The dev server as the apps a current Dify serves, over real HTTP: an input form with a
required `query`, speech features turned off, the app mode's endpoint checks, Agent and
Chatflow streams in the documented event order, and speech interleaved with the text.

Every request and JSON answer is checked against the API documents (conftest.py).
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from assistant.audio.decoders import SniffingDecoder
from assistant.devserver import DevServerOptions, RunningDevServer, speech_for, start_devserver
from assistant.devserver.app_streams import AGENT_THOUGHT
from assistant.devserver.conversations import chat_reply
from assistant.devserver.inputs import QUESTION_FORM, InputVariable
from assistant.devserver.replies import reply_for

QUESTION = "What is the tallest mountain?"
USER = "tester"
AUTH = {"Authorization": "Bearer app-apps"}


def serving(**fields: Any) -> pytest.MarkDecorator:
    """The test's `running` dev server has these DevServerOptions fields."""
    return pytest.mark.parametrize("running", [fields], indirect=True, ids=["app"])


@pytest.fixture
async def running(request: pytest.FixtureRequest) -> AsyncIterator[RunningDevServer]:
    """A dev server with the options `serving` gives (the defaults without)."""
    server = await start_devserver(options=DevServerOptions(**getattr(request, "param", {})))
    yield server
    await server.stop()


@pytest.fixture
async def http(running: RunningDevServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=running.base_url, headers=AUTH, timeout=30) as client:
        yield client


def _events(body: str) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in body.split("\n") if line.startswith("data: ")]


def _ask(
    query: str = QUESTION, mode: str = "streaming", inputs: dict[str, str] | None = None
) -> dict[str, Any]:
    return {"inputs": inputs or {}, "query": query, "response_mode": mode, "user": USER}


def _duration(pieces: list[bytes]) -> float:
    decoder = SniffingDecoder("audio/mpeg")
    chunks = [c for piece in pieces for c in decoder.feed(piece)] + decoder.close()
    return sum(c.duration for c in chunks)


def _error(response: httpx.Response) -> tuple[int, str, str]:
    body = response.json()
    return response.status_code, body["code"], body["message"]


# -- what the app is -------------------------------------------------------------------


@serving(speech_to_text=False, text_to_speech=False, user_input_form=QUESTION_FORM, app_mode="chat")
async def test_parameters_and_info_describe_the_app(http: httpx.AsyncClient) -> None:
    params = (await http.get("/parameters")).json()
    assert params["speech_to_text"] == {"enabled": False}
    assert params["text_to_speech"]["enabled"] is False
    assert params["user_input_form"] == [
        {
            "paragraph": {
                "label": "Query",
                "variable": "query",
                "required": True,
                "default": "",
                "max_length": 256,
            }
        },
        {
            "text-input": {
                "label": "Tone",
                "variable": "tone",
                "required": False,
                "default": "",
                "max_length": 48,
            }
        },
    ]
    info = (await http.get("/info")).json()
    assert info["mode"] == "chat" and info["name"]


async def test_a_lenient_server_names_no_mode(http: httpx.AsyncClient) -> None:
    info = (await http.get("/info")).json()
    assert "mode" not in info and info["name"]
    assert (await http.get("/parameters")).json()["user_input_form"] == []


def test_unknown_app_modes_are_refused() -> None:
    with pytest.raises(ValueError, match="app_mode"):
        DevServerOptions(app_mode="workflow")


# -- the input form --------------------------------------------------------------------


@serving(user_input_form=QUESTION_FORM)
async def test_the_question_is_read_from_inputs_and_checked(
    running: RunningDevServer, http: httpx.AsyncClient
) -> None:
    legacy = await http.post("/completion-messages", json=_ask(mode="blocking"))
    assert _error(legacy) == (400, "invalid_param", "query is required in input form")
    empty = await http.post(
        "/completion-messages", json=_ask(mode="blocking", inputs={"query": ""})
    )
    assert _error(empty)[2] == "query is required in input form"
    too_long = await http.post(
        "/completion-messages", json=_ask(mode="blocking", inputs={"query": "x" * 257})
    )
    assert _error(too_long)[2] == "query in input form must be less than 256 characters"

    ok = await http.post(
        "/completion-messages", json=_ask("ignored legacy field", "blocking", {"query": QUESTION})
    )
    assert ok.status_code == 200
    assert ok.json()["answer"] == reply_for(QUESTION)
    # The optional variable is not needed; the record keeps what was sent.
    record = running.state.records("completion-messages")[-1]
    assert record.details["inputs"] == {"query": QUESTION}
    assert record.details["query"] == QUESTION
    assert [r.status for r in running.state.records("completion-messages")] == [400] * 3 + [200]


@serving(
    user_input_form=(
        InputVariable("question", required=True),
        InputVariable("lang", "select", required=True, options=("en", "de")),
    )
)
async def test_select_values_and_other_variables(http: httpx.AsyncClient) -> None:
    wrong = await http.post(
        "/completion-messages", json=_ask(inputs={"question": "Hi?", "lang": "fr"})
    )
    assert _error(wrong)[2] == "lang in input form must be one of the following: ['en', 'de']"
    missing = await http.post("/completion-messages", json=_ask(inputs={"question": "Hi?"}))
    assert _error(missing)[2] == "lang is required in input form"
    # Without a `query` variable the app answers the legacy field.
    ok = await http.post(
        "/completion-messages", json=_ask(mode="blocking", inputs={"question": "x", "lang": "en"})
    )
    assert ok.json()["answer"] == reply_for(QUESTION)


@serving(user_input_form=QUESTION_FORM, app_mode="chat")
async def test_chat_inputs_are_checked_when_a_conversation_starts(
    http: httpx.AsyncClient,
) -> None:
    refused = await http.post("/chat-messages", json=_ask(mode="blocking"))
    assert _error(refused)[2] == "query is required in input form"
    first = await http.post(
        "/chat-messages", json=_ask(mode="blocking", inputs={"query": QUESTION})
    )
    conversation_id = first.json()["conversation_id"]
    # Later turns keep the conversation's inputs, as Dify does: theirs are not checked.
    later = {**_ask("And then?", "blocking"), "conversation_id": conversation_id}
    second = await http.post("/chat-messages", json=later)
    assert second.json()["answer"] == chat_reply("And then?", 2)


# -- the app mode ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("running", "path", "mode", "refusal"),
    [
        (
            {"app_mode": "advanced-chat"},
            "/completion-messages",
            "streaming",
            ("app_unavailable", "App unavailable, please check your app configurations."),
        ),
        (
            {"app_mode": "completion"},
            "/chat-messages",
            "streaming",
            ("not_chat_app", "Please check if your app mode matches the right API route."),
        ),
        (
            {"app_mode": "agent-chat"},
            "/chat-messages",
            "blocking",
            ("invalid_param", "Agent Chat App does not support blocking mode"),
        ),
    ],
    indirect=["running"],
    ids=["chatflow-completion", "text-generator-chat", "agent-blocking"],
)
async def test_an_app_refuses_what_its_mode_cannot_answer(
    http: httpx.AsyncClient, path: str, mode: str, refusal: tuple[str, str]
) -> None:
    assert _error(await http.post(path, json=_ask(mode=mode))) == (400, *refusal)


# -- speech features off -----------------------------------------------------------------


@serving(speech_to_text=False, text_to_speech=False, stream_tts=True)
async def test_speech_features_turned_off(
    running: RunningDevServer, http: httpx.AsyncClient
) -> None:
    wav = {"file": ("q.wav", b"RIFF....WAVEfmt ", "audio/wav")}
    stt = await http.post("/audio-to-text", files=wav, data={"user": USER})
    assert _error(stt) == (400, "speech_to_text_disabled", "Speech to text is disabled.")
    tts = await http.post("/text-to-audio", json={"text": "Hello.", "user": USER})
    assert _error(tts) == (400, "invalid_param", "TTS is not enabled")
    unknown = await http.post(
        "/text-to-audio", json={"message_id": "9da23599-e713-473b-982c-4328d4f5c78a", "user": USER}
    )
    assert (unknown.status_code, unknown.text.strip()) == (200, "null")
    # Auto-play needs text-to-speech on: the answer carries no speech.
    streamed = await http.post("/completion-messages", json=_ask())
    assert "tts_message" not in {e["event"] for e in _events(streamed.text)}


@pytest.mark.invalid_requests
@serving(speech_to_text=False)
async def test_no_file_part_is_a_bad_request_before_the_feature_check(
    http: httpx.AsyncClient,
) -> None:
    refused = await http.post("/audio-to-text", files={"user": (None, USER)})
    assert _error(refused)[:2] == (400, "bad_request")


# -- Agent and Chatflow streams -----------------------------------------------------------


@serving(app_mode="agent-chat")
async def test_agent_stream_in_the_documented_order(http: httpx.AsyncClient) -> None:
    events = _events((await http.post("/chat-messages", json=_ask())).text)
    kinds = [e["event"] for e in events]
    chunks = kinds.count("agent_message")
    assert kinds == ["agent_thought", "message_file"] + ["agent_message"] * chunks + ["message_end"]
    conversation = {e["conversation_id"] for e in events}
    assert len(conversation) == 1 and all(e["task_id"] and e["message_id"] for e in events)
    answer = "".join(e["answer"] for e in events if e["event"] == "agent_message")
    assert answer == chat_reply(QUESTION, 1)
    thought, made = events[0], events[1]
    assert thought["thought"] == AGENT_THOUGHT and thought["position"] == 1
    assert thought["message_files"] == [made["id"]]
    assert made["belongs_to"] == "assistant" and "sign=" in made["url"]


@serving(app_mode="advanced-chat")
async def test_chatflow_stream_in_the_documented_order(http: httpx.AsyncClient) -> None:
    events = _events((await http.post("/chat-messages", json=_ask())).text)
    kinds = [e["event"] for e in events]
    chunks = kinds.count("message")
    assert kinds == (
        ["workflow_started", "node_started", "node_finished", "node_started"]
        + ["message"] * chunks
        + ["node_finished", "node_started", "node_finished", "message_end", "workflow_finished"]
    )
    run_ids = {e["workflow_run_id"] for e in events if e["event"].startswith(("workflow", "node"))}
    assert len(run_ids) == 1
    assert [e["data"]["node_type"] for e in events if e["event"] == "node_started"] == [
        "start",
        "llm",
        "answer",
    ]
    assert events[-1]["data"]["status"] == "succeeded"
    answer = "".join(e["answer"] for e in events if e["event"] == "message")
    assert answer == events[-1]["data"]["outputs"]["answer"] == chat_reply(QUESTION, 1)
    blocking = await http.post("/chat-messages", json=_ask(mode="blocking"))
    assert blocking.json()["mode"] == "advanced-chat"


# -- speech interleaved with the text --------------------------------------------------------


@serving(stream_tts=True, tts_interleave=True, first_token_ms=300, tokens_per_second=25)
async def test_interleaved_speech_comes_with_the_text_and_after_it(
    running: RunningDevServer, http: httpx.AsyncClient
) -> None:
    events = _events((await http.post("/completion-messages", json=_ask())).text)
    kinds = [e["event"] for e in events]
    end = kinds.index("message_end")
    last_text = max(i for i, kind in enumerate(kinds) if kind == "message")
    between = [i for i, kind in enumerate(kinds[:last_text]) if kind == "tts_message"]
    assert between, kinds  # speech arrived while the text was still being written
    assert kinds[between[0] - 1] == "message"  # ...only after text it could speak
    assert "tts_message" in kinds[end + 1 : -1] and kinds[-1] == "tts_message_end"
    pieces = [base64.b64decode(e["audio"]) for e in events if e["event"] == "tts_message"]
    answer = reply_for(QUESTION)
    assert _duration(pieces) == pytest.approx(speech_for(answer).duration, abs=0.1)
    record = running.state.records("completion-messages")[-1]
    assert 0 < record.details["tts_pieces_before_end"] < record.details["tts_pieces"]
    assert record.details["tts_pieces"] == len(pieces)


@serving(stream_tts=True, tts_interleave=True, app_mode="advanced-chat", tokens_per_second=25)
async def test_chatflow_speech_tail_trails_workflow_finished(http: httpx.AsyncClient) -> None:
    kinds = [e["event"] for e in _events((await http.post("/chat-messages", json=_ask())).text)]
    finished = kinds.index("workflow_finished")
    assert kinds.index("message_end") < finished
    assert set(kinds[finished + 1 : -1]) == {"tts_message"} and kinds[-1] == "tts_message_end"
