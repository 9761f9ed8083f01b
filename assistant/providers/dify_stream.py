"""What /completion-messages and /chat-messages share: reading an answer, streamed or blocking.

One event reader serves both endpoints, so text, moderation, in-stream speech and
errors are handled the same way whichever app type is configured.

Stream rules honoured here (see shared/reference/API_NOTES.md, section 1, and the chat
API's "Events by app type"):
- keep-alives are a bare `event: ping` block with no data line;
- `message` and `agent_message` chunks are concatenated; `message_replace` replaces;
  an Agent's `agent_thought` is logged at DEBUG, never said; `message_file` (a file a tool
  made: nothing a voice can show) is logged at DEBUG without its URL, which is signed;
  a Chatflow's `workflow_*` / `node_*` events are read and ignored;
- `tts_message` carries base64 of ONE provider audio chunk: each event is decoded on its
  own (base64 strings are never joined), and the pieces are not frame-aligned; they may
  come between the text events and after `message_end`;
- `message_end` completes the text, but not the body: the speech tail (`tts_message` ...
  `tts_message_end`) and a Chatflow's `workflow_finished` come after it. When the stream's
  speech is wanted (tts = "dify-stream") the answer lasts until the body's end; otherwise
  it ends at `message_end` for the caller, and the rest is read in the background (for a
  short while, so the connection can serve the next turn) and thrown away;
- a body that ends without `message_end` was cut;
- an `error` event is terminal, inside a 200 stream; after `message_end` it can only be the
  speech tail that failed: the text is complete, so the answer is kept and the speech is
  ended there (the turn then says the sentences with its own voice if none had arrived);
- a 200 that is JSON or a web page is not an answer stream (a blocking answer, a proxy's
  page): it is refused rather than read as a stream with no events in it;
- only an event's `task_id` makes the answer stoppable, and a generation goes on when its
  connection closes: an answer given up before its first event is read on, in the
  background, until that event, and then stopped.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import httpx

from assistant.providers.base import Delta, ServiceError
from assistant.providers.http import (
    is_page_type,
    json_object,
    media_type,
    raise_for_status,
    transport_error,
    unexpected_type,
)
from assistant.text.sse import SSEError, SSEParser

log = logging.getLogger(__name__)

SERVICE = "dify"

_AUDIO_MIMES = {
    "mp3": "audio/mpeg",
    "mpeg": "audio/mpeg",
    "audio/mp3": "audio/mpeg",
    "audio/mpeg": "audio/mpeg",
    "wav": "audio/wav",
    "wave": "audio/wav",
    "audio/wave": "audio/wav",
    "audio/x-wav": "audio/wav",
    "audio/wav": "audio/wav",
    "ogg": "audio/ogg",
    "oga": "audio/ogg",
    "opus": "audio/ogg",
    "audio/ogg": "audio/ogg",
    "flac": "audio/flac",
    "audio/flac": "audio/flac",
    "aac": "audio/aac",
    "audio/aac": "audio/aac",
    "m4a": "audio/mp4",
    "mp4": "audio/mp4",
    "audio/mp4": "audio/mp4",
    "webm": "audio/webm",
    "audio/webm": "audio/webm",
}
"""`audio_type` spellings → MIME; the same aliases as Dify's core/base/tts/audio_mime.py."""

_ANSWER_CHUNKS = ("message", "agent_message")


def audio_mime(audio_type: object) -> str | None:
    """The MIME type of a `tts_message`'s `audio_type` (newer Dify), None = sniff the bytes."""
    if not isinstance(audio_type, str):
        return None
    name = audio_type.split(";", 1)[0].strip().lower()
    return _AUDIO_MIMES.get(name)


@dataclass(slots=True)
class AnswerIds:
    """The ids the service gave the answer in flight, updated from every event."""

    task_id: str | None = None
    """For `/{task_id}/stop`."""
    message_id: str | None = None
    """For `/text-to-audio` with `message_id`."""
    conversation_id: str | None = None
    """Chat apps: the conversation to continue next turn (survives `new_turn`)."""

    def new_turn(self) -> None:
        """Forget the last answer's ids; the conversation stays."""
        self.task_id = None
        self.message_id = None

    def take(self, other: AnswerIds) -> None:
        """Take the ids `other` knows."""
        self.task_id = other.task_id or self.task_id
        self.message_id = other.message_id or self.message_id
        self.conversation_id = other.conversation_id or self.conversation_id

    def note(self, event: dict[str, Any]) -> None:
        """Take whatever ids `event` (a stream event or a blocking answer) carries."""
        if _text(event.get("task_id")):
            self.task_id = event["task_id"]
        message_id = event.get("message_id")
        if not _text(message_id) and event.get("event") in (*_ANSWER_CHUNKS, "message_end"):
            # On these events `id` is the message's id too (older versions send only `id`).
            message_id = event.get("id")
        if _text(message_id):
            self.message_id = message_id
        if _text(event.get("conversation_id")):
            self.conversation_id = event["conversation_id"]


def _text(value: object) -> bool:
    return isinstance(value, str) and bool(value)


class _EventReader:
    """Turns one answer's decoded events into Deltas; knows where the answer stands."""

    def __init__(self, stage: str, ids: AnswerIds, speech: bool = True) -> None:
        """`speech`: the stream's own speech is wanted (else its events are skipped unread)."""
        self._stage = stage
        self._ids = ids
        self._speech = speech
        self.ended = False
        """`message_end` was seen: the text is complete (speech may still follow)."""
        self._announced: str | None = None
        self._agent_text: list[str] | None = None

    def delta(self, event: dict[str, Any]) -> Delta | None:
        """The Delta for `event`, None for events with nothing for the caller."""
        self._ids.note(event)
        kind = event.get("event")
        if kind == "error":
            error = self._error(event)
            if not self.ended:
                raise error
            log.warning("dify speech after the answer failed; the answer stands: %s", error)
            return Delta(audio_done=True, message_id=self._ids.message_id)
        delta = self._delta(kind, event)
        if delta is not None:
            self._announced = delta.message_id
        return delta

    def _delta(self, kind: object, event: dict[str, Any]) -> Delta | None:
        message_id = self._ids.message_id
        if kind in _ANSWER_CHUNKS:
            return self._answer_chunk(kind, str(event.get("answer") or ""), message_id)
        if kind == "message_replace":
            return Delta(replace=str(event.get("answer") or ""), message_id=message_id)
        if kind in ("tts_message", "tts_message_end") and not self._speech:
            return None  # not decoded: the turn speaks with another voice
        if kind == "tts_message":
            audio = self._audio(event.get("audio"))
            if not audio:
                return None
            mime = audio_mime(event.get("audio_type"))
            return Delta(audio=audio, audio_type=mime, message_id=message_id)
        if kind == "tts_message_end":
            return Delta(audio_done=True, message_id=message_id)
        if kind == "message_end":
            self.ended = True
            # Every Delta carries the id once known; say it here if none has yet.
            if message_id is not None and message_id != self._announced:
                return Delta(message_id=message_id)
        if kind == "agent_thought":
            log.debug(
                "dify agent thought %s (tool %r): %.200s",
                event.get("position"),
                event.get("tool") or "",
                event.get("thought") or "",
            )
        elif kind == "message_file":
            log.debug(
                "dify answer came with a %s file (%s): not spoken",
                event.get("type"),
                event.get("id"),
            )
        # workflow_*, node_*, reasoning_chunk, ...: nothing to say or play.
        return None

    def _answer_chunk(self, kind: object, answer: str, message_id: str | None) -> Delta | None:
        if kind == "agent_message":
            if self._agent_text is None:
                self._agent_text = []
            self._agent_text.append(answer)
            return Delta(text=answer, message_id=message_id) if answer else None
        if self._agent_text is not None:
            # A "New Agent" app closes its agent_message chunks with one `message` holding
            # the whole answer: it is the final text, not more text to append.
            if answer == "".join(self._agent_text):
                return None
            self._agent_text = [answer]
            return Delta(replace=answer, message_id=message_id)
        return Delta(text=answer, message_id=message_id) if answer else None

    def _audio(self, value: object) -> bytes:
        if not isinstance(value, str):
            return b""
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ServiceError(
                SERVICE, self._stage, "malformed_response", "tts_message audio is not base64"
            ) from None

    def _error(self, event: dict[str, Any]) -> ServiceError:
        status = event.get("status")
        # After message_end only the speech tail is still coming: it is speech that failed.
        return ServiceError(
            SERVICE,
            "tts" if self.ended else self._stage,
            str(event.get("code") or "stream_error"),
            str(event.get("message") or ""),
            status=status if isinstance(status, int) and not isinstance(status, bool) else None,
        )


def answer_body(inputs: dict[str, str], user: str, query: str, mode: str) -> dict[str, Any]:
    """The request fields /completion-messages and /chat-messages share; `mode` is
    `streaming` or `blocking`."""
    return {"inputs": dict(inputs), "query": query, "response_mode": mode, "user": user}


async def answer_deltas(
    response: httpx.Response, stage: str, reader: _EventReader
) -> AsyncIterator[Delta | None]:
    """For each event of one SSE answer body, read to its end, its Delta (None: nothing
    for the caller); raises ServiceError."""
    parser = SSEParser()
    async for chunk in response.aiter_bytes():
        try:
            events = parser.feed(chunk)
        except SSEError as exc:
            raise ServiceError(SERVICE, stage, "malformed_response", str(exc)) from None
        for sse in events:
            if not sse.data:
                continue  # `event: ping`: a keep-alive, nothing to parse
            yield reader.delta(json_object(sse.data.encode(), SERVICE, stage))
    parser.close()
    if not reader.ended:
        raise ServiceError(SERVICE, stage, "stream_cut", "the stream ended before message_end")


STOP_UNNAMED_WITHIN_S = 10.0
"""An answer given up before any event named its task (an early start discarded while the
service was still thinking) is read on in the background for at most this long, to stop it."""

READ_ON_AFTER_TEXT_S = 2.0
"""After `message_end`, when the stream's speech is not wanted, the rest of the body (a
Chatflow's `workflow_finished`, a speech tail) is read in the background for at most this
long: a body read to its end leaves its connection open for the next turn."""

_abandoned_readers: set[asyncio.Task[None]] = set()
"""Readers of answers nobody reads any more, kept referenced until they end."""


async def streamed_answer(
    http: httpx.AsyncClient,
    path: str,
    body: dict[str, Any],
    stage: str,
    ids: AnswerIds,
    speech: bool = True,
) -> AsyncIterator[Delta]:
    """POST `body` (response_mode streaming) to `path` and yield the answer's Deltas.

    `speech`: the stream's own speech is wanted, and the answer lasts until the body's end;
    False: it ends at `message_end`, and the rest is read in the background.

    The body is read by a task of its own. Closing this generator (a cancelled turn)
    closes the HTTP response at once when an event has named the task: the caller stops
    it by id. Before that, nothing can stop it, and Dify goes on generating whether the
    connection closes or not; so the reader reads on, in the background, until the first
    event names the task (at most STOP_UNNAMED_WITHIN_S), stops it, and closes.
    """
    reader = _AnswerReader(http, path, body, stage, speech)
    task = asyncio.create_task(reader.run())
    try:
        while (item := await reader.items.get()) is not None:
            ids.take(reader.ids)
            if isinstance(item, Exception):
                raise item
            yield item
        ids.take(reader.ids)
    finally:
        if not task.done():
            if reader.text_done or reader.ids.task_id is None:
                if not reader.text_done:
                    reader.abandon()
                _abandoned_readers.add(task)
                task.add_done_callback(_abandoned_readers.discard)
            else:
                ids.take(reader.ids)
                task.cancel()
                await asyncio.wait([task])


class _AnswerReader:
    """Reads one streamed answer into `items`: Deltas, then None or the failure."""

    def __init__(
        self, http: httpx.AsyncClient, path: str, body: dict[str, Any], stage: str, speech: bool
    ) -> None:
        self._http = http
        self._path = path
        self._body = body
        self._stage = stage
        self._speech = speech
        self.text_done = False
        """The caller has the whole answer; the rest of the body is read unused."""
        self.ids = AnswerIds()
        """This answer's own ids: the caller copies them while it reads, never after."""
        self.items: asyncio.Queue[Delta | Exception | None] = asyncio.Queue()
        self._deadline: asyncio.Timeout | None = None
        self._abandoned = False

    def abandon(self) -> None:
        """Nobody reads any more: read on only until the task is named, then stop it."""
        self._abandoned = True
        if self._deadline is not None:
            self._deadline.reschedule(asyncio.get_running_loop().time() + STOP_UNNAMED_WITHIN_S)

    async def run(self) -> None:
        try:
            async with asyncio.timeout(None) as self._deadline:
                if self._abandoned:
                    self.abandon()  # given up before this task first ran
                await self._read()
        except httpx.HTTPError as exc:
            self._end(transport_error(SERVICE, self._stage, exc))
        except TimeoutError:
            if self.text_done:
                log.debug("the rest of a dify answer took over %g s: closed", READ_ON_AFTER_TEXT_S)
            else:
                log.warning(
                    "an abandoned dify answer named no task within %g s; it cannot be stopped",
                    STOP_UNNAMED_WITHIN_S,
                )
        except Exception as exc:  # a ServiceError, or a bug: the caller raises it
            self._end(exc)
        else:
            self._end(None)

    async def _read(self) -> None:
        async with self._http.stream("POST", self._path, json=self._body) as response:
            await raise_for_status(SERVICE, self._stage, response)
            mime = media_type(response)
            if mime == "application/json" or is_page_type(mime):
                raise await unexpected_type(SERVICE, self._stage, response, "an event stream")
            events = _EventReader(self._stage, self.ids, self._speech)
            async with aclosing(answer_deltas(response, self._stage, events)) as deltas:
                async for delta in deltas:
                    if self._abandoned and self.ids.task_id is not None:
                        await stop_task(
                            self._http, self._path, self.ids.task_id, self._body["user"]
                        )
                        return
                    if self.text_done:
                        continue
                    if delta is not None:
                        self.items.put_nowait(delta)
                    if events.ended and not self._speech:
                        self._end_text()

    def _end_text(self) -> None:
        """The text is complete and no speech is wanted: the answer ends for the caller."""
        self.text_done = True
        self.items.put_nowait(None)
        if self._deadline is not None:
            self._deadline.reschedule(asyncio.get_running_loop().time() + READ_ON_AFTER_TEXT_S)

    def _end(self, outcome: Exception | None) -> None:
        if self._abandoned or self.text_done:
            if outcome is not None:
                log.debug("the unread rest of a dify answer failed: %s", outcome)
            return
        self.items.put_nowait(outcome)


async def blocking_answer(
    http: httpx.AsyncClient, path: str, body: dict[str, Any], stage: str, ids: AnswerIds
) -> Delta:
    """POST `body` (response_mode blocking) to `path`: the whole answer as one Delta."""
    try:
        response = await http.post(path, json=body)
    except httpx.HTTPError as exc:
        raise transport_error(SERVICE, stage, exc) from None
    await raise_for_status(SERVICE, stage, response)
    doc = json_object(response.content, SERVICE, stage)
    ids.note(doc)
    answer = doc.get("answer")
    if not isinstance(answer, str):
        raise ServiceError(SERVICE, stage, "malformed_response", "no `answer`")
    return Delta(text=answer, message_id=ids.message_id)


async def stop_task(http: httpx.AsyncClient, path: str, task_id: str | None, user: str) -> None:
    """POST `{path}/{task_id}/stop` for `user`; never raises (the turn is already over)."""
    if not task_id:
        return
    try:
        response = await http.post(f"{path}/{task_id}/stop", json={"user": user}, timeout=2.0)
        await raise_for_status(SERVICE, "stop", response)
    except (httpx.HTTPError, ServiceError) as exc:
        # Stopping is a courtesy to the service; the turn is already cancelled.
        log.warning("dify stop of task %s failed: %s", task_id, exc)
