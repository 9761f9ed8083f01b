"""Check every request the dev server receives, and every JSON body it answers, against the
upstream API documents.

`ContractChecker` loads the documents in `tests/contracts/` once; `checker.middleware(sink)`
is an aiohttp middleware that validates each request with a document before the dev server
answers it, and the answer when it is JSON (a blocking answer, /parameters, /info, an error
envelope), and appends a `Violation` to `sink` for each that does not validate. The request
is answered as usual either way: a violation fails the test (see conftest.py), not the
request. Answers a fault armed on purpose (`Fault`) are not checked: they are wrong by
design. Streamed bodies (SSE, audio) are not checked here.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, MutableSequence
from dataclasses import dataclass
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import yaml
from aiohttp import web
from aiohttp.streams import StreamReader
from aiohttp.typedefs import Handler, Middleware
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from jsonschema_path import SchemaPath
from openapi_core import Config, OpenAPI
from openapi_core.contrib.aiohttp import AIOHTTPOpenAPIWebRequest, AIOHTTPOpenAPIWebResponse
from openapi_core.templating.paths.exceptions import PathError
from openapi_core.templating.paths.finders import APICallPathFinder
from openapi_core.templating.responses.exceptions import ResponseNotFound
from openapi_core.validation.request.exceptions import RequestBodyValidationError
from openapi_core.validation.schemas import (
    oas30_write_schema_validators_factory,
    oas31_schema_validators_factory,
)
from openapi_core.validation.schemas.exceptions import InvalidSchemaValue

from assistant.devserver.middleware import RECORD_KEY

CONTRACTS_DIR = Path(__file__).parent / "contracts"
"""The documents, copied from ../shared/reference/ (see contracts/README.md)."""

DIFY_COMPLETION = "dify_openapi_completion.json"
DIFY_CHAT = "dify_openapi_chat.json"
OPENAI_AUDIO = "openai_audio_openapi.yaml"
CONVAI_TTS = "convai_tts.schema.json"
DIFY_ERROR = "dify_error.schema.json"
DIFY_DOCUMENTS = (DIFY_COMPLETION, DIFY_CHAT)
UPSTREAM_DOCUMENTS = (DIFY_COMPLETION, DIFY_CHAT, OPENAI_AUDIO)
"""The byte-for-byte copies of ../shared/reference/ documents."""

API_BASE = "/v1"
"""The dev server's (and the documents' replaced) server URL."""

CONVAI_KEY_HEADER = "CONVAI-API-KEY"
FORM_DATA = "multipart/form-data"

_OPENAPI_ROUTES: tuple[tuple[str, str], ...] = (
    (f"{API_BASE}/completion-messages", DIFY_COMPLETION),
    (f"{API_BASE}/audio-to-text", DIFY_COMPLETION),
    (f"{API_BASE}/text-to-audio", DIFY_COMPLETION),
    (f"{API_BASE}/parameters", DIFY_COMPLETION),
    (f"{API_BASE}/info", DIFY_COMPLETION),
    (f"{API_BASE}/chat-messages", DIFY_CHAT),
    (f"{API_BASE}/audio/speech", OPENAI_AUDIO),
    (f"{API_BASE}/audio/transcriptions", OPENAI_AUDIO),
)
"""(path, document): the path itself and everything below it (e.g. `/{task_id}/stop`)."""


_FORM_CONTROL_WRAPPERS = {
    "TextInputControlWrapper": "text-input",
    "ParagraphControlWrapper": "paragraph",
    "SelectControlWrapper": "select",
}
"""`UserInputFormItem` is `oneOf` these wrappers, none of which requires its one property:
every form item then matches all three and no non-empty `user_input_form` validates (the
document's own example included). Each wrapper is given `required: [its property]` in memory,
which is what the titles ("Text Input", "Paragraph", "Select") mean; the copies stay
byte-for-byte."""

_TRANSCRIPTION_ANSWER = ("paths", "/audio/transcriptions", "post", "responses", "200", "content")
"""The OpenAI slice's transcription answer is `oneOf` Json, VerboseJson and DiarizedJson,
which share their required fields: a `verbose_json` answer (with OpenAI's `task` in it)
matches all three, so none would validate. It is loaded as `anyOf` (in memory): a `json`
answer is checked in full, the others as far as one of the three schemas goes."""

_NULL_BODY_ANSWERS = {f"{API_BASE}/text-to-audio"}
"""Where Dify answers `200 null` outside the document (API_NOTES.md: an unknown or another
user's message_id; the service returns None)."""


@dataclass(frozen=True, slots=True)
class Violation:
    """One request, or one answer, that does not match its document."""

    method: str
    path: str
    document: str
    error: str
    kind: str = "request"
    """`request`, or `response`: the dev server's answer broke the document."""

    def __str__(self) -> str:
        what = "" if self.kind == "request" else ", its answer"
        return f"{self.method} {self.path}{what} (against {self.document}):\n{self.error}"


class _FullContentTypeRequest(AIOHTTPOpenAPIWebRequest):
    """openapi-core's aiohttp request, with the whole Content-Type header.

    The stock adapter returns `request.content_type`, which drops the parameters; without
    the multipart `boundary` openapi-core cannot split a form and validation crashes.
    """

    @property
    def content_type(self) -> str:
        return self.request.headers.get("Content-Type", "")


def _load_openapi(path: Path, *, validate_document: bool) -> OpenAPI:
    text = path.read_text(encoding="utf-8")
    document: dict[str, Any] = yaml.safe_load(text) if path.suffix == ".yaml" else json.loads(text)
    # Upstream's servers are https://api.dify.ai/v1 and https://api.openai.com/v1; the dev
    # server answers the same paths under /v1 on any host.
    document["servers"] = [{"url": API_BASE}]
    schemas = document.get("components", {}).get("schemas", {})
    for name, control in _FORM_CONTROL_WRAPPERS.items():
        if name in schemas:
            schemas[name]["required"] = [control]
    content: Any = document
    for key in _TRANSCRIPTION_ANSWER:
        content = content.get(key, {}) if isinstance(content, dict) else {}
    answer = content.get("application/json", {}).get("schema", {})
    if "oneOf" in answer:
        answer["anyOf"] = answer.pop("oneOf")
    if validate_document:
        return OpenAPI.from_dict(document)
    return OpenAPI.from_dict(document, config=Config(spec_validator_cls=None))


def _shorten(text: str, limit: int = 300) -> str:
    """One line of an error, without kilobytes of an uploaded file in it."""
    if len(text) <= limit:
        return text
    return f"{text[: limit // 2]} [...{len(text) - limit} characters...] {text[-limit // 2 :]}"


def _describe(exc: BaseException) -> str:
    """The error and its causes, with every schema error and where in the body it is."""
    lines: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        lines.append(_shorten(f"{type(current).__name__}: {current}"))
        schema_errors: Iterable[ValidationError] = getattr(current, "schema_errors", ()) or ()
        for error in schema_errors:
            where = "/".join(str(part) for part in error.absolute_path) or "(body)"
            lines.append(_shorten(f"  - at {where}: {error.message}"))
        current = current.__cause__ or current.__context__
    return "\n".join(lines)


class ContractChecker:
    """The API documents, loaded once, and a request validator over them."""

    def __init__(self, directory: Path = CONTRACTS_DIR) -> None:
        self.directory = directory
        self._openapi: dict[str, OpenAPI] = {
            DIFY_COMPLETION: _load_openapi(directory / DIFY_COMPLETION, validate_document=True),
            DIFY_CHAT: _load_openapi(directory / DIFY_CHAT, validate_document=True),
            # Upstream's slice gives a string enum (TranscriptionInclude) the default []: the
            # document itself does not validate, the request schemas are fine.
            OPENAI_AUDIO: _load_openapi(directory / OPENAI_AUDIO, validate_document=False),
        }
        self._convai = _json_schema(directory / CONVAI_TTS)
        self._dify_error = _json_schema(directory / DIFY_ERROR)

    @staticmethod
    def document_for(method: str, path: str) -> str | None:
        """The document a request is checked against, or None for an undocumented one."""
        if path == "/tts/" and method.upper() == "POST":
            return CONVAI_TTS
        for prefix, document in _OPENAPI_ROUTES:
            if path == prefix or path.startswith(prefix + "/"):
                return document
        return None

    def check(self, request: web.Request, body: bytes) -> Violation | None:
        """Validate one received request whose body is `body`; None if it conforms."""
        document = self.document_for(request.method, request.path)
        if document is None:
            return None
        try:
            if document == CONVAI_TTS:
                error = self._check_convai(request, body)
            else:
                error = self._check_openapi(self._openapi[document], request, body)
        except Exception as exc:  # a crash of the validator is a finding too, not a 500
            error = f"the check itself failed:\n{_describe(exc)}"
        if error is None:
            return None
        return Violation(request.method, request.path_qs, document, error)

    @staticmethod
    def _check_openapi(openapi: OpenAPI, request: web.Request, body: bytes) -> str | None:
        wrapped = _FullContentTypeRequest(request, body=body or None)
        errors: list[BaseException] = list(openapi.unmarshal_request(wrapped).errors)
        form_schema = _form_schema(openapi, wrapped) if body else None
        if form_schema is not None:
            # openapi-core's own form decoding gives every part without a `type` as bytes,
            # every absent array as [], never casts "0.2" to a number and drops unknown
            # parts: its verdict on the body is replaced by _check_form's.
            errors = [e for e in errors if not isinstance(e, RequestBodyValidationError)]
            errors.extend(_check_form(openapi, form_schema, body, wrapped.content_type))
        if not errors:
            return None
        return "\n".join(_describe(error) for error in errors)

    def check_response(
        self, request: web.Request, response: web.StreamResponse
    ) -> Violation | None:
        """Validate the JSON body answered to a documented request; None if it conforms or
        is not checked (a stream, not JSON, the Convai API, a faulted answer)."""
        document = self.document_for(request.method, request.path)
        if document not in self._openapi or not _checked_answer(request, response):
            return None
        assert isinstance(response, web.Response)
        try:
            error = self._check_answer(document, request, response)
        except Exception as exc:  # a crash of the validator is a finding too
            error = f"the check itself failed:\n{_describe(exc)}"
        if error is None:
            return None
        return Violation(
            request.method,
            request.path_qs,
            document,
            f"HTTP {response.status}: {error}",
            "response",
        )

    def _check_answer(
        self, document: str, request: web.Request, response: web.Response
    ) -> str | None:
        body = response.body if isinstance(response.body, bytes) else b""
        problems: list[str] = []
        if document in DIFY_DOCUMENTS and response.status >= 400:
            # The documents give error answers examples only: Dify's envelope is checked
            # against dify_error.schema.json, and its `status` against the HTTP status.
            envelope = json.loads(body)
            problems += [
                f"at {'/'.join(map(str, e.absolute_path)) or '(body)'}: {e.message}"
                for e in sorted(self._dify_error.iter_errors(envelope), key=str)
            ]
            if isinstance(envelope, dict) and envelope.get("status") != response.status:
                problems.append(f"`status` {envelope.get('status')!r} is not {response.status}")
        if (
            request.path in _NULL_BODY_ANSWERS
            and response.status == 200
            and body.strip() == b"null"
        ):
            return "\n".join(problems) or None
        wrapped = _FullContentTypeRequest(request, body=None)
        result = self._openapi[document].unmarshal_response(
            wrapped, AIOHTTPOpenAPIWebResponse(response)
        )
        for error in result.errors:
            if isinstance(error, ResponseNotFound):
                continue  # an undocumented status: only the envelope check applies
            problems.append(_describe(error))
        return "\n".join(problems) or None

    def _check_convai(self, request: web.Request, body: bytes) -> str | None:
        problems: list[str] = []
        if not request.headers.get(CONVAI_KEY_HEADER):
            problems.append(f"the {CONVAI_KEY_HEADER} header is missing or empty")
        if request.content_type != "application/json":
            problems.append(
                f"Content-Type is {request.headers.get('Content-Type')!r}, not application/json"
            )
        try:
            payload = json.loads(body)
        except ValueError as exc:
            problems.append(f"the body is not JSON: {exc}")
        else:
            for error in sorted(self._convai.iter_errors(payload), key=str):
                where = "/".join(str(part) for part in error.absolute_path) or "(body)"
                problems.append(f"at {where}: {error.message}")
        return "\n".join(problems) or None

    def middleware(self, sink: MutableSequence[Violation]) -> Middleware:
        """An aiohttp middleware that checks each documented request and records violations.

        Put it first in the chain: it must see the request exactly as the client sent it.
        """

        @web.middleware
        async def contract_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
            if self.document_for(request.method, request.path) is None:
                return await handler(request)
            body = await _read_and_replay(request)
            violation = self.check(request, body)
            if violation is not None:
                sink.append(violation)
            response = await handler(request)
            answered = self.check_response(request, response)
            if answered is not None:
                sink.append(answered)
            return response

        return contract_middleware


def _json_schema(path: Path) -> Draft202012Validator:
    schema = json.loads(path.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _checked_answer(request: web.Request, response: web.StreamResponse) -> bool:
    """A whole JSON body the dev server produced itself (not one a fault armed)."""
    if not isinstance(response, web.Response) or response.content_type != "application/json":
        return False
    record = request.get(RECORD_KEY)
    return record is None or not record.details.get("fault")


class _FormError(ValueError):
    """A multipart body that cannot be read as a form."""


def _form_schema(openapi: OpenAPI, request: _FullContentTypeRequest) -> SchemaPath | None:
    """The request's multipart/form-data body schema, if it sends one to such an operation."""
    if request.request.content_type != FORM_DATA:
        return None
    finder = APICallPathFinder(openapi.spec)
    try:
        found = finder.find(request.method, urljoin(request.host_url, request.path))
    except PathError:
        return None  # reported by openapi-core already
    content = found.operation / "requestBody" / "content"
    if FORM_DATA not in content or "schema" not in content / FORM_DATA:
        return None
    return content / FORM_DATA / "schema"


@dataclass(frozen=True, slots=True)
class _FormPart:
    name: str
    text: str
    """A file's octets as latin-1 text: JSON Schema has no bytes, OAS models a file as a
    string (the OAS 3.1 validator refuses Python bytes)."""
    is_file: bool


def _parse_form(body: bytes, content_type: str) -> list[_FormPart]:
    """The parts of a multipart body; a part with a filename is a file."""
    head = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1")
    message = BytesParser(policy=policy.HTTP).parsebytes(head + body)
    if not message.is_multipart() or message.defects:
        raise _FormError(f"not a readable multipart body ({message.defects or 'no parts'})")
    parts: list[_FormPart] = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            raise _FormError("a part has no name in its Content-Disposition")
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        if part.get_filename() is None:
            charset = part.get_content_charset() or "utf-8"
            parts.append(_FormPart(name, data.decode(charset, "replace"), is_file=False))
        else:
            parts.append(_FormPart(name, data.decode("latin-1"), is_file=True))
    return parts


def _types(schema: SchemaPath | None) -> set[str]:
    """The JSON types a schema allows, looking one level into anyOf/oneOf."""
    if schema is None:
        return set()
    found: set[str] = set()
    if "type" in schema:
        declared = (schema / "type").read_value()
        found.update([declared] if isinstance(declared, str) else declared)
    for combinator in ("anyOf", "oneOf"):
        if combinator in schema:
            for branch in schema / combinator:
                if "type" in branch:
                    declared = (branch / "type").read_value()
                    found.update([declared] if isinstance(declared, str) else declared)
    return found


def _cast(text: str, types: set[str]) -> Any:
    """A form field's text as the schema's type, the way a server reads it; else unchanged."""
    if "integer" in types:
        try:
            return int(text)
        except ValueError:
            pass
    if "number" in types:
        try:
            return float(text)
        except ValueError:
            pass
    if "boolean" in types and text in ("true", "false"):
        return text == "true"
    return text


def _form_value(schema: SchemaPath, parts: list[_FormPart]) -> dict[str, Any]:
    """The form as the object its schema describes.

    `name[]` parts (how openai-python sends arrays) and repeated parts of an array property
    become a list; a repeated part of any other property becomes a list too, so it fails.
    """
    properties = schema / "properties" if "properties" in schema else None
    value: dict[str, Any] = {}
    repeated: set[str] = set()
    for part in parts:
        name = part.name.removesuffix("[]")
        prop = properties / name if properties is not None and name in properties else None
        types = _types(prop)
        is_array = part.name.endswith("[]") or "array" in types
        if is_array and prop is not None and "items" in prop:
            types = _types(prop / "items")
        data = part.text if part.is_file else _cast(part.text, types)
        if is_array:
            value.setdefault(name, []).append(data)
        elif name in value:
            if name not in repeated:
                value[name] = [value[name]]
                repeated.add(name)
            value[name].append(data)
        else:
            value[name] = data
    return value


def _check_form(
    openapi: OpenAPI, schema: SchemaPath, body: bytes, content_type: str
) -> list[BaseException]:
    """The body's errors against its multipart/form-data schema."""
    try:
        value = _form_value(schema, _parse_form(body, content_type))
    except _FormError as exc:
        return [exc]
    version = (openapi.spec / "openapi").read_str()
    factory = (
        oas30_write_schema_validators_factory
        if version.startswith("3.0")
        else oas31_schema_validators_factory
    )
    try:
        factory.create(openapi.spec, schema).validate(value)
    except InvalidSchemaValue as exc:
        return [exc]
    return []


async def _read_and_replay(request: web.Request) -> bytes:
    """The whole body, leaving the request readable again by the handler.

    `request.read()` would cache the body for `read()`/`json()` only: the upload handlers
    stream `request.multipart()` from the payload, which would then be empty. So the body
    is read off the payload and a fresh stream holding the same bytes takes its place; the
    handler's own size limits (client_max_size, the 30 MB upload cut) still apply to it.
    """
    # Private attributes: aiohttp has no public way to hand a handler a re-readable body.
    # `request.content` is cached (reify) on first use, so the payload is read directly and
    # the cached value dropped; another middleware may have replayed the body already.
    body = await request._payload.read()
    # A limit above the body's size: feeding it must never pause the connection's reading.
    replay = StreamReader(
        request.protocol, limit=max(2**16, len(body) + 1), loop=asyncio.get_running_loop()
    )
    if body:
        replay.feed_data(body)
    replay.feed_eof()
    request._payload = replay
    request._cache.pop("content", None)
    return body
