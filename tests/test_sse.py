"""SSEParser: WHATWG event-stream parsing, fed in every possible split."""

from __future__ import annotations

import json
import random

import pytest

from assistant.text.sse import SSEError, SSEEvent, SSEParser

MESSAGES = ["Hello 👋, ", "你好！今天天气很好。", " Grüße — ça va? 😀🇫🇷", "\n\nNext paragraph…"]


def _dify_stream() -> str:
    """A Dify /completion-messages stream, as the service writes it (LF line ends)."""
    common = {"task_id": "t-1", "message_id": "m-1", "created_at": 1705395332}
    parts = [": stream opened\n\n"]
    for answer in MESSAGES[:2]:
        parts.append(f"data: {json.dumps({'event': 'message', 'answer': answer, **common})}\n\n")
    parts.append("event: ping\n\n")
    for answer in MESSAGES[2:]:
        # ensure_ascii=False: the raw UTF-8 bytes travel, as Dify sends them.
        payload = json.dumps({"event": "message", "answer": answer, **common}, ensure_ascii=False)
        parts.append(f"data: {payload}\n\n")
    parts.append("event: ping\n\n")
    end = {"event": "message_end", "metadata": {"usage": {"total_tokens": 42}}, **common}
    parts.append(f"data: {json.dumps(end)}\n\n")
    error = {"event": "error", "status": 400, "code": "invalid_param", "message": "bad «input»"}
    parts.append(f"data: {json.dumps(error, ensure_ascii=False)}\n\n")
    return "".join(parts)


def _expected() -> list[tuple[str, str | None]]:
    """(event name, payload event) of each event the stream holds."""
    return [
        ("message", "message"),
        ("message", "message"),
        ("ping", None),
        ("message", "message"),
        ("message", "message"),
        ("ping", None),
        ("message", "message_end"),
        ("message", "error"),
    ]


def _summary(events: list[SSEEvent]) -> list[tuple[str, str | None]]:
    return [(e.event, json.loads(e.data)["event"] if e.data else None) for e in events]


def _parse(chunks: list[bytes]) -> list[SSEEvent]:
    parser = SSEParser()
    events: list[SSEEvent] = []
    for chunk in chunks:
        events += parser.feed(chunk)
    return events + parser.close()


VARIANTS = {
    "lf": _dify_stream().encode(),
    "crlf": _dify_stream().replace("\n", "\r\n").encode(),
    "cr": _dify_stream().replace("\n", "\r").encode(),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_dify_stream_whole(variant: str) -> None:
    events = _parse([VARIANTS[variant]])
    assert _summary(events) == _expected()
    payloads = [json.loads(e.data) for e in events if e.data]
    answers = [p["answer"] for p in payloads if p["event"] == "message"]
    assert answers[:4] == MESSAGES
    assert json.loads(events[-1].data)["message"] == "bad «input»"
    assert all(e.id is None and e.retry is None for e in events)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_dify_stream_split_at_every_byte(variant: str) -> None:
    body = VARIANTS[variant]
    whole = _parse([body])
    for cut in range(len(body) + 1):
        assert _parse([body[:cut], body[cut:]]) == whole, f"split at byte {cut}"


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_dify_stream_one_byte_at_a_time(variant: str) -> None:
    body = VARIANTS[variant]
    assert _parse([body[i : i + 1] for i in range(len(body))]) == _parse([body])


def test_random_chunks_and_mixed_line_ends() -> None:
    rng = random.Random(7)
    # Every line end picked at random among the three the spec allows; an LF
    # right after a lone CR would merge with it into one CRLF, so not there.
    mixed_text = ""
    for line in _dify_stream().split("\n")[:-1]:
        ends = ["\r", "\r\n"] if mixed_text.endswith("\r") and not line else ["\n", "\r\n", "\r"]
        mixed_text += line + rng.choice(ends)
    mixed = mixed_text.encode()
    whole = _parse([mixed])
    assert _summary(whole) == _expected()
    for _ in range(50):
        cuts = sorted(rng.sample(range(1, len(mixed)), 30))
        chunks = [mixed[a:b] for a, b in zip([0, *cuts], [*cuts, len(mixed)], strict=True)]
        assert _parse(chunks) == whole


def test_cr_then_lf_in_next_chunk_is_one_line_end() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\r") == []
    events = parser.feed(b"\ndata: b\r")
    events += parser.feed(b"\n\r")
    events += parser.feed(b"\n")
    assert events == [SSEEvent("message", "a\nb", None, None)]


def test_cr_dispatches_without_waiting_for_the_next_chunk() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: now\r\r") == [SSEEvent("message", "now", None, None)]


def test_bom_stripped_only_at_stream_start_even_when_split() -> None:
    parser = SSEParser()
    assert parser.feed(b"\xef") == []
    assert parser.feed(b"\xbb") == []
    assert parser.feed(b"\xbfdata: x\n\n") == [SSEEvent("message", "x", None, None)]
    # A second BOM is part of the field name, so the line is an unknown field.
    assert parser.feed(b"\xef\xbb\xbfdata: y\n\n") == []


def test_utf8_character_split_across_chunks() -> None:
    body = "data: 😀中\n\n".encode()
    start = body.index(b"\xf0")
    parser = SSEParser()
    events = []
    for i in range(len(body)):
        events += parser.feed(body[i : i + 1])
    assert events == [SSEEvent("message", "😀中", None, None)]
    assert _parse([body[: start + 2], body[start + 2 :]]) == events


def test_invalid_utf8_is_replaced_never_raised() -> None:
    events = _parse([b"data: a\xffb\xc3\n\n", b"data: \xe4\xb8\n\n"])
    assert [e.data for e in events] == ["a\ufffdb\ufffd", "\ufffd"]


def test_field_parsing_rules() -> None:
    body = (
        b": a comment line\n"
        b"data\n"  # no colon: field name is the whole line, value empty
        b"data:no-space\n"
        b"data:  two spaces\n"  # only one space is removed
        b"unknown: ignored\n"
        b"event:custom\n"
        b"\n"
    )
    assert _parse([body]) == [SSEEvent("custom", "\nno-space\n two spaces", None, None)]


def test_empty_data_line_is_an_event() -> None:
    assert _parse([b"data:\n\n"]) == [SSEEvent("message", "", None, None)]


def test_named_event_without_data_is_dispatched_on_purpose() -> None:
    assert _parse([b"event: ping\n\n"]) == [SSEEvent("ping", "", None, None)]


def test_blocks_without_name_or_data_are_not_dispatched() -> None:
    assert _parse([b": keep-alive\n\nid: 5\n\nretry: 100\n\n\n\n"]) == []


def test_id_persists_and_retry_is_per_block() -> None:
    parser = SSEParser()
    body = b"id: 1\ndata: a\n\ndata: b\n\nretry: 2500\ndata: c\n\nid\ndata: d\n\n"
    events = parser.feed(body)
    assert [(e.data, e.id, e.retry) for e in events] == [
        ("a", "1", None),
        ("b", "1", None),
        ("c", "1", 2500),
        ("d", "", None),
    ]
    assert parser.retry == 2500


def test_bad_id_and_retry_values_are_ignored() -> None:
    parser = SSEParser()
    events = parser.feed(b"id: 7\n\nid: a\x00b\nretry: 12a\nretry: \xef\xbc\x91\ndata: x\n\n")
    assert events == [SSEEvent("message", "x", "7", None)]
    assert parser.retry is None


def test_incomplete_event_at_end_of_stream_is_discarded() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: complete\n\ndata: cut") == [
        SSEEvent("message", "complete", None, None)
    ]
    assert parser.close() == []
    assert _parse([b"data: no blank line\n"]) == []


def test_close_resets_for_a_new_stream() -> None:
    parser = SSEParser()
    parser.feed(b"id: 3\ndata: half")
    parser.close()
    assert parser.feed(b"\xef\xbb\xbfdata: fresh\n\n") == [SSEEvent("message", "fresh", None, None)]


def test_overlong_line_raises() -> None:
    parser = SSEParser(max_line_chars=100)
    with pytest.raises(SSEError):
        parser.feed(b"data: " + b"x" * 200 + b"\n")
    parser = SSEParser(max_line_chars=100)
    parser.feed(b"data: " + b"x" * 50)
    with pytest.raises(SSEError):
        parser.feed(b"x" * 60)  # still no line end: the partial line alone is too long


def test_overlong_event_raises() -> None:
    parser = SSEParser(max_line_chars=100, max_event_chars=1000)
    with pytest.raises(SSEError):
        parser.feed(b"data: " + b"x" * 90 + b"\n" * 1 + (b"data: " + b"y" * 90 + b"\n") * 20)


def test_sse_error_is_a_value_error() -> None:
    assert issubclass(SSEError, ValueError)


def test_default_limit_allows_large_tts_events() -> None:
    audio = "QUJD" * 100_000  # 400 KB of base64 in one data line
    events = _parse([f'data: {{"event": "tts_message", "audio": "{audio}"}}\n\n'.encode()])
    assert json.loads(events[0].data)["audio"] == audio
