"""A local Dify-compatible server: the demo's backend and the tests' counterpart.

It speaks the Dify Completion App API (`/v1/audio-to-text`,
`/v1/completion-messages`, its `/stop`, `/v1/text-to-audio`, `/v1/parameters`)
with Dify's status codes, error bodies and SSE framing, recognises the
utterances it was told about, answers deterministically and speaks with
espeak-ng. `/_dev/...` endpoints let a test bench steer latency and faults.
"""

from assistant.devserver.app import build_app
from assistant.devserver.faults import Fault
from assistant.devserver.options import DevServerOptions
from assistant.devserver.recogniser import DEFAULT_PHRASES
from assistant.devserver.replies import reply_for
from assistant.devserver.server import RunningDevServer, serve_forever, start_devserver
from assistant.devserver.state import STATE_KEY, DevServerState, RequestRecord
from assistant.devserver.synth import speech_for

__all__ = [
    "DEFAULT_PHRASES",
    "STATE_KEY",
    "DevServerOptions",
    "DevServerState",
    "Fault",
    "RequestRecord",
    "RunningDevServer",
    "build_app",
    "reply_for",
    "serve_forever",
    "speech_for",
    "start_devserver",
]
