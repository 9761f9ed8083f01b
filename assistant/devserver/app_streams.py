"""The events around an answer's text, by app type, in the order the API reference gives
(`dify_openapi_service_current.json`, `POST /chat-messages`, "Events by app type"):

- Text Generator, Chatbot: `message` chunks → `message_end`.
- Agent: `agent_thought` (its reasoning and tool call) and `message_file` (a file the tool
  made) alongside `agent_message` chunks → `message_end`.
- Chatflow: `workflow_started` → node events around the LLM node's `message` chunks →
  `message_end`, then `workflow_finished`. Workflow and node events nest their payload
  under `data` and carry a top-level `workflow_run_id`.

The text itself, pings and in-stream speech are `answers`' business.
"""

from __future__ import annotations

import secrets
import time
import uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from assistant.devserver.answers import Answer

AGENT_THOUGHT = "The question needs no tool; I will answer it from what I know."
"""An agent's reasoning: what a client must log at most, never say."""
AGENT_TOOL = "current_time"


class AppEvents:
    """A Text Generator's or Chatbot's stream: nothing around the `message` chunks."""

    chunk_event = "message"

    def __init__(self, answer: Answer, host: str) -> None:
        self.answer = answer
        self.host = host

    def chunk(self, text: str) -> dict[str, Any]:
        event = self.answer.base(self.chunk_event)
        event.update(id=self.answer.message_id, answer=text, from_variable_selector=None)
        return event

    def opening(self) -> list[dict[str, Any]]:
        """Before the first chunk."""
        return []

    def text_done(self) -> list[dict[str, Any]]:
        """After the last chunk, before `message_end`."""
        return []

    def closing(self, stopped: bool) -> list[dict[str, Any]]:
        """After `message_end` (and before any speech still to come)."""
        return []


class AgentEvents(AppEvents):
    """An Agent app's stream: a thought with a tool call and the file it made, then the
    answer as `agent_message` chunks."""

    chunk_event = "agent_message"

    def chunk(self, text: str) -> dict[str, Any]:
        event = self.answer.base(self.chunk_event)
        event.update(id=self.answer.message_id, answer=text)
        return event

    def opening(self) -> list[dict[str, Any]]:
        file_id = str(uuid.uuid4())
        thought = self.answer.base("agent_thought")
        thought.update(
            id=str(uuid.uuid4()),
            position=1,
            thought=AGENT_THOUGHT,
            observation='{"current_time": "12:00"}',
            tool=AGENT_TOOL,
            tool_labels={AGENT_TOOL: {"en_US": "Current Time"}},
            tool_input='{"current_time": {}}',
            message_files=[file_id],
        )
        made = self.answer.base("message_file")
        # Dify's tool files are served by signed URLs: a credential, never to be logged.
        signature = f"timestamp={int(time.time())}&nonce={secrets.token_hex(16)}&sign=" + (
            secrets.token_urlsafe(32)
        )
        made.update(
            id=file_id,
            type="image",
            belongs_to="assistant",
            url=f"http://{self.host}/files/tools/{file_id}.png?{signature}",
        )
        return [thought, made]


class ChatflowEvents(AppEvents):
    """A Chatflow app's stream: a start node, the LLM node that writes the text, an answer
    node; `message_end` comes before `workflow_finished`."""

    _NODES = (("start", "start", "Start"), ("llm", "llm", "LLM"), ("answer", "answer", "Answer"))

    def __init__(self, answer: Answer, host: str) -> None:
        super().__init__(answer, host)
        self.run_id = str(uuid.uuid4())
        self.workflow_id = str(uuid.uuid4())
        self.started = int(time.time())
        self._executions = {node_id: str(uuid.uuid4()) for node_id, _, _ in self._NODES}

    def chunk(self, text: str) -> dict[str, Any]:
        event = super().chunk(text)
        event["from_variable_selector"] = ["llm", "text"]
        return event

    def _workflow_event(self, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        event = self.answer.base(kind)
        event.update(workflow_run_id=self.run_id, data=data)
        return event

    def _node(self, kind: str, index: int, outputs: dict[str, Any] | None) -> dict[str, Any]:
        node_id, node_type, title = self._NODES[index]
        data: dict[str, Any] = {
            "id": self._executions[node_id],
            "node_id": node_id,
            "node_type": node_type,
            "title": title,
            "index": index + 1,
            "predecessor_node_id": self._NODES[index - 1][0] if index else None,
            "inputs": None,
            "created_at": self.started,
        }
        if kind == "node_finished":
            data.update(
                status="succeeded",
                outputs=outputs,
                elapsed_time=round(time.monotonic() - self.answer.started, 3),
                finished_at=int(time.time()),
            )
        return self._workflow_event(kind, data)

    def opening(self) -> list[dict[str, Any]]:
        started = {
            "id": self.run_id,
            "workflow_id": self.workflow_id,
            "inputs": {"sys.query": self.answer.query},
            "created_at": self.started,
        }
        return [
            self._workflow_event("workflow_started", started),
            self._node("node_started", 0, None),
            self._node("node_finished", 0, {"sys.query": self.answer.query}),
            self._node("node_started", 1, None),
        ]

    def text_done(self) -> list[dict[str, Any]]:
        text = {"text": self.answer.answer}
        return [
            self._node("node_finished", 1, text),
            self._node("node_started", 2, None),
            self._node("node_finished", 2, {"answer": self.answer.answer}),
        ]

    def closing(self, stopped: bool) -> list[dict[str, Any]]:
        finished = {
            "id": self.run_id,
            "workflow_id": self.workflow_id,
            "status": "stopped" if stopped else "succeeded",
            "outputs": {"answer": self.answer.answer},
            "error": None,
            "elapsed_time": round(time.monotonic() - self.answer.started, 3),
            "total_tokens": len(self.answer.sent),
            "total_steps": len(self._NODES),
            "created_at": self.started,
            "finished_at": int(time.time()),
        }
        return [self._workflow_event("workflow_finished", finished)]


def events_for(answer: Answer, host: str) -> AppEvents:
    """The stream shape of the answer's app type (its blocking `mode`)."""
    if answer.mode == "agent-chat":
        return AgentEvents(answer, host)
    if answer.mode == "advanced-chat":
        return ChatflowEvents(answer, host)
    return AppEvents(answer, host)
