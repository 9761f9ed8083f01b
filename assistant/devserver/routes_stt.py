"""`POST /audio-to-text`: Dify's upload checks, in Dify's order, then the recogniser."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiohttp import BodyPartReader, web

from assistant.devserver.errors import DifyError, bad_request
from assistant.devserver.middleware import record_of
from assistant.devserver.rendering import json_response
from assistant.devserver.state import STATE_KEY
from assistant.devserver.transcribe import (
    READ_CHUNK,
    decode_off_loop,
    read_text_field,
    recognise_upload,
)
from assistant.devserver.uploads import UndecodableAudio

AUDIO_EXTENSIONS = ("mp3", "m4a", "wav", "amr", "mpga")
"""Dify's api/constants AUDIO_EXTENSIONS (it also lists the upper-case spellings)."""
_MIME_ALIASES = {"audio/x-m4a": "audio/m4a"}
FILE_SIZE_LIMIT = 30 * 1024 * 1024
STT_DISABLED_MESSAGE = "Speech to text is disabled."
"""The newest Dify's `speech_to_text_disabled` (older ones: invalid_param "Speech to text is
not enabled")."""


@dataclass(frozen=True, slots=True)
class _Upload:
    data: bytes
    mime_type: str
    """Normalised: lower case, parameters dropped, aliases mapped."""
    user: str | None


def _mime_type(content_type: str | None) -> str:
    # werkzeug's FileStorage.mimetype: no parameters, always lower case; that
    # lower-casing is why Dify's upper-case entries ("audio/WAV") are accepted.
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    return _MIME_ALIASES.get(mime, mime)


async def _read_file_part(part: BodyPartReader, details: dict[str, Any]) -> tuple[bytes, str]:
    mime = _mime_type(part.headers.get("Content-Type"))
    details.update(content_type=part.headers.get("Content-Type"), filename=part.filename)
    if mime not in {f"audio/{ext}" for ext in AUDIO_EXTENSIONS}:
        raise DifyError(415, "unsupported_audio_type", "Audio type not allowed.")
    data = bytearray()
    while chunk := await part.read_chunk(READ_CHUNK):
        data += chunk
        # Refuse as soon as the limit is passed instead of buffering the rest.
        if len(data) > FILE_SIZE_LIMIT:
            # Dify's AudioTooLargeError template is "Audio size exceeded. {message}",
            # but the controller passes the service's text as the whole description,
            # so the body says only this (the current service spec's example agrees).
            details["upload_bytes"] = len(data)
            raise DifyError(413, "audio_too_large", "Audio size larger than 30 mb")
    return bytes(data), mime


async def _skip_file_part(part: BodyPartReader) -> tuple[bytes, str]:
    await part.release()
    return b"", ""


async def _read_upload(request: web.Request, check_file: bool = True) -> _Upload:
    if not request.content_type.lower().startswith("multipart/form-data"):
        raise bad_request()  # request.files["file"] on a non-form body: a KeyError
    details = record_of(request).details
    file: tuple[bytes, str] | None = None
    user: str | None = None
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                continue
            # werkzeug files are the parts with a filename; the first "file" wins.
            if part.name == "file" and part.filename is not None and file is None:
                read = _read_file_part(part, details) if check_file else _skip_file_part(part)
                file = await read
            elif part.name == "user" and part.filename is None and user is None:
                user = await read_text_field(part)
            else:
                await part.release()
    except (ValueError, AssertionError):
        # A malformed multipart body (no boundary, broken framing).
        raise bad_request() from None
    if file is None:
        # Dify reads request.files["file"]; the KeyError becomes a plain 400.
        raise bad_request()
    return _Upload(file[0], file[1], user)


async def audio_to_text(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    record = record_of(request)
    if not state.options.speech_to_text:
        # Dify reads the form first (no file part is still a plain 400), then checks the
        # app's feature before the file's type and size.
        await _read_upload(request, check_file=False)
        raise DifyError(400, "speech_to_text_disabled", STT_DISABLED_MESSAGE)
    upload = await _read_upload(request)
    uploaded_at = asyncio.get_running_loop().time()
    # content_type stays as the client sent it: that is what a client bug looks like.
    record.details.update(upload_bytes=len(upload.data), user=upload.user)
    if not upload.data:
        raise DifyError(400, "no_audio_uploaded", "Please upload your audio.")
    try:
        audio = await decode_off_loop(upload.data, upload.mime_type)
    except UndecodableAudio as exc:
        raise DifyError(400, "completion_request_error", str(exc)) from None
    recognition = await recognise_upload(state, record, audio, uploaded_at)
    return json_response({"text": recognition.text})
