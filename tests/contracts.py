"""Check every request the dev server receives against the upstream API documents.

`ContractChecker` loads the documents in `tests/contracts/` once; `checker.middleware(sink)`
is an aiohttp middleware that validates each request with a document before the dev server
answers it and appends a `Violation` to `sink` when it does not validate. The request is
answered as usual either way: a violation fails the test (see conftest.py), not the request.
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
from openapi_core.contrib.aiohttp import AIOHTTPOpenAPIWebRequest
from openapi_core.templating.paths.exceptions import PathError
from openapi_core.templating.paths.finders import APICallPathFinder
from openapi_core.validation.request.exceptions import RequestBodyValidationError
from openapi_core.validation.schemas import (
    oas30_write_schema_validators_factory,
    oas31_schema_validators_factory,
)
from openapi_core.validation.schemas.exceptions import InvalidSchemaValue

CONTRACTS_DIR = Path(__file__).parent / "contracts"
"""The documents, copied from ../shared/reference/ (see contracts/README.md)."""

DIFY_COMPLETION = "dify_openapi_completion.json"
DIFY_CHAT = "dify_openapi_chat.json"
OPENAI_AUDIO = "openai_audio_openapi.yaml"
CONVAI_TTS = "convai_tts.schema.json"
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
    (f"{API_BASE}/chat-messages", DIFY_CHAT),
    (f"{API_BASE}/audio/speech", OPENAI_AUDIO),
    (f"{API_BASE}/audio/transcriptions", OPENAI_AUDIO),
)
"""(path, document): the path itself and everything below it (e.g. `/{task_id}/stop`)."""


@dataclass(frozen=True, slots=True)
class Violation:
    """One request that does not match its document."""

    method: str
    path: str
    document: str
    error: str

    def __str__(self) -> str:
        return f"{self.method} {self.path} (against {self.document}):\n{self.error}"


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
        schema = json.loads((directory / CONVAI_TTS).read_text(encoding="utf-8"))
        Draft202012Validator.check_schema(schema)
        self._convai = Draft202012Validator(schema)

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
            return await handler(request)

        return contract_middleware


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
