"""A local Dify-compatible server: the demo's backend and the tests' counterpart.

It speaks the Dify service API (`/v1/audio-to-text`, `/v1/completion-messages` and
`/v1/chat-messages` with their `/stop`, `/v1/text-to-audio`, `/v1/parameters`, `/v1/info`)
with Dify's status codes, error bodies and SSE framing, as a Text Generator, Chatbot,
Agent or Chatflow app with the features and input form its options give, recognises the
utterances it was told about, answers deterministically and speaks with
espeak-ng. `/_dev/...` endpoints let a test bench steer latency and faults.
"""

from assistant.devserver.app import build_app
from assistant.devserver.faults import Fault
from assistant.devserver.inputs import QUESTION_FORM, InputVariable
from assistant.devserver.options import DevServerOptions
from assistant.devserver.recogniser import DEFAULT_PHRASES
from assistant.devserver.replies import reply_for
from assistant.devserver.server import RunningDevServer, serve_forever, start_devserver
from assistant.devserver.state import STATE_KEY, DevServerState, RequestRecord
from assistant.devserver.synth import speech_for

__all__ = [
    "DEFAULT_PHRASES",
    "QUESTION_FORM",
    "STATE_KEY",
    "DevServerOptions",
    "DevServerState",
    "Fault",
    "InputVariable",
    "RequestRecord",
    "RunningDevServer",
    "build_app",
    "reply_for",
    "serve_forever",
    "speech_for",
    "start_devserver",
]
