"""Everything the dev server remembers between requests, shared with in-process tests."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiohttp import web

from assistant.devserver.conversations import Conversation
from assistant.devserver.faults import FaultBook
from assistant.devserver.options import LATENCY_FIELDS, DevServerOptions
from assistant.devserver.recogniser import DEFAULT_PHRASES, PhraseBook

STATE_KEY: web.AppKey[DevServerState] = web.AppKey("devserver_state")
MAX_LOG_RECORDS = 10_000
# Annotations are strings here (postponed evaluation): "int", "float" or "bool".
_FIELD_TYPES = {f.name: str(f.type) for f in dataclasses.fields(DevServerOptions)}


@dataclass(slots=True)
class RequestRecord:
    """One request to a `/v1` endpoint, appended to `state.log` when it is answered."""

    endpoint: str
    """Route name: audio-to-text, completion-messages, completion-messages-stop,
    chat-messages, chat-messages-stop, text-to-audio, parameters, info; or the path when no
    route matched."""
    method: str
    time: float
    """Wall-clock arrival (Unix seconds)."""
    status: int = 0
    duration_s: float = 0.0
    """From arrival to the last byte of the answer."""
    client_port: int = 0
    """The client's TCP port: requests sharing one came over one kept-alive connection."""
    details: dict[str, Any] = field(default_factory=dict)
    """Per endpoint. audio-to-text: upload_bytes, content_type, audio_duration_s, transcript.
    completion-messages: query (the question the app answered), inputs (as sent), answer,
    task_id, message_id, stopped (with stream_tts also tts_pieces, tts_pieces_before_end,
    audio_bytes, audio_duration_s). chat-messages: the same plus requested_conversation_id,
    conversation_id, turn (inputs only for a new conversation). text-to-audio: text,
    voice, audio_bytes, content_type. Any: fault=True and fault_mode when a fault was armed
    for it, fault_struck when the fault changed the answer."""

    def as_json(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "method": self.method,
            "status": self.status,
            "time": self.time,
            "duration_s": self.duration_s,
            "client_port": self.client_port,
            **self.details,
        }


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A finished completion, for `/text-to-audio` with a `message_id`."""

    user: str
    answer: str


@dataclass(slots=True)
class RunningTask:
    """A completion being generated, for `/completion-messages/{task_id}/stop`."""

    user: str
    stop: asyncio.Event = field(default_factory=asyncio.Event)


MAX_KEPT_UPLOADS = 20


class DevServerState:
    """Options (live), request log, faults, known phrases, messages and running tasks."""

    def __init__(self, options: DevServerOptions) -> None:
        self.options = options
        self.log: list[RequestRecord] = []
        self.faults = FaultBook()
        self.phrases = PhraseBook(options.voice, (*DEFAULT_PHRASES, *options.phrases))
        self.messages: dict[str, StoredMessage] = {}
        self.tasks: dict[str, RunningTask] = {}
        self.conversations: dict[str, Conversation] = {}
        self.uploads: deque[tuple[np.ndarray, int]] = deque(maxlen=MAX_KEPT_UPLOADS)
        """The last speech-to-text uploads, decoded (float32 samples in [-1, 1], rate): what
        a test asserts the device sent, to the sample."""

    def record(self, record: RequestRecord) -> None:
        """Append to the log, forgetting the oldest records of a long-running demo."""
        self.log.append(record)
        if len(self.log) > MAX_LOG_RECORDS:
            del self.log[: len(self.log) - MAX_LOG_RECORDS]

    def set_latency(self, **changes: float) -> DevServerOptions:
        """Change latency fields of the live options (the rest stay fixed)."""
        unknown = set(changes) - set(LATENCY_FIELDS)
        if unknown:
            raise ValueError(f"not latency fields: {', '.join(sorted(unknown))}")
        for name, value in changes.items():
            if _FIELD_TYPES[name] == "bool":
                if not isinstance(value, bool):
                    raise ValueError(f"{name} must be true or false")
            elif isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{name} must be a number >= 0")
        converted = {
            name: value
            if _FIELD_TYPES[name] == "bool"
            else round(value)
            if _FIELD_TYPES[name] == "int"
            else float(value)
            for name, value in changes.items()
        }
        self.options = dataclasses.replace(self.options, **converted)
        return self.options

    def latency(self) -> dict[str, float | bool]:
        return {name: getattr(self.options, name) for name in LATENCY_FIELDS}

    def records(self, endpoint: str | None = None) -> list[RequestRecord]:
        """The log, optionally only one endpoint's requests."""
        return [r for r in self.log if endpoint is None or r.endpoint == endpoint]

    def reset(self) -> None:
        """Forget the log and every armed fault (phrases and messages stay)."""
        self.log.clear()
        self.faults.clear()
