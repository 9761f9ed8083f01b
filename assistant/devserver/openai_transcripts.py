"""A transcript as `/v1/audio/transcriptions` answers it: each response_format, or SSE events.

The recogniser knows no timing inside a clip, so the timed formats (srt, vtt, verbose_json,
diarized_json) have one segment spanning the whole clip, and words spread evenly over it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from assistant.devserver import replies
from assistant.devserver.fault_responses import write_body
from assistant.devserver.middleware import record_of
from assistant.devserver.openai_api import sse_event, start_sse
from assistant.devserver.rendering import json_response

_AUDIO_TOKENS_PER_S = 10
"""For token `usage`: a made-up but steady audio token rate."""


@dataclass(frozen=True, slots=True)
class Transcript:
    text: str
    duration: float
    """Seconds of audio uploaded."""
    model: str

    def usage(self) -> dict[str, Any]:
        """whisper-1 bills by duration, the gpt-4o models by tokens."""
        if not self.model.startswith("gpt-"):
            return {"type": "duration", "seconds": math.ceil(self.duration)}
        audio_tokens = math.ceil(self.duration * _AUDIO_TOKENS_PER_S)
        output_tokens = len(replies.tokens(self.text))
        return {
            "type": "tokens",
            "input_tokens": audio_tokens,
            "input_token_details": {"text_tokens": 0, "audio_tokens": audio_tokens},
            "output_tokens": output_tokens,
            "total_tokens": audio_tokens + output_tokens,
        }


async def stream_transcript(request: web.Request, transcript: Transcript) -> web.StreamResponse:
    """`transcript.text.delta` events word by word, then `transcript.text.done`."""
    response = await start_sse(request)
    text = transcript.text
    try:
        for token in replies.tokens(text):
            delta = {"type": "transcript.text.delta", "delta": token}
            await write_body(request, response, sse_event(delta))
        done = {"type": "transcript.text.done", "text": text, "usage": transcript.usage()}
        await write_body(request, response, sse_event(done))
        await response.write_eof()
    except ConnectionResetError:
        record_of(request).details["disconnected"] = True
    return response


def render_transcript(
    transcript: Transcript,
    response_format: str,
    language: str,
    temperature: float,
    granularities: tuple[str, ...],
) -> web.Response:
    """The answer in `response_format` (already checked against the model)."""
    text, duration = transcript.text, round(transcript.duration, 3)
    if response_format == "json":
        return json_response({"text": text, "usage": transcript.usage()})
    if response_format == "text":
        return web.Response(text=text + "\n", content_type="text/plain")
    if response_format == "srt":
        cue = f"1\n{_timestamp(0, ',')} --> {_timestamp(duration, ',')}\n{text}\n\n"
        return web.Response(text=cue, content_type="text/plain")
    if response_format == "vtt":
        cue = f"WEBVTT\n\n{_timestamp(0, '.')} --> {_timestamp(duration, '.')}\n{text}\n\n"
        return web.Response(text=cue, content_type="text/plain")
    answer: dict[str, Any] = {"task": "transcribe", "duration": duration, "text": text}
    if response_format == "diarized_json":
        segment = {"type": "transcript.text.segment", "id": "seg_001", "start": 0.0}
        segment.update(end=duration, text=text, speaker="A")
        answer.update(segments=[segment], usage=transcript.usage())
        return json_response(answer)
    # verbose_json; segments are what OpenAI gives when no granularity is asked for.
    answer["language"] = "english" if language in ("", "en") else language
    if not granularities or "segment" in granularities:
        answer["segments"] = [_segment(text, duration, temperature)]
    if "word" in granularities:
        answer["words"] = _words(text, duration)
    answer["usage"] = {"type": "duration", "seconds": math.ceil(transcript.duration)}
    return json_response(answer)


def _timestamp(seconds: float, separator: str) -> str:
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    return f"{hours:02d}:{minutes:02d}:{millis // 1000:02d}{separator}{millis % 1000:03d}"


def _segment(text: str, duration: float, temperature: float) -> dict[str, Any]:
    return {
        "id": 0,
        "seek": 0,
        "start": 0.0,
        "end": duration,
        "text": " " + text,
        "tokens": [],
        "temperature": temperature,
        "avg_logprob": -0.2,
        "compression_ratio": 1.0,
        "no_speech_prob": 0.0,
    }


def _words(text: str, duration: float) -> list[dict[str, Any]]:
    words = text.split()
    step = duration / len(words) if words else 0.0
    return [
        {"word": word.strip(".,!?;:"), "start": round(i * step, 3), "end": round((i + 1) * step, 3)}
        for i, word in enumerate(words)
    ]
