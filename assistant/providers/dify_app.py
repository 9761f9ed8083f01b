"""What a Dify app is, read from its `GET /parameters` and `GET /info`, and whether the
configuration fits it: pure functions, run once at start (and `question_target` again
whenever /parameters is read).

Where the question goes: a Text Generator app's prompt reads its variables from `inputs`
(keys from `user_input_form`); the top-level `query` is a legacy field that a newer app's
prompt may ignore, and a required variable left out is refused with 400 `invalid_param`
"... is required in input form". So the transcript is sent in `query` and in the one input
variable chosen here (`dify.question_variable`), cut to that variable's `max_length`.

What would fail on every turn is found here instead, once: an app mode that the configured
endpoint refuses (`/completion-messages` answers 400 `app_unavailable` to a chat app,
`/chat-messages` answers 400 `not_chat_app` to a Text Generator), required variables
nobody fills, speech-to-text or text-to-speech turned off in the app while a stage uses it.
A stage whose Dify provider is turned off falls back to the configured fallbacks from the
first turn; with none, the finding is fatal.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from assistant.settings import DifySettings, ProviderSettings

log = logging.getLogger(__name__)

AUTO = "auto"
"""`dify.question_variable`: choose from the app's form."""
LEGACY_QUERY = "query"
"""The variable name Dify's own Text Generator template gives the question."""
TEXT_KINDS = ("text-input", "paragraph")
"""Form controls that take free text: the only ones a transcript can fill."""
MODE_NAMES = {
    "completion": "Text Generator",
    "chat": "Chatbot",
    "agent-chat": "Agent",
    "advanced-chat": "Chatflow",
    "agent": "New Agent",
    "workflow": "Workflow",
}
"""GET /info `mode` → the app type as Dify's console names it."""
CHAT_MODES = ("chat", "agent-chat", "advanced-chat", "agent")
"""Modes answered on /chat-messages (`dify.app = "chat"`)."""
STREAMING_ONLY_MODES = ("agent-chat", "agent")
"""Agent apps refuse `response_mode: blocking` (400 `invalid_param` / `bad_request`)."""


@dataclass(frozen=True, slots=True)
class FormField:
    """One variable of the app's `user_input_form`."""

    variable: str
    kind: str
    """The control: `text-input`, `paragraph`, `select`, `number`, `file`, ..."""
    label: str
    required: bool
    max_length: int | None = None
    """Longest value Dify accepts (text controls); None = no limit."""
    options: tuple[str, ...] = ()
    """A `select`'s allowed values."""


@dataclass(frozen=True, slots=True)
class QuestionTarget:
    """Where the transcript goes besides `query`."""

    variable: str | None = None
    """The input variable it fills; None = `query` only."""
    max_length: int | None = None
    """That variable's limit in characters; None = none known."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One way the app and the configuration do not fit."""

    code: str
    """In one word: `stt_disabled`, `tts_disabled`, `auto_play_disabled`, `wrong_app_type`,
    `workflow_app`, `streaming_only`, `unknown_question_variable`, `question_not_text`,
    `missing_inputs`, `input_too_long`, `input_not_an_option`."""
    setting: str
    """The setting to change, e.g. `providers.stt` or `dify.app`."""
    value: object
    """Its value now."""
    message: str
    """What is wrong and what to do, in one line."""
    fatal: bool = True
    """False: worked around (a fallback provider is used instead)."""


@dataclass(frozen=True, slots=True)
class AppCheck:
    findings: tuple[Finding, ...]
    providers: ProviderSettings
    """The providers to run with: a Dify provider the app has turned off is left out."""

    @property
    def fatal(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.fatal)


def form_fields(parameters: Mapping[str, Any]) -> list[FormField]:
    """The variables of `user_input_form`: items of one key, the control, e.g.
    `{"paragraph": {"variable": "query", "required": true, "max_length": 256}}`."""
    fields = []
    for item in parameters.get("user_input_form") or ():
        if not isinstance(item, dict) or len(item) != 1:
            continue
        ((kind, spec),) = item.items()
        if not isinstance(spec, dict) or not isinstance(spec.get("variable"), str):
            continue
        limit = spec.get("max_length")
        options = spec.get("options")
        fields.append(
            FormField(
                variable=spec["variable"],
                kind=str(kind),
                label=str(spec.get("label") or spec["variable"]),
                required=spec.get("required") is True,
                # Dify tests `if max_length and len(value) > max_length`: 0 is no limit.
                max_length=limit if isinstance(limit, int) and limit > 0 else None,
                options=tuple(str(o) for o in options) if isinstance(options, list) else (),
            )
        )
    return fields


def question_target(
    setting: str, fields: Sequence[FormField] | None, given: Mapping[str, str]
) -> QuestionTarget:
    """Where the transcript goes, for `dify.question_variable` = `setting`, the app's form
    (None: not read yet) and the `[dify.inputs]` the config gives."""
    if not setting:
        return QuestionTarget()
    if fields is None:
        return QuestionTarget(None if setting == AUTO else setting)
    if setting == AUTO:
        chosen = _auto_field(fields, given)
        return QuestionTarget(chosen.variable, chosen.max_length) if chosen else QuestionTarget()
    field = next((f for f in fields if f.variable == setting), None)
    limit = field.max_length if field is not None and field.kind in TEXT_KINDS else None
    return QuestionTarget(setting, limit)


def _auto_field(fields: Sequence[FormField], given: Mapping[str, str]) -> FormField | None:
    """`query` if the form has it, else the only required text variable; the config's
    own `[dify.inputs]` are never overwritten."""
    free = [f for f in fields if f.kind in TEXT_KINDS and f.variable not in given]
    named = [f for f in free if f.variable == LEGACY_QUERY]
    if named:
        return named[0]
    required = [f for f in free if f.required]
    return required[0] if len(required) == 1 else None


def question_inputs(
    target: QuestionTarget, transcript: str, given: Mapping[str, str]
) -> dict[str, str]:
    """The request's `inputs`: the config's, plus the transcript in its variable, cut to
    the variable's `max_length` (Dify refuses a longer value with 400)."""
    inputs = dict(given)
    if target.variable:
        inputs[target.variable] = fit_to_length(transcript, target.max_length, target.variable)
    return inputs


def fit_to_length(text: str, max_length: int | None, variable: str = "") -> str:
    """`text`, or its longest head of at most `max_length` characters ending at a word
    boundary (mid-word only for a single longer word); the cut is logged."""
    if max_length is None or len(text) <= max_length:
        return text
    head = text[:max_length]
    if not text[max_length].isspace():
        last_space = re.search(r"\s\S*$", head)
        if last_space is not None and head[: last_space.start()].strip():
            head = head[: last_space.start()]
    cut = head.rstrip()
    log.info(
        "the question has %d characters, over the %d the app allows in %r: %d are sent",
        len(text),
        max_length,
        variable,
        len(cut),
    )
    return cut


def app_mode(info: Mapping[str, Any] | None) -> str | None:
    """GET /info's `mode`, None when unknown (older Dify sends none)."""
    mode = info.get("mode") if info is not None else None
    return mode if isinstance(mode, str) and mode else None


def check_app(
    parameters: Mapping[str, Any],
    info: Mapping[str, Any] | None,
    dify: DifySettings,
    providers: ProviderSettings,
) -> AppCheck:
    """Everything about the app that would make every turn fail, and the providers to use."""
    findings = _mode_findings(app_mode(info), dify)
    findings += _form_findings(parameters, dify)
    stt_chain, stt_findings = _usable_chain(
        "stt", (providers.stt, *providers.stt_fallback), _speech_to_text_off(parameters)
    )
    tts_chain, tts_findings = _usable_chain(
        "tts", (providers.tts, *providers.tts_fallback), _text_to_speech_off(parameters)
    )
    findings += stt_findings + tts_findings
    usable = providers
    if stt_chain and tts_chain:
        usable = dataclasses.replace(
            providers,
            stt=stt_chain[0],
            stt_fallback=stt_chain[1:],
            tts=tts_chain[0],
            tts_fallback=tts_chain[1:],
        )
    return AppCheck(tuple(findings), usable)


def _mode_findings(mode: str | None, dify: DifySettings) -> list[Finding]:
    if mode is None:
        return []
    name = MODE_NAMES.get(mode, mode)
    if mode == "workflow":
        reason = (
            "the key belongs to a Workflow app, which answers neither /completion-messages nor "
            "/chat-messages: use the key of a Text Generator, Chatbot, Agent or Chatflow app"
        )
        return [Finding("workflow_app", "DIFY_API_KEY", "", reason)]
    if dify.app == "completion" and mode in CHAT_MODES:
        reason = (
            f"the key belongs to a {name} app (mode {mode!r}), which Dify answers only on "
            '/chat-messages (/completion-messages: 400 app_unavailable): set dify.app = "chat"'
        )
        return [Finding("wrong_app_type", "dify.app", dify.app, reason)]
    if dify.app == "chat" and mode == "completion":
        reason = (
            "the key belongs to a Text Generator app (mode 'completion'), which Dify answers only "
            "on /completion-messages (/chat-messages: 400 not_chat_app): "
            'set dify.app = "completion"'
        )
        return [Finding("wrong_app_type", "dify.app", dify.app, reason)]
    if dify.app == "chat" and mode in STREAMING_ONLY_MODES and dify.response_mode == "blocking":
        reason = f'a {name} app answers only streaming requests: set it to "streaming"'
        return [Finding("streaming_only", "dify.response_mode", dify.response_mode, reason)]
    return []


def _form_findings(parameters: Mapping[str, Any], dify: DifySettings) -> list[Finding]:
    if not isinstance(parameters.get("user_input_form"), list):
        return []  # no form in the answer: nothing to check against
    fields = form_fields(parameters)
    by_name = {f.variable: f for f in fields}
    findings = []
    chosen = dify.question_variable
    if chosen not in ("", AUTO):
        field = by_name.get(chosen)
        if field is None:
            names = ", ".join(by_name) or "none"
            findings.append(
                Finding(
                    "unknown_question_variable",
                    "dify.question_variable",
                    chosen,
                    f"the app has no input variable {chosen!r} (its variables: {names}): name "
                    'one of them, or use "auto", or "" for query only',
                )
            )
        elif field.kind not in TEXT_KINDS:
            findings.append(
                Finding(
                    "question_not_text",
                    "dify.question_variable",
                    chosen,
                    f"{chosen!r} is a {field.kind} variable; the question needs a text-input "
                    "or paragraph one",
                )
            )
    target = question_target(chosen, fields, dify.inputs)
    findings += _given_input_findings(by_name, dify.inputs)
    missing = [
        f
        for f in fields
        if f.required and f.variable not in dify.inputs and f.variable != target.variable
    ]
    if missing:
        listed = ", ".join(f"{f.variable} ({f.label!r})" for f in missing)
        hint = ""
        if chosen == AUTO and sum(f.kind in TEXT_KINDS for f in missing) > 1:
            hint = ", and name the question's one in dify.question_variable"
        findings.append(
            Finding(
                "missing_inputs",
                "dify.inputs",
                dict(dify.inputs),
                f"the app requires input variables that neither [dify.inputs] nor the question "
                f"fills: {listed}; give their values in [dify.inputs]{hint}",
            )
        )
    return findings


def _given_input_findings(
    by_name: Mapping[str, FormField], given: Mapping[str, str]
) -> list[Finding]:
    """Configured values that Dify would refuse with 400 on every request."""
    findings = []
    for name, value in given.items():
        field = by_name.get(name)
        if field is None:
            continue  # Dify drops inputs its form does not have
        if field.kind == "select" and field.options and value not in field.options:
            findings.append(
                Finding(
                    "input_not_an_option",
                    f"dify.inputs.{name}",
                    value,
                    f"must be one of the app's options: {', '.join(field.options)}",
                )
            )
        elif field.max_length is not None and len(value) > field.max_length:
            findings.append(
                Finding(
                    "input_too_long",
                    f"dify.inputs.{name}",
                    value,
                    f"the app allows at most {field.max_length} characters in {name!r}",
                )
            )
    return findings


Off = dict[str, tuple[str, str]]
"""Provider name → (finding code, why it cannot work with this app)."""


def _speech_to_text_off(parameters: Mapping[str, Any]) -> Off:
    """The speech-to-text providers the app has turned off."""
    stt = parameters.get("speech_to_text")
    if isinstance(stt, dict) and stt.get("enabled") is False:
        why = "the Dify app has Speech to Text turned off (Features > Speech to Text)"
        return {"dify": ("stt_disabled", why)}
    return {}


def _text_to_speech_off(parameters: Mapping[str, Any]) -> Off:
    """The text-to-speech providers the app has turned off."""
    tts = parameters.get("text_to_speech")
    if not isinstance(tts, dict):
        return {}
    if tts.get("enabled") is False:
        why = "the Dify app has Text to Speech turned off (Features > Text to Speech)"
        return {"dify": ("tts_disabled", why), "dify-stream": ("tts_disabled", why)}
    if tts.get("autoPlay") != "enabled":
        # Dify adds tts_message events to answers only with autoPlay "enabled".
        why = (
            "the Dify app's Text to Speech has Auto Play off (Features > Text to Speech), so "
            "its answers carry no speech"
        )
        return {"dify-stream": ("auto_play_disabled", why)}
    return {}


def _usable_chain(
    stage: str, chain: tuple[str, ...], off: Off
) -> tuple[tuple[str, ...], list[Finding]]:
    """`chain` without the providers `off`, and a finding for each one left out."""
    usable = tuple(name for name in chain if name not in off)
    findings = []
    for position, name in enumerate(chain):
        if name not in off:
            continue
        if position > 0:
            setting, fatal = f"providers.{stage}_fallback", False
            outcome = f"{name} is left out of providers.{stage}_fallback"
        elif usable:
            setting, fatal = f"providers.{stage}", False
            outcome = f"{stage} uses {usable[0]} (providers.{stage}_fallback) from the first turn"
        else:
            setting, fatal = f"providers.{stage}", True
            other = ' (e.g. "dify")' if name == "dify-stream" and "dify" not in off else ""
            outcome = (
                f"turn it on in the app, or set providers.{stage} to another service{other}, "
                f"or list one in providers.{stage}_fallback"
            )
        code, why = off[name]
        value = chain[1:] if position > 0 else name
        findings.append(Finding(code, setting, value, f"{why}: {outcome}", fatal))
    return usable, findings
