"""DifyChat over real HTTP against the dev server's /chat-messages: conversation memory,
resets, a lost conversation, stop, blocking mode, and the streams of Agent and Chatflow
apps (the dev server's `app_mode`, and canned bodies for rarer shapes)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from assistant.devserver import DevServerOptions, Fault, RunningDevServer, start_devserver
from assistant.devserver.app_streams import AGENT_THOUGHT
from assistant.devserver.conversations import chat_reply
from assistant.providers.base import ServiceError
from assistant.providers.dify import DifyClient, DifyCompletion, make_dify_completion
from assistant.providers.dify_chat import DifyChat
from assistant.settings import DifySettings, HttpSettings, Secret

KEY = "app-chat-key"
QUESTION = "How far away is the Moon?"
FOLLOW_UP = "And how long would it take to fly there?"
NOT_FOUND = {"code": "not_found", "message": "Conversation Not Exists.", "status": 404}


DEV_SERVER_OPTIONS = DevServerOptions(api_key=KEY)


def _client(server: RunningDevServer, mode: str = "streaming", idle_s: float = 300.0) -> DifyClient:
    settings = DifySettings(
        base_url=server.base_url,
        api_key=Secret(KEY),
        response_mode=mode,
        app="chat",
        conversation_idle_s=idle_s,
    )
    return DifyClient(settings, HttpSettings(read_timeout_s=5), user="tester")


@pytest.fixture
async def client(server: RunningDevServer) -> AsyncIterator[DifyClient]:
    dify = _client(server)
    yield dify
    await dify.aclose()


async def _answer(chat: DifyChat, query: str) -> str:
    text = ""
    async for delta in chat.stream(query):
        text = delta.replace if delta.replace is not None else text + delta.text
    return text


def _sent_ids(server: RunningDevServer) -> list[str]:
    """The conversation_id each /chat-messages request asked for ("" = a new one)."""
    return [r.details["requested_conversation_id"] for r in server.state.records("chat-messages")]


async def test_conversation_is_kept_across_turns(
    server: RunningDevServer, client: DifyClient
) -> None:
    chat = DifyChat(client)
    assert await _answer(chat, QUESTION) == chat_reply(QUESTION, 1)
    first_id = chat.conversation_id
    assert first_id is not None and uuid.UUID(first_id).version == 4
    second = await _answer(chat, FOLLOW_UP)
    assert second == chat_reply(FOLLOW_UP, 2)
    assert "turn 2" in second
    assert chat.conversation_id == first_id
    assert _sent_ids(server) == ["", first_id]
    records = server.state.records("chat-messages")
    assert [r.details["turn"] for r in records] == [1, 2]
    assert [r.details["conversation_id"] for r in records] == [first_id, first_id]


async def test_request_body_follows_the_chat_spec(
    server: RunningDevServer, client: DifyClient
) -> None:
    seen: list[dict[str, object]] = []

    async def capture(request: httpx.Request) -> None:
        if request.method == "POST":
            seen.append(json.loads(request.content))

    client.http.event_hooks["request"].append(capture)
    await _answer(DifyChat(client), QUESTION)
    # Not warmed up: the app's input form is read first, once, to place the question.
    assert len(server.state.records("parameters")) == 1
    assert seen == [
        {
            "inputs": {},
            "query": QUESTION,
            "response_mode": "streaming",
            "user": "tester",
            "conversation_id": "",
            "auto_generate_name": False,
        }
    ]


async def test_reset_conversation_starts_a_new_one(
    server: RunningDevServer, client: DifyClient
) -> None:
    chat = DifyChat(client)
    await _answer(chat, QUESTION)
    first_id = chat.conversation_id
    chat.reset_conversation()
    assert chat.conversation_id is None
    assert await _answer(chat, FOLLOW_UP) == chat_reply(FOLLOW_UP, 1)
    assert chat.conversation_id not in (None, first_id)
    assert _sent_ids(server) == ["", ""]


async def test_idle_conversation_is_forgotten(server: RunningDevServer) -> None:
    dify = _client(server, idle_s=0.2)
    try:
        chat = DifyChat(dify)
        await _answer(chat, QUESTION)
        first_id = chat.conversation_id
        assert "turn 2" in await _answer(chat, FOLLOW_UP)  # quick: same conversation
        await asyncio.sleep(0.3)
        assert await _answer(chat, QUESTION) == chat_reply(QUESTION, 1)
    finally:
        await dify.aclose()
    assert chat.conversation_id != first_id
    assert _sent_ids(server) == ["", first_id, ""]


async def test_lost_conversation_is_asked_again_in_a_new_one(
    server: RunningDevServer, client: DifyClient
) -> None:
    chat = DifyChat(client)
    await _answer(chat, QUESTION)
    lost_id = chat.conversation_id
    server.state.conversations.clear()  # as if deleted in Dify's console
    assert await _answer(chat, FOLLOW_UP) == chat_reply(FOLLOW_UP, 1)
    assert chat.conversation_id not in (None, lost_id)
    records = server.state.records("chat-messages")
    assert [r.status for r in records] == [200, 404, 200]
    assert _sent_ids(server) == ["", lost_id, ""]


async def test_lost_conversation_is_retried_only_once(
    server: RunningDevServer, client: DifyClient
) -> None:
    chat = DifyChat(client)
    await _answer(chat, QUESTION)
    server.state.faults.add(Fault("chat-messages", status=404, body=NOT_FOUND, count=2))
    with pytest.raises(ServiceError) as caught:
        await _answer(chat, FOLLOW_UP)
    assert (caught.value.status, caught.value.code) == (404, "not_found")
    assert [r.status for r in server.state.records("chat-messages")] == [200, 404, 404]


async def test_a_404_for_a_new_conversation_is_not_retried(
    server: RunningDevServer, client: DifyClient
) -> None:
    server.state.faults.add(Fault("chat-messages", status=404, body=NOT_FOUND))
    with pytest.raises(ServiceError):
        await _answer(DifyChat(client), QUESTION)
    assert len(server.state.records("chat-messages")) == 1


async def test_stop_stops_the_chat_task_with_the_same_user(
    server: RunningDevServer, client: DifyClient
) -> None:
    server.state.set_latency(tokens_per_second=5)
    chat = DifyChat(client)
    stream = chat.stream(QUESTION)
    assert (await anext(stream)).text
    await chat.stop()
    await stream.aclose()
    stops = server.state.records("chat-messages-stop")
    assert len(stops) == 1
    assert stops[0].details["user"] == "tester"
    assert stops[0].details["stopped"] is True
    assert (
        stops[0].details["task_id"] == server.state.records("chat-messages")[0].details["task_id"]
    )
    # The stopped turn still belongs to the conversation: the next one is turn 2.
    server.state.set_latency(tokens_per_second=0)
    assert "turn 2" in await _answer(chat, FOLLOW_UP)


async def test_blocking_chat_keeps_the_conversation(server: RunningDevServer) -> None:
    dify = _client(server, mode="blocking")
    try:
        chat = DifyChat(dify)
        first = [d async for d in chat.stream(QUESTION)]
        second = [d async for d in chat.stream(FOLLOW_UP)]
    finally:
        await dify.aclose()
    assert [d.text for d in first] == [chat_reply(QUESTION, 1)]
    assert [d.text for d in second] == [chat_reply(FOLLOW_UP, 2)]
    records = server.state.records("chat-messages")
    assert [r.details["response_mode"] for r in records] == ["blocking", "blocking"]
    assert first[0].message_id == records[0].details["message_id"]
    assert _sent_ids(server) == ["", chat.conversation_id]


def _sse(*events: dict[str, object]) -> str:
    return "".join(f"data: {json.dumps(e)}\n\n" for e in events)


def _event(kind: str, **fields: object) -> dict[str, object]:
    return {"event": kind, "task_id": "t", "message_id": "m", "conversation_id": "c-1", **fields}


async def test_agent_and_chatflow_events(server: RunningDevServer, client: DifyClient) -> None:
    body = "event: ping\n\n" + _sse(
        _event("workflow_started", data={"inputs": {}}),
        _event("node_started", data={"node_id": "llm"}),
        _event("agent_thought", id="th-1", thought="Look it up.", tool="search"),
        _event("agent_message", answer="About 384,000 "),
        _event("agent_message", answer="kilometres."),
        # A "New Agent" app closes with the whole answer in one `message`.
        _event("message", answer="About 384,000 kilometres."),
        _event("message_end", id="m", metadata={"usage": {}}),
        _event("workflow_finished", data={"status": "succeeded"}),
    )
    server.state.faults.add(
        Fault("chat-messages", status=200, body=body, content_type="text/event-stream")
    )
    chat = DifyChat(client)
    deltas = [d async for d in chat.stream(QUESTION)]
    assert [d.text for d in deltas] == ["About 384,000 ", "kilometres."]
    assert all(d.replace is None and d.message_id == "m" for d in deltas)
    assert chat.conversation_id == "c-1"


async def test_cut_chat_stream_is_typed(server: RunningDevServer, client: DifyClient) -> None:
    cut = _sse(_event("message", answer="Half"))
    server.state.faults.add(
        Fault("chat-messages", status=200, body=cut, content_type="text/event-stream")
    )
    with pytest.raises(ServiceError) as caught:
        await _answer(DifyChat(client), QUESTION)
    assert (caught.value.stage, caught.value.code) == ("completion", "stream_cut")


@pytest.mark.invalid_requests
async def test_devserver_chat_refusals(server: RunningDevServer) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=server.base_url, headers=headers) as http:
        no_query = await http.post("/chat-messages", json={"inputs": {}, "user": "u"})
        unknown = await http.post(
            "/chat-messages",
            json={"inputs": {}, "query": "hi", "user": "u", "conversation_id": str(uuid.uuid4())},
        )
        made = await http.post("/chat-messages", json={"inputs": {}, "query": "hi", "user": "u"})
        mine = made.json()["conversation_id"]
        theirs = await http.post(
            "/chat-messages",
            json={"inputs": {}, "query": "hi", "user": "mallory", "conversation_id": mine},
        )
    assert no_query.status_code == 400 and no_query.json()["code"] == "invalid_param"
    assert "query" in no_query.json()["message"]
    assert unknown.status_code == 404 and unknown.json() == NOT_FOUND
    assert made.json()["mode"] == "chat" and "turn 1" in made.json()["answer"]
    assert theirs.status_code == 404 and theirs.json() == NOT_FOUND


async def test_factory_chooses_by_app_type(server: RunningDevServer) -> None:
    chat_client = _client(server)
    settings = DifySettings(base_url=server.base_url, api_key=Secret(KEY), app="completion")
    completion_client = DifyClient(settings, HttpSettings(), user="tester")
    try:
        assert isinstance(make_dify_completion(chat_client), DifyChat)
        assert isinstance(make_dify_completion(completion_client), DifyCompletion)
    finally:
        await chat_client.aclose()
        await completion_client.aclose()


# -- Agent and Chatflow apps as the dev server serves them -------------------------------


@contextlib.asynccontextmanager
async def _app(**options: Any) -> AsyncIterator[tuple[RunningDevServer, DifyClient]]:
    """A dev server serving the app these options make, and a chat client of it."""
    server = await start_devserver(options=DevServerOptions(api_key=KEY, **options))
    dify = _client(server)
    try:
        yield server, dify
    finally:
        await dify.aclose()
        await server.stop()


async def test_an_agents_answer_is_its_agent_messages(caplog: pytest.LogCaptureFixture) -> None:
    async with _app(app_mode="agent-chat") as (agent, dify):
        chat = DifyChat(dify, speech=False)
        with caplog.at_level(logging.DEBUG, "assistant.providers.dify_stream"):
            deltas = [d async for d in chat.stream(QUESTION)]
        assert await _answer(chat, FOLLOW_UP) == chat_reply(FOLLOW_UP, 2)
    assert "".join(d.text for d in deltas) == chat_reply(QUESTION, 1)
    assert all(d.replace is None and not d.audio for d in deltas)
    assert AGENT_THOUGHT not in "".join(d.text for d in deltas)
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert any("agent thought" in line and AGENT_THOUGHT in line for line in debug)
    assert any("image file" in line and "not spoken" in line for line in debug)
    # The tool file's URL is signed: it is never logged.
    assert "sign=" not in caplog.text and "/files/tools/" not in caplog.text
    records = agent.state.records("chat-messages")
    assert [r.details["requested_conversation_id"] for r in records] == ["", chat.conversation_id]


async def test_a_chatflow_answer_ends_at_message_end_and_the_rest_is_read() -> None:
    async with _app(app_mode="advanced-chat") as (chatflow, dify):
        chat = DifyChat(dify, speech=False)
        assert await _answer(chat, QUESTION) == chat_reply(QUESTION, 1)
        first_id = chat.conversation_id
        await asyncio.sleep(0.2)  # the rest (workflow_finished) is read in the background
        assert await _answer(chat, FOLLOW_UP) == chat_reply(FOLLOW_UP, 2)
    assert chat.conversation_id == first_id
    first, second = chatflow.state.records("chat-messages")
    # Read to its end: the connection served the next question too.
    assert first.client_port == second.client_port
    assert not first.details.get("disconnected")


async def test_a_chatflow_stream_with_its_own_speech_is_read_to_the_end() -> None:
    options = {"stream_tts": True, "tts_interleave": True, "reply_sentences": 2}
    async with _app(app_mode="advanced-chat", **options) as (chatflow, dify):
        deltas = [d async for d in DifyChat(dify).stream(QUESTION)]
    record = chatflow.state.records("chat-messages")[0]
    assert "".join(d.text for d in deltas) == chat_reply(QUESTION, 1, 2)
    assert sum(1 for d in deltas if d.audio) == record.details["tts_pieces"]
    assert deltas[-1].audio_done and not any(d.audio_done for d in deltas[:-1])
