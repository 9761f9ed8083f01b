"""`POST /v1/audio/transcriptions`: OpenAI's upload checks, then the dev server's recogniser.

Order of the checks: the form is read (413 as soon as the file passes 25 MB), then the
file, model, file extension, response_format (gpt-4o models take json only), temperature and
timestamp granularities are checked, then the audio is decoded (400 when it is not audio or
is shorter than 0.1 s) and recognised like `/audio-to-text` does.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, web

from assistant.devserver.middleware import record_of
from assistant.devserver.openai_api import (
    OpenAIError,
    invalid_request,
    invalid_value,
    missing_parameter,
    openai_errors,
    unrecognized_argument,
)
from assistant.devserver.openai_transcripts import (
    Transcript,
    render_transcript,
    stream_transcript,
)
from assistant.devserver.state import STATE_KEY
from assistant.devserver.transcribe import (
    READ_CHUNK,
    decode_off_loop,
    read_text_field,
    recognise_upload,
)
from assistant.devserver.uploads import DecodedAudio, UndecodableAudio

FILE_EXTENSIONS = ("flac", "mp3", "mp4", "mpeg", "mpga", "m4a", "ogg", "wav", "webm")
MAX_FILE_BYTES = 25 * 1024 * 1024
MIN_AUDIO_S = 0.1
RESPONSE_FORMATS = ("json", "text", "srt", "verbose_json", "vtt", "diarized_json")
_GPT4O_FORMATS = ("json",)
_DIARIZE_FORMATS = ("json", "text", "diarized_json")
_WHISPER_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")
_GRANULARITIES = ("word", "segment")
_SCALAR_FIELDS = frozenset(
    {"model", "language", "prompt", "response_format", "temperature", "stream", "chunking_strategy"}
)
_ARRAY_FIELDS = frozenset(
    {
        "include",
        "timestamp_granularities",
        "languages",
        "keywords",
        "known_speaker_names",
        "known_speaker_references",
    }
)
_BAD_FORMAT_MESSAGE = f"Invalid file format. Supported formats: {list(FILE_EXTENSIONS)}"


@dataclass(slots=True)
class _Form:
    file: bytes | None = None
    filename: str = ""
    fields: dict[str, list[str]] = field(default_factory=dict)

    def value(self, name: str) -> str | None:
        values = self.fields.get(name)
        return values[0] if values else None


@dataclass(frozen=True, slots=True)
class _Request:
    audio: bytes
    model: str
    extension: str
    response_format: str
    language: str
    temperature: float
    granularities: tuple[str, ...]
    stream: bool


async def _read_file(part: BodyPartReader, details: dict[str, Any]) -> bytes:
    data = bytearray()
    while chunk := await part.read_chunk(READ_CHUNK):
        data += chunk
        # Refused as soon as the limit is passed instead of buffering the rest.
        if len(data) > MAX_FILE_BYTES:
            details["upload_bytes"] = len(data)
            raise OpenAIError(
                413,
                f"Maximum content size limit ({MAX_FILE_BYTES}) exceeded ({len(data)} bytes read)",
                "server_error",
            )
    return bytes(data)


async def _read_form(request: web.Request) -> _Form:
    if not request.content_type.lower().startswith("multipart/form-data"):
        raise invalid_request("The request must be multipart/form-data.")
    details = record_of(request).details
    form = _Form()
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise invalid_request("Nested multipart bodies are not supported.")
            if part.name == "file" and form.file is None:
                form.filename = part.filename or ""
                details.update(
                    filename=part.filename, content_type=part.headers.get("Content-Type")
                )
                form.file = await _read_file(part, details)
                continue
            name = (part.name or "").removesuffix("[]")
            if name not in _SCALAR_FIELDS | _ARRAY_FIELDS:
                raise unrecognized_argument(part.name or "")
            form.fields.setdefault(name, []).append(await read_text_field(part))
    except (ValueError, AssertionError):
        # A malformed multipart body (no boundary, broken framing).
        raise invalid_request("Could not parse the multipart form.") from None
    return form


def _formats_for(model: str) -> tuple[str, ...]:
    if model.startswith("gpt-4o") and "diarize" in model:
        return _DIARIZE_FORMATS
    if model.startswith("gpt-4o"):
        return _GPT4O_FORMATS
    return _WHISPER_FORMATS


def _validate(form: _Form) -> _Request:
    data = form.file
    if data is None:
        raise missing_parameter("file")
    model = form.value("model")
    if not model:
        raise missing_parameter("model")
    _stem, dot, extension = form.filename.rpartition(".")
    extension = extension.lower()
    if not dot or extension not in FILE_EXTENSIONS:
        raise invalid_request(_BAD_FORMAT_MESSAGE, "file", "invalid_value")
    response_format = form.value("response_format") or "json"
    if response_format not in RESPONSE_FORMATS:
        raise invalid_value("response_format", response_format, RESPONSE_FORMATS)
    allowed = _formats_for(model)
    if response_format not in allowed:
        raise invalid_request(
            f"response_format '{response_format}' is not compatible with model '{model}'. "
            f"Use {' or '.join(repr(f) for f in allowed)} instead.",
            "response_format",
            "unsupported_value",
        )
    try:
        temperature = float(form.value("temperature") or 0)
    except ValueError:
        temperature = math.nan
    if not 0 <= temperature <= 1:
        raise invalid_request(
            "Invalid 'temperature': must be a number between 0 and 1.",
            "temperature",
            "invalid_value",
        )
    granularities = tuple(form.fields.get("timestamp_granularities", ()))
    for granularity in granularities:
        if granularity not in _GRANULARITIES:
            raise invalid_value("timestamp_granularities", granularity, _GRANULARITIES)
    if granularities and response_format != "verbose_json":
        raise invalid_request(
            "timestamp_granularities requires response_format 'verbose_json'.",
            "timestamp_granularities",
            "invalid_value",
        )
    # stream is ignored for whisper-1, as OpenAI documents.
    stream = (form.value("stream") or "").lower() == "true" and model != "whisper-1"
    language = form.value("language") or ""
    return _Request(
        data, model, extension, response_format, language, temperature, granularities, stream
    )


async def _decode(data: bytes, extension: str) -> DecodedAudio:
    try:
        audio = await decode_off_loop(
            data, "audio/wav" if extension == "wav" else "audio/" + extension
        )
    except UndecodableAudio as exc:
        raise invalid_request(
            f"Audio file might be corrupted or unsupported: {exc}", "file", "invalid_value"
        ) from None
    if audio.duration < MIN_AUDIO_S:
        raise invalid_request("Minimum audio length is 0.1 seconds", "file", "audio_too_short")
    return audio


@openai_errors
async def audio_transcriptions(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    record = record_of(request)
    form = await _read_form(request)
    uploaded_at = asyncio.get_running_loop().time()
    record.details.update(upload_bytes=len(form.file or b""), fields=form.fields)
    asked = _validate(form)
    audio = await _decode(asked.audio, asked.extension)
    recognition = await recognise_upload(state, record, audio, uploaded_at)
    transcript = Transcript(recognition.text, audio.duration, asked.model)
    if asked.stream:
        return await stream_transcript(request, transcript)
    return render_transcript(
        transcript, asked.response_format, asked.language, asked.temperature, asked.granularities
    )
