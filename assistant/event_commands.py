"""Commands that come in on the event socket: checked, then handed to the loop's controls.

One JSON object per message: `{"command": <name>, ...fields, "id"?: <anything>}`. Every
message gets exactly one reply, `{"kind": "ok", ...}` or `{"kind": "command_error", "code":
..., "field"?: ..., "message": ...}` (named apart from the `error` event, which is the
assistant failing, not a client's typo), echoing `command` and `id` where known. Nothing a
client sends can raise into the loop: a control that fails is logged and answered
`failed`.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 * 1024
"""Longest command message; longer ones are answered `too_large` and ignored."""
MAX_SAY_CHARS = 2000
"""Longest text for `say`: an announcement, not a book."""
MAX_VOLUME_STEPS = 20


class CommandControls(Protocol):
    """What the loop already offers (assistant.loop.VoiceLoop; `by` names the source)."""

    def cancel(self, by: str = "button") -> None: ...
    def toggle_mute(self) -> None: ...
    def set_muted(self, muted: bool) -> None: ...
    def volume_step(self, steps: int) -> None: ...
    def reset_conversation(self, by: str = "button") -> None: ...


@runtime_checkable
class PushToTalk(Protocol):
    """The on-screen talk button (assistant.loop.VoiceLoop has it)."""

    def talk_start(self) -> None:
        """As a press of the talk button (in every trigger mode; during an answer: barge-in)."""

    def talk_stop(self) -> None:
        """As its release."""


@runtime_checkable
class Announcer(Protocol):
    """Speaking a text now (assistant.loop.VoiceLoop has it)."""

    def say(self, text: str, *, interrupt: bool = False) -> None:
        """Speak `text` through the configured TTS chain: after the answer playing (queued),
        or at once, cutting it off, when `interrupt`."""


class VolumeLevel(Protocol):
    """The output level (assistant.volume.Volume), read to turn a `db` into steps."""

    @property
    def db(self) -> float: ...
    @property
    def step_db(self) -> float: ...


class Rejected(Exception):
    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


Reply = dict[str, Any]
_Handler = Callable[[dict[str, Any]], None]


@dataclass(frozen=True, slots=True)
class _Command:
    fields: frozenset[str]
    handle: _Handler


class Commands:
    """Parses, checks and runs one command message at a time."""

    def __init__(
        self,
        controls: CommandControls | None,
        volume: VolumeLevel | None = None,
    ) -> None:
        """`controls`: the loop (None: every command is `not_available`). talk_start,
        talk_stop and say work once the loop has them (PushToTalk, Announcer)."""
        self._controls = controls
        self._volume = volume
        self._talk = controls if isinstance(controls, PushToTalk) else None
        self._announcer = controls if isinstance(controls, Announcer) else None
        self._table: dict[str, _Command] = {
            "talk_start": _Command(frozenset(), self._talk_start),
            "talk_stop": _Command(frozenset(), self._talk_stop),
            "cancel": _Command(frozenset(), lambda _: self._need().cancel(by="command")),
            "reset_conversation": _Command(
                frozenset(), lambda _: self._need().reset_conversation(by="command")
            ),
            "volume": _Command(frozenset({"step", "db"}), self._volume_command),
            "mute": _Command(frozenset({"muted"}), self._mute),
            "say": _Command(frozenset({"text", "interrupt"}), self._say),
        }

    @property
    def available(self) -> list[str]:
        """The commands that would do something now (for the hello message)."""
        if self._controls is None:
            return []
        names = ["cancel", "reset_conversation", "volume", "mute"]
        if self._talk is not None:
            names += ["talk_start", "talk_stop"]
        if self._announcer is not None:
            names.append("say")
        return names

    def handle(self, message: str | bytes) -> Reply:
        """The reply to one message; never raises."""
        command: str | None = None
        request_id: Any = None
        try:
            body = self._parse(message)
            request_id = body.get("id")
            command, spec = self._lookup(body)
            extra = set(body) - spec.fields - {"command", "id"}
            if extra:
                name = sorted(extra)[0]
                raise Rejected("unknown_field", f"{command} takes no field {name!r}", name)
            spec.handle(body)
        except Rejected as exc:
            reply: Reply = {"kind": "command_error", "code": exc.code, "message": exc.message}
            if exc.field is not None:
                reply["field"] = exc.field
            return _tagged(reply, command, request_id)
        except Exception:
            # A control must never take the socket (or the loop) down with it.
            log.exception("command %s failed", command)
            reply = {"kind": "command_error", "code": "failed", "message": "the command failed"}
            return _tagged(reply, command, request_id)
        return _tagged({"kind": "ok"}, command, request_id)

    # -- parsing -------------------------------------------------------------------

    @staticmethod
    def _parse(message: str | bytes) -> dict[str, Any]:
        size = len(message) if isinstance(message, bytes) else len(message.encode())
        if size > MAX_MESSAGE_BYTES:
            raise Rejected("too_large", f"a message may hold at most {MAX_MESSAGE_BYTES} bytes")
        if isinstance(message, bytes):
            raise Rejected("bad_message", "commands are JSON text messages, not binary")
        try:
            body = json.loads(message)
        except ValueError as exc:
            raise Rejected("bad_json", f"not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise Rejected("bad_message", "a command is a JSON object")
        return body

    def _lookup(self, body: dict[str, Any]) -> tuple[str, _Command]:
        if "command" not in body:
            raise Rejected("missing_field", "no command given", "command")
        name = body["command"]
        if not isinstance(name, str) or name not in self._table:
            known = ", ".join(self._table)
            raise Rejected("unknown_command", f"{name!r} is no command ({known})", "command")
        return name, self._table[name]

    # -- the commands --------------------------------------------------------------

    def _need(self) -> CommandControls:
        if self._controls is None:
            raise Rejected("not_available", "the assistant is not running yet", "command")
        return self._controls

    def _talk_start(self, _: dict[str, Any]) -> None:
        self._need_talk("talk_start").talk_start()

    def _talk_stop(self, _: dict[str, Any]) -> None:
        self._need_talk("talk_stop").talk_stop()

    def _need_talk(self, command: str) -> PushToTalk:
        self._need()
        if self._talk is None:
            raise Rejected("not_available", f"{command} is not available yet", "command")
        return self._talk

    def _volume_command(self, body: dict[str, Any]) -> None:
        controls = self._need()
        if ("step" in body) == ("db" in body):
            raise Rejected("missing_field", "give either step or db", "step")
        if "step" in body:
            step = body["step"]
            if not _is_int(step) or not -MAX_VOLUME_STEPS <= step <= MAX_VOLUME_STEPS:
                raise Rejected(
                    "bad_field",
                    f"step must be a whole number from -{MAX_VOLUME_STEPS} to {MAX_VOLUME_STEPS}",
                    "step",
                )
            controls.volume_step(step)
            return
        db = body["db"]
        if not _is_number(db):
            raise Rejected("bad_field", "db must be a number", "db")
        if self._volume is None:
            raise Rejected("not_available", "setting a level needs the volume", "db")
        # The level moves in whole steps (assistant.volume): the nearest one to `db`.
        steps = round((db - self._volume.db) / self._volume.step_db)
        steps = max(-1000, min(1000, steps))
        if steps:
            controls.volume_step(steps)

    def _mute(self, body: dict[str, Any]) -> None:
        controls = self._need()
        if "muted" not in body:
            controls.toggle_mute()
            return
        if not isinstance(body["muted"], bool):
            raise Rejected("bad_field", "muted must be true or false", "muted")
        controls.set_muted(body["muted"])

    def _say(self, body: dict[str, Any]) -> None:
        text = body.get("text")
        if not isinstance(text, str) or not text.strip():
            raise Rejected("bad_field", "text must be a non-empty string", "text")
        if len(text) > MAX_SAY_CHARS:
            raise Rejected("bad_field", f"text may hold at most {MAX_SAY_CHARS} characters", "text")
        interrupt = body.get("interrupt", False)
        if not isinstance(interrupt, bool):
            raise Rejected("bad_field", "interrupt must be true or false", "interrupt")
        self._need()
        if self._announcer is None:
            raise Rejected("not_available", "say is not available yet", "command")
        self._announcer.say(text.strip(), interrupt=interrupt)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _tagged(reply: Reply, command: str | None, request_id: Any) -> Reply:
    if command is not None:
        reply["command"] = command
    if request_id is not None:
        reply["id"] = request_id
    return reply
