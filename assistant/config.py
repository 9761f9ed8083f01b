"""Loading and validating the configuration: TOML file, then environment overrides.

Every value is checked once, at start; a bad one raises ConfigError naming the
key, the value and the reason, and the CLI exits with status 2.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import logging
import os
import re
import stat
import tomllib
import types
from collections.abc import Callable, Mapping
from enum import Enum
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints
from urllib.parse import urlparse

from assistant.pin_checks import RULES as PIN_RULES
from assistant.pin_checks import pin_problem
from assistant.providers.openai_names import (
    OPENAI_FORMATS,
    OPENAI_STT_MODELS,
    OPENAI_TTS1_VOICES,
    OPENAI_TTS_MODELS,
    OPENAI_VOICES,
)
from assistant.settings import EchoMode, Secret, Settings, Speculate, Trigger
from assistant.states import STRICT_ENV

log = logging.getLogger(__name__)

ENV_PREFIX = "VOICE_ASSISTANT_"
"""`VOICE_ASSISTANT_<SECTION>_<KEY>` overrides any key, e.g.
VOICE_ASSISTANT_VAD_HANGOVER_MS=400. A variable under it that names no key stops the start:
the prefix is this program's own, so such a variable is a typo."""
LEGACY_ENV_PREFIX = "VA_"
"""The old prefix: still read (with one deprecation warning) where it names a key, and
otherwise ignored, since other programs use `VA_` too."""
NOT_CONFIG_VARIABLES = frozenset({STRICT_ENV, "VOICE_ASSISTANT_PORTAUDIO"})
"""Variables under ENV_PREFIX that are no config keys: the tests' strict state machine,
and hardware.portaudio_library's choice of PortAudio (named here, since the core does not
import hardware)."""
CREDENTIAL_SUFFIX = "-api-key"
"""systemd credentials (`LoadCredential=dify-api-key:...`) are read from
$CREDENTIALS_DIRECTORY/<section>-api-key."""
SECRET_WORDS = ("key", "token", "secret", "password", "passwd", "credential")
"""A setting or variable whose name holds one of these never has its value printed."""

ENV_ALIASES = {
    "DIFY_API_KEY": ("dify", "api_key"),
    "DIFY_API_KEY_FILE": ("dify", "api_key_file"),
    "DIFY_BASE_URL": ("dify", "base_url"),
    "OPENAI_API_KEY": ("openai", "api_key"),
    "OPENAI_API_KEY_FILE": ("openai", "api_key_file"),
    "OPENAI_BASE_URL": ("openai", "base_url"),
    "CONVAI_API_KEY": ("convai", "api_key"),
    "CONVAI_API_KEY_FILE": ("convai", "api_key_file"),
}
"""The usual variable names of each service, as aliases of their keys."""

KEYED_SECTIONS = ("dify", "openai", "convai")
"""Sections with `api_key` / `api_key_file`."""

STT_PROVIDERS = ("dify", "openai")
TTS_PROVIDERS = ("dify", "dify-stream", "openai", "convai")
SAMPLE_RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)
"""Device and file rates a setting may name."""


def looks_secret(name: str) -> bool:
    """Whether a setting's or variable's name suggests its value is a secret."""
    lowered = name.lower()
    return any(word in lowered for word in SECRET_WORDS)


class ConfigError(ValueError):
    """A setting that cannot work: `config error: <key> = <value>: <reason>`.

    The value is left out (`config error: <key>: <reason>`) when `show_value` is False (an
    unknown key: a misspelt `api_key` holds a key) or the key's name suggests a secret.
    """

    def __init__(self, key: str, value: object, reason: str, *, show_value: bool = True) -> None:
        if show_value and not looks_secret(key):
            super().__init__(f"config error: {key} = {value!r}: {reason}")
        else:
            super().__init__(f"config error: {key}: {reason}")
        self.key = key
        self.reason = reason


def _url(value: str) -> str | None:
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        return "must be an http:// or https:// URL"
    return None


def _between(lo: float, hi: float) -> Callable[[Any], str | None]:
    return lambda v: None if lo <= v <= hi else f"must be between {lo} and {hi}"


def _zero_or_between(lo: float, hi: float) -> Callable[[Any], str | None]:
    return lambda v: (
        None if v == 0 or lo <= v <= hi else f"must be 0 (use [http]'s) or {lo} to {hi}"
    )


def _one_of(*allowed: object) -> Callable[[Any], str | None]:
    return lambda v: None if v in allowed else f"must be one of {', '.join(map(str, allowed))}"


def _each_one_of(*allowed: str) -> Callable[[Any], str | None]:
    def check(values: tuple[str, ...]) -> str | None:
        bad = [v for v in values if v not in allowed]
        return f"{bad[0]!r} is not one of {', '.join(allowed)}" if bad else None

    return check


_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
"""What Dify allows as an input variable's name."""


def _question_variable(value: str) -> str | None:
    if value in ("auto", "") or _VARIABLE_NAME.fullmatch(value):
        return None
    return 'must be "auto", "" (query only) or an input variable\'s name (letters, digits, _)'


_RULES: dict[str, Callable[[Any], str | None]] = {
    "assistant.watchdog_s": lambda v: (
        None if v == 0 or 2 <= v <= 600 else "must be 0 (off) or 2 to 600"
    ),
    "audio.input_rate": _one_of(0, *SAMPLE_RATES),
    "audio.output_rate": _one_of(0, *SAMPLE_RATES),
    "audio.speaker_wav_rate": _one_of(*SAMPLE_RATES),
    "audio.period_ms": _between(5, 100),
    "audio.playback_buffer_s": _between(0.2, 30),
    "audio.device_timeout_s": _between(0.2, 60),
    "vad.aggressiveness": _between(0, 3),
    "vad.frame_ms": _one_of(10, 20, 30),
    "vad.preroll_ms": _between(0, 2000),
    "vad.hangover_ms": _between(100, 5000),
    "vad.start_ms": _between(10, 1000),
    "vad.min_speech_ms": _between(0, 5000),
    "vad.max_utterance_s": _between(1, 600),
    "vad.speculate_after_ms": _between(100, 5000),
    "button.pin": _between(0, 27),
    "button.bounce_ms": _between(0, 500),
    "button.long_press_s": _between(0.3, 30),
    "button.pin_factory": _one_of("", "mock", "lgpio", "rpigpio", "pigpio", "native"),
    **PIN_RULES,
    "http.connect_timeout_s": _between(0.1, 120),
    "http.read_timeout_s": _between(0.5, 600),
    "http.stt_timeout_s": _between(1, 600),
    "http.completion_timeout_s": _between(1, 3600),
    "http.tts_timeout_s": _between(1, 600),
    "http.tts_first_audio_timeout_s": _between(0.5, 600),
    "http.warm_up_timeout_s": _between(0.5, 120),
    "http.retries": _between(0, 5),
    "http.retry_backoff_s": _between(0, 10),
    "http.max_retry_after_s": _between(0, 60),
    "dify.base_url": _url,
    "dify.connect_timeout_s": _zero_or_between(0.1, 120),
    "dify.read_timeout_s": _zero_or_between(0.5, 600),
    "dify.response_mode": _one_of("streaming", "blocking"),
    "dify.app": _one_of("completion", "chat"),
    "dify.conversation_idle_s": _between(10, 86_400),
    "dify.question_variable": _question_variable,
    "providers.stt": _one_of(*STT_PROVIDERS),
    "providers.stt_fallback": _each_one_of(*STT_PROVIDERS),
    "providers.tts": _one_of(*TTS_PROVIDERS),
    "providers.tts_fallback": _each_one_of(*TTS_PROVIDERS),
    "openai.base_url": _url,
    "openai.connect_timeout_s": _zero_or_between(0.1, 120),
    "openai.read_timeout_s": _zero_or_between(0.5, 600),
    "openai.temperature": _between(0, 1),
    "openai.response_format": _one_of(*OPENAI_FORMATS),
    "openai.speed": _between(0.25, 4),
    "convai.base_url": _url,
    "convai.connect_timeout_s": _zero_or_between(0.1, 120),
    "convai.read_timeout_s": _zero_or_between(0.5, 600),
    "convai.encoding": _one_of("wav", "mp3"),
    "speech.min_sentence_chars": _between(0, 400),
    "speech.max_sentence_chars": _between(20, 4096),
    "speech.tts_prefetch": _between(1, 8),
    "devserver.port": _between(0, 65535),
    "events.port": _between(0, 65535),
    "events.host": lambda v: (
        None if v.strip() else "must name an address (127.0.0.1: this device only)"
    ),
    "assistant.follow_up_s": _between(0, 60),
    "assistant.listen_timeout_s": _between(1, 60),
    "wake.probability_cutoff": lambda v: (
        None if v == 0 or 0.5 <= v <= 0.99 else "must be 0 (each model's own) or 0.5 to 0.99"
    ),
    "wake.refractory_s": _between(0, 30),
    "echo.barge_in_min_speech_ms": _between(60, 2000),
    "echo.resume_after_s": _between(0.2, 10),
    "echo.reference_delay_ms": _between(0, 1000),
    "wake.listen_s": _between(1, 30),
    "audio.echo_tail_ms": _between(0, 2000),
    "earcons.thinking_cue_after_ms": _between(100, 10_000),
    "volume.default_db": _between(-60, 12),
    "volume.step_db": _between(0.5, 12),
    "volume.min_db": _between(-60, 0),
    "volume.max_db": _between(0, 12),
}


def _coerce(key: str, value: Any, hint: Any, from_env: bool) -> Any:
    """Turn a TOML or environment value into the field's type, or say why not.

    Environment values are always strings, so they are parsed; TOML values
    already carry their type, which must match.
    """
    if isinstance(hint, type) and issubclass(hint, Enum):
        try:
            return hint(value)
        except ValueError:
            raise ConfigError(
                key, value, f"must be one of {', '.join(m.value for m in hint)}"
            ) from None
    if hint is bool:
        if isinstance(value, bool):
            return value
        if from_env and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
        raise ConfigError(key, value, "must be true or false")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if from_env:
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(key, value, "must be a whole number")
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if from_env:
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(key, value, "must be a number")
    if hint is Secret:
        if isinstance(value, str):
            return Secret(value.strip())
        raise ConfigError(key, value, "must be a string")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(key, value, "must be a string")
    if get_origin(hint) is tuple:
        if from_env:
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise ConfigError(key, value, "must be a list of strings")
    if get_origin(hint) is dict:
        if isinstance(value, Mapping) and all(
            isinstance(k, str) and isinstance(v, str | int | float | bool) for k, v in value.items()
        ):
            return {k: str(v) for k, v in value.items()}
        raise ConfigError(key, value, "must be a table of string values")
    raise ConfigError(key, value, f"has an unsupported type {hint}")


def _did_you_mean(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _section_types() -> dict[str, type]:
    return {f.name: get_type_hints(Settings)[f.name] for f in dataclasses.fields(Settings)}


def _merge(raw: Mapping[str, Any], from_env: bool = False) -> dict[str, dict[str, Any]]:
    sections = _section_types()
    merged: dict[str, dict[str, Any]] = {}
    for name, table in raw.items():
        if name not in sections:
            raise ConfigError(
                name,
                table,
                "unknown section" + _did_you_mean(name, [*sections]),
                show_value=False,
            )
        if not isinstance(table, Mapping):
            raise ConfigError(name, table, "must be a table", show_value=False)
        hints = get_type_hints(sections[name])
        values: dict[str, Any] = {}
        for key, value in table.items():
            full = f"{name}.{key}"
            if key not in hints:
                raise ConfigError(
                    full, value, "unknown key" + _did_you_mean(key, [*hints]), show_value=False
                )
            values[key] = _coerce(full, value, _unwrap(hints[key]), from_env)
        merged[name] = values
    return merged


def _unwrap(hint: Any) -> Any:
    if isinstance(hint, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        return args[0]
    return hint


def _env_variables() -> dict[str, tuple[str, str]]:
    """Every override variable's name (without the prefix) -> (section, key)."""
    return {
        f"{section}_{key}".upper(): (section, key)
        for section, group in _section_types().items()
        for key in get_type_hints(group)
    }


def _env_overrides(environ: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """The overrides the environment gives, by section and key.

    Under ENV_PREFIX a variable that names no key stops the start (with the closest name);
    under the legacy `VA_` one it is someone else's and left alone, and one that does
    name a key still works, with a single deprecation warning for all of them.
    """
    known = _env_variables()
    out: dict[str, dict[str, str]] = {}
    for var, (section, key) in ENV_ALIASES.items():
        if environ.get(var):
            out.setdefault(section, {})[key] = environ[var]
    legacy: list[str] = []
    for var, value in environ.items():
        if var.startswith(LEGACY_ENV_PREFIX) and var[len(LEGACY_ENV_PREFIX) :] in known:
            name = var[len(LEGACY_ENV_PREFIX) :]
            if ENV_PREFIX + name not in environ:  # the new name wins
                section, key = known[name]
                out.setdefault(section, {})[key] = value
            legacy.append(var)
        elif var.startswith(ENV_PREFIX) and var not in NOT_CONFIG_VARIABLES:
            name = var[len(ENV_PREFIX) :]
            if name not in known:
                close = difflib.get_close_matches(name, list(known), n=1)
                hint = f" (did you mean {ENV_PREFIX}{close[0]}?)" if close else ""
                raise ConfigError(var, value, "names no config key" + hint, show_value=False)
            section, key = known[name]
            out.setdefault(section, {})[key] = value
    if legacy:
        log.warning(
            "the VA_ prefix is deprecated and will stop working: rename %s",
            ", ".join(f"{var} to {ENV_PREFIX}{var[len(LEGACY_ENV_PREFIX) :]}" for var in legacy),
        )
    return out


def _read_key_file(key: str, path_text: str) -> Secret:
    """The key in the file at `path_text`; `key` is the setting that named the file."""
    path = Path(path_text).expanduser()
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(key, path_text, f"cannot be read: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        # Others on the device could read the key, so it is no longer only ours.
        raise ConfigError(
            key,
            path_text,
            f"{path} can be read by other users: chmod 600 it (and check who has seen it)",
        )
    if not text:
        raise ConfigError(key, path_text, "is empty")
    return Secret(text)


def _with_keys(settings: Settings, environ: Mapping[str, str]) -> Settings:
    """Each service's key from its `api_key_file`, else from the systemd credential
    `<section>-api-key` when the service manager passed one, unless a key is given."""
    credentials = environ.get("CREDENTIALS_DIRECTORY", "")
    for section in KEYED_SECTIONS:
        group = getattr(settings, section)
        if group.api_key:
            continue
        if group.api_key_file:
            secret = _read_key_file(f"{section}.api_key_file", group.api_key_file)
        elif credentials and (Path(credentials) / f"{section}{CREDENTIAL_SUFFIX}").is_file():
            credential = str(Path(credentials) / f"{section}{CREDENTIAL_SUFFIX}")
            secret = _read_key_file(f"credential {section}{CREDENTIAL_SUFFIX}", credential)
        else:
            continue
        settings = dataclasses.replace(
            settings, **{section: dataclasses.replace(group, api_key=secret)}
        )
    return settings


def services_in_use(settings: Settings) -> tuple[str, ...]:
    """The services the configured providers talk to (Dify always writes the answers)."""
    providers = settings.providers
    named = {providers.stt, *providers.stt_fallback, providers.tts, *providers.tts_fallback}
    used = ["dify"]
    used += [service for service in ("openai", "convai") if service in named]
    return tuple(used)


def missing_key_error(settings: Settings) -> ConfigError | None:
    """What `run` says and stops with when it has no Dify key (it never answers from the
    bundled dev server unless told to: a device whose key went missing must say so)."""
    if settings.dify.api_key:
        return None
    return ConfigError(
        "dify.api_key",
        "",
        "no Dify API key. Give it one of three ways: the DIFY_API_KEY environment variable; "
        "a file only you can read, named by [dify] api_key_file or DIFY_API_KEY_FILE; or "
        "the systemd credential dify-api-key (systemd/install.sh sets it up). "
        "To try the assistant without an account: voice-assistant demo "
        "(or voice-assistant run --dev-server)",
        show_value=False,
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _warn_plain_http(settings: Settings) -> None:
    """One warning per service whose key would cross the network unencrypted."""
    for service in services_in_use(settings):
        group = getattr(settings, service)
        url = urlparse(group.base_url)
        if group.api_key and url.scheme == "http" and not _is_loopback(url.hostname or ""):
            log.warning(
                "%s.base_url is plain http:// to %s: the API key and every question cross "
                "the network unencrypted; use https:// unless that network is yours alone",
                service,
                url.hostname,
            )


def _check(settings: Settings) -> None:
    for section in dataclasses.fields(settings):
        group = getattr(settings, section.name)
        for f in dataclasses.fields(group):
            key = f"{section.name}.{f.name}"
            rule = _RULES.get(key)
            value = getattr(group, f.name)
            if rule is not None and (reason := rule(value)) is not None:
                raise ConfigError(key, value, reason)
    if settings.speech.min_sentence_chars >= settings.speech.max_sentence_chars:
        raise ConfigError(
            "speech.min_sentence_chars",
            settings.speech.min_sentence_chars,
            "must be below speech.max_sentence_chars",
        )
    _check_openai(settings)
    _check_speculation(settings)
    _check_question_variable(settings)
    _check_earcon_files(settings)
    _check_wake_words(settings)
    _check_echo(settings)
    _check_events(settings)
    if (problem := pin_problem(settings)) is not None:
        raise ConfigError(*problem)
    volume = settings.volume
    if not volume.min_db <= volume.default_db <= volume.max_db:
        raise ConfigError(
            "volume.default_db", volume.default_db, "must be between min_db and max_db"
        )
    if settings.vad.preroll_ms % settings.vad.frame_ms:
        raise ConfigError(
            "vad.preroll_ms", settings.vad.preroll_ms, "must be a multiple of frame_ms"
        )


def _check_speculation(settings: Settings) -> None:
    vad = settings.vad
    if vad.speculate is not Speculate.OFF and vad.speculate_after_ms >= vad.hangover_ms:
        # Not an error: a short hangover set on its own must keep working.
        log.warning(
            "vad.speculate_after_ms (%d) is not below vad.hangover_ms (%d): "
            "no speculative work will start",
            vad.speculate_after_ms,
            vad.hangover_ms,
        )
    if vad.speculate is Speculate.STT_COMPLETION and settings.dify.app == "chat":
        # Dify keeps a stopped chat message in the conversation: the model would hear
        # the discarded half question again in every later turn.
        raise ConfigError(
            "vad.speculate",
            vad.speculate.value,
            'needs dify.app = "completion" (a chat app would remember the discarded '
            'half question); use "stt"',
        )


EVENTS_TOKEN_MIN_CHARS = 16


def _check_events(settings: Settings) -> None:
    """The event stream takes commands for the microphone: off this device, only with a
    token, and one too long to guess."""
    events = settings.events
    token = events.token.reveal()
    if token and len(token) < EVENTS_TOKEN_MIN_CHARS:
        raise ConfigError(
            "events.token", "", f"must be at least {EVENTS_TOKEN_MIN_CHARS} characters"
        )
    if events.enabled and not token and not _is_loopback(events.host):
        raise ConfigError(
            "events.token",
            "",
            f"events.host = {events.host!r} is reachable from other machines: set a token "
            "([events] token or VOICE_ASSISTANT_EVENTS_TOKEN), or bind to 127.0.0.1",
        )


def _check_earcon_files(settings: Settings) -> None:
    """A configured earcon file must exist and hold sound: found now, not at the first beep."""
    from assistant.audio.earcons import Earcon, read_earcon_file
    from assistant.audio.wav import AudioFormatError

    for earcon in Earcon:
        path = settings.earcons.file_for(earcon.value)
        if path is None:
            continue
        key = f"earcons.{earcon.value}_file"
        if not path.is_file():
            raise ConfigError(key, str(path), "no such file")
        try:
            read_earcon_file(path, 16_000)
        except (AudioFormatError, OSError, ValueError) as exc:
            raise ConfigError(key, str(path), f"not a playable WAV file ({exc})") from None


def _check_wake_words(settings: Settings) -> None:
    """In wake word mode, every word a model of the installed package and every model file
    a usable manifest: found now, not when the device fails to hear anything."""
    if settings.assistant.trigger is not Trigger.WAKE_WORD:
        return
    from assistant.wake_word import builtin_words, manifest_problem

    wake = settings.wake
    if not wake.words and not wake.model_files:
        raise ConfigError("wake.words", [], "name at least one wake word, or set model_files")
    known = builtin_words()
    for word in wake.words:
        if not known:
            raise ConfigError(
                "wake.words",
                word,
                "pymicro-wakeword is not installed (pip install pymicro-wakeword)",
            )
        if word not in known:
            raise ConfigError(
                "wake.words",
                word,
                f"is not a model pymicro-wakeword ships: {', '.join(known)}"
                + _did_you_mean(word, list(known)),
            )
    for path in wake.model_files:
        if (problem := manifest_problem(Path(path).expanduser())) is not None:
            raise ConfigError("wake.model_files", path, problem)


def _check_echo(settings: Settings) -> None:
    """`echo.enabled = "on"` is a promise: without the canceller, say so at start."""
    from assistant.audio.echo_canceller import available

    if settings.echo.enabled is EchoMode.ON and not available():
        raise ConfigError(
            "echo.enabled",
            "on",
            "the echo canceller (pywebrtc-audio) is not installed: pip install pywebrtc-audio, "
            'or use "auto" (half-duplex without it)',
        )


def _check_question_variable(settings: Settings) -> None:
    dify = settings.dify
    if dify.question_variable in dify.inputs:
        raise ConfigError(
            "dify.question_variable",
            dify.question_variable,
            "is also given in [dify.inputs]: the question would replace that value; "
            "remove one of them",
        )


def _check_openai(settings: Settings) -> None:
    """Model and voice names are checked against OpenAI's lists only on OpenAI itself:
    compatible local servers name their models and voices as they like."""
    openai = settings.openai
    if urlparse(openai.base_url).hostname != "api.openai.com":
        return
    if openai.stt_model not in OPENAI_STT_MODELS:
        raise ConfigError(
            "openai.stt_model", openai.stt_model, f"must be one of {', '.join(OPENAI_STT_MODELS)}"
        )
    if openai.tts_model not in OPENAI_TTS_MODELS:
        raise ConfigError(
            "openai.tts_model", openai.tts_model, f"must be one of {', '.join(OPENAI_TTS_MODELS)}"
        )
    if openai.voice_id:
        return
    voices = OPENAI_TTS1_VOICES if openai.tts_model.startswith("tts-1") else OPENAI_VOICES
    if openai.voice not in voices:
        raise ConfigError(
            "openai.voice",
            openai.voice,
            f"{openai.tts_model} offers {', '.join(voices)}",
        )


def load_config(path: Path | None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read `path` (None = defaults only), apply the environment, validate."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError("--config", str(path), f"cannot be read: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("--config", str(path), f"is not valid TOML: {exc}") from None
    environ = os.environ if environ is None else environ
    merged = _merge(raw)
    env = _merge(_env_overrides(environ), from_env=True)
    for section, values in env.items():
        merged.setdefault(section, {}).update(values)

    sections = _section_types()
    built = {name: sections[name](**merged.get(name, {})) for name in sections}
    settings = _with_keys(Settings(**built), environ)
    _check(settings)
    _warn_plain_http(settings)
    return settings
