"""Incremental Server-Sent Events parser (WHATWG HTML, "Parsing an event stream").

Bytes go in as they arrive from the socket, complete events come out. The
parser follows the spec's interpretation rules, with one deliberate deviation:

* An event block that sets `event:` but has no `data:` line is dispatched with
  `data=""`. The spec drops it, but Dify's keep-alive is exactly such a block
  (`event: ping\\n\\n`) and the caller wants to see keep-alives to reset its
  read deadline. A block with neither a name nor data is still not dispatched.

Other notes:

* `SSEEvent.id` is the spec's "last event ID": it persists across events until
  an `id:` field changes it, and is None while no `id:` has been seen.
* `SSEEvent.retry` is the `retry:` value given in that same event block, if
  any; `SSEParser.retry` keeps the latest one for reconnect logic.
* Undecodable bytes become U+FFFD instead of raising, as the spec requires.
* A line or an event larger than the configured limits raises SSEError, so a
  broken or hostile server cannot make us buffer without bound.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

DEFAULT_MAX_LINE_CHARS = 1 << 20
DEFAULT_MAX_EVENT_CHARS = 4 << 20

_LINE_END = re.compile(r"\r\n|\r|\n")
_BOM = "\ufeff"


class SSEError(ValueError):
    """The stream broke a limit that protects us from buffering without bound."""


@dataclass(frozen=True, slots=True)
class SSEEvent:
    event: str
    """Event type; "message" when the block had no `event:` field."""
    data: str
    """The `data:` lines joined with "\\n"."""
    id: str | None
    """Last event ID at dispatch time (persists across events), None if never set."""
    retry: int | None
    """Reconnection time in ms from this event's block, if it carried one."""


class SSEParser:
    """Feed raw bytes in any split; get back the events completed by each feed."""

    def __init__(
        self,
        max_line_chars: int = DEFAULT_MAX_LINE_CHARS,
        max_event_chars: int = DEFAULT_MAX_EVENT_CHARS,
    ) -> None:
        self._max_line = max_line_chars
        self._max_event = max_event_chars
        self._reset()

    def _reset(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._at_stream_start = True
        # A CR ends a line at once (no waiting for the next chunk); if the very
        # next character is LF it belongs to the same line end and is skipped.
        self._skip_lf = False
        self._partial: list[str] = []
        self._partial_len = 0
        self._event_type = ""
        self._data: list[str] = []
        self._data_len = 0
        self._block_retry: int | None = None
        self.last_event_id: str | None = None
        self.retry: int | None = None
        """Latest reconnection time (ms) the server asked for."""

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Parse `chunk` and return the events it completed (often none)."""
        return self._feed_text(self._decoder.decode(chunk))

    def close(self) -> list[SSEEvent]:
        """End of stream. Per spec an event without its closing blank line is discarded,
        so this returns no events; it resets the parser for reuse."""
        self._reset()
        return []

    def _feed_text(self, text: str) -> list[SSEEvent]:
        if not text:
            return []
        if self._at_stream_start:
            self._at_stream_start = False
            if text.startswith(_BOM):
                text = text[1:]
        if self._skip_lf:
            self._skip_lf = False
            if text.startswith("\n"):
                text = text[1:]
        events: list[SSEEvent] = []
        pos = 0
        for match in _LINE_END.finditer(text):
            piece = text[pos : match.start()]
            if self._partial:
                self._partial.append(piece)
                line = "".join(self._partial)
                self._partial.clear()
                self._partial_len = 0
            else:
                line = piece
            if len(line) > self._max_line:
                raise SSEError(f"SSE line of {len(line)} chars exceeds {self._max_line}")
            event = self._process_line(line)
            if event is not None:
                events.append(event)
            pos = match.end()
        if text.endswith("\r"):
            self._skip_lf = True
        rest = text[pos:]
        if rest:
            self._partial.append(rest)
            self._partial_len += len(rest)
            if self._partial_len > self._max_line:
                raise SSEError(f"SSE line exceeds {self._max_line} chars without a line end")
        return events

    def _process_line(self, line: str) -> SSEEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._data_len += len(value) + 1
            if self._data_len > self._max_event:
                raise SSEError(f"SSE event data exceeds {self._max_event} chars")
        elif name == "event":
            self._event_type = value
        elif name == "id" and "\0" not in value:
            self.last_event_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry = self._block_retry = int(value)
        return None

    def _dispatch(self) -> SSEEvent | None:
        event: SSEEvent | None = None
        if self._data or self._event_type:
            event = SSEEvent(
                event=self._event_type or "message",
                data="\n".join(self._data),
                id=self.last_event_id,
                retry=self._block_retry,
            )
        self._event_type = ""
        self._data.clear()
        self._data_len = 0
        self._block_retry = None
        return event
