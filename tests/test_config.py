"""Config loading: defaults, the documented example, overrides and every kind of bad value."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from clean_env import clean_environment

from assistant.config import ConfigError, load_config
from assistant.settings import Secret, Settings, Trigger

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config" / "assistant.toml"


def test_example_config_documents_every_key_with_its_default() -> None:
    example = tomllib.loads(EXAMPLE.read_text())
    defaults = Settings()
    for section in dataclasses.fields(Settings):
        group = getattr(defaults, section.name)
        assert section.name in example, f"[{section.name}] missing from {EXAMPLE.name}"
        for f in dataclasses.fields(group):
            assert f.name in example[section.name], f"{section.name}.{f.name} not documented"
            documented = example[section.name][f.name]
            default = getattr(group, f.name)
            if isinstance(default, tuple):
                default = list(default)  # TOML has arrays, not tuples
            if isinstance(default, Secret):
                default = default.reveal()  # an empty key, documented as ""
            assert documented == default, f"{section.name}.{f.name} default"
    assert load_config(EXAMPLE, environ={}) == defaults


def test_environment_overrides_file(tmp_path: Path) -> None:
    path = tmp_path / "a.toml"
    path.write_text('[vad]\nhangover_ms = 700\n[assistant]\ntrigger = "push_to_talk"\n')
    settings = load_config(
        path,
        environ={
            "VOICE_ASSISTANT_VAD_HANGOVER_MS": "350",
            "DIFY_API_KEY": "app-abc",
            "DIFY_BASE_URL": "https://api.dify.ai/v1",
        },
    )
    assert settings.vad.hangover_ms == 350
    assert settings.assistant.trigger is Trigger.PUSH_TO_TALK
    assert settings.dify.api_key.reveal() == "app-abc"
    assert settings.dify.base_url == "https://api.dify.ai/v1"


def test_secret_never_shows() -> None:
    settings = load_config(None, environ={"DIFY_API_KEY": "app-very-secret"})
    for text in (repr(settings), str(settings.dify), f"{settings.dify.api_key}", repr(Secret("x"))):
        assert "very-secret" not in text
    error = ConfigError("dify.api_key", settings.dify.api_key.reveal(), "is refused")
    assert "very-secret" not in str(error)


def test_lists_from_environment_and_local_openai_names() -> None:
    settings = load_config(
        None,
        environ={
            "VOICE_ASSISTANT_PROVIDERS_TTS_FALLBACK": "openai, convai",
            "OPENAI_BASE_URL": "http://127.0.0.1:8000/v1",
            "VOICE_ASSISTANT_OPENAI_TTS_MODEL": "kokoro",
            "VOICE_ASSISTANT_OPENAI_VOICE": "af_sky",
        },
    )
    assert settings.providers.tts_fallback == ("openai", "convai")
    # A local OpenAI-compatible server names its own models and voices.
    assert (settings.openai.tts_model, settings.openai.voice) == ("kokoro", "af_sky")


def test_key_file(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("app-from-file\n")
    key.chmod(0o600)
    settings = load_config(None, environ={"DIFY_API_KEY_FILE": str(key)})
    assert settings.dify.api_key.reveal() == "app-from-file"
    with pytest.raises(ConfigError, match=r"dify\.api_key_file"):
        load_config(None, environ={"DIFY_API_KEY_FILE": str(tmp_path / "missing")})


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
@pytest.mark.parametrize(("variable", "key"), [
    ("DIFY_API_KEY_FILE", "dify.api_key_file"),
    ("OPENAI_API_KEY_FILE", "openai.api_key_file"),
    ("CONVAI_API_KEY_FILE", "convai.api_key_file"),
])  # fmt: skip
def test_a_key_file_others_can_read_stops_the_start(
    tmp_path: Path, variable: str, key: str, mode: int
) -> None:
    path = tmp_path / "key"
    path.write_text("app-shared-9e1f\n")
    path.chmod(mode)
    with pytest.raises(ConfigError) as caught:
        load_config(None, environ={variable: str(path)})
    assert caught.value.key == key  # the section whose file it is, not always dify's
    assert "chmod 600" in str(caught.value)
    assert "9e1f" not in str(caught.value)
    missing = {variable: str(tmp_path / "missing")}
    with pytest.raises(ConfigError, match=rf"{re.escape(key)}: cannot be read"):
        load_config(None, environ=missing)


def test_systemd_credential_gives_the_key(tmp_path: Path) -> None:
    """What LoadCredential=dify-api-key:... delivers: $CREDENTIALS_DIRECTORY/dify-api-key."""
    (tmp_path / "dify-api-key").write_text("app-from-credential\n")
    (tmp_path / "dify-api-key").chmod(0o400)
    environ = {"CREDENTIALS_DIRECTORY": str(tmp_path)}
    assert load_config(None, environ=environ).dify.api_key.reveal() == "app-from-credential"
    # A key given explicitly wins over the credential.
    both = {**environ, "DIFY_API_KEY": "app-explicit"}
    assert load_config(None, environ=both).dify.api_key.reveal() == "app-explicit"
    assert not load_config(None, environ=environ).openai.api_key  # none delivered


def test_defaults_to_difys_cloud_over_https() -> None:
    assert load_config(None, environ={}).dify.base_url == "https://api.dify.ai/v1"


@pytest.mark.parametrize(
    ("url", "warned"),
    [
        ("http://dify.example.com/v1", True),
        ("http://192.168.1.20/v1", True),
        ("https://dify.example.com/v1", False),
        ("http://127.0.0.1:8750/v1", False),
        ("http://localhost/v1", False),
        ("http://[::1]:5001/v1", False),
    ],
)
def test_a_key_over_plain_http_to_another_host_is_warned_about_once(
    caplog: pytest.LogCaptureFixture, url: str, warned: bool
) -> None:
    load_config(None, environ={"DIFY_API_KEY": "app-x", "DIFY_BASE_URL": url})
    warnings = [r for r in caplog.records if "plain http://" in r.getMessage()]
    assert len(warnings) == (1 if warned else 0)
    caplog.clear()
    load_config(None, environ={"DIFY_BASE_URL": url})  # no key: nothing crosses
    assert not [r for r in caplog.records if "plain http://" in r.getMessage()]


def test_unknown_override_variable_stops_with_the_name_meant() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, environ={"VOICE_ASSISTANT_VAD_HANGOVR_MS": "400"})
    assert caught.value.key == "VOICE_ASSISTANT_VAD_HANGOVR_MS"
    assert "did you mean VOICE_ASSISTANT_VAD_HANGOVER_MS?" in str(caught.value)
    assert "400" not in str(caught.value)
    # The program's own non-config variables under the prefix are no typos.
    load_config(None, environ={"VOICE_ASSISTANT_PORTAUDIO": "system"})


def test_the_old_prefix_still_works_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    environ = {
        "VA_VAD_HANGOVER_MS": "400",
        "VA_VAD_PREROLL_MS": "200",
        "VA_SOMETHING_ELSE": "another tool's",  # not ours: ignored, not fatal
    }
    settings = load_config(None, environ=environ)
    assert (settings.vad.hangover_ms, settings.vad.preroll_ms) == (400, 200)
    deprecations = [r.getMessage() for r in caplog.records if "deprecated" in r.getMessage()]
    assert len(deprecations) == 1
    assert "VOICE_ASSISTANT_VAD_HANGOVER_MS" in deprecations[0]
    assert "VA_SOMETHING_ELSE" not in deprecations[0]
    # The new name wins over the old.
    newer = {**environ, "VOICE_ASSISTANT_VAD_HANGOVER_MS": "600"}
    assert load_config(None, environ=newer).vad.hangover_ms == 600


@pytest.mark.parametrize(
    ("toml", "key", "reason"),
    [
        ("[vad]\nhangover_ms = 'long'", "vad.hangover_ms", "whole number"),
        ("[vad]\nhangover_ms = 50", "vad.hangover_ms", "between"),
        ("[vad]\nframe_ms = 25", "vad.frame_ms", "one of 10, 20, 30"),
        ("[vad]\nhangovr_ms = 400", "vad.hangovr_ms", "did you mean 'hangover_ms'"),
        ("[dify]\napikey = 'app-abc'", "dify.apikey", "did you mean 'api_key'"),
        ("[vda]\nhangover_ms = 400", "vda", "did you mean 'vad'"),
        (
            "[assistant]\ntrigger = 'clap'",
            "assistant.trigger",
            "hands_free, push_to_talk, toggle, wake_word",
        ),
        (
            "[assistant]\ntrigger = 'wake_word'\n[wake]\nwords = ['hey_nabu']",
            "wake.words",
            "not a model pymicro-wakeword ships",
        ),
        (
            "[assistant]\ntrigger = 'wake_word'\n[wake]\nwords = []",
            "wake.words",
            "at least one wake word",
        ),
        (
            "[assistant]\ntrigger = 'wake_word'\n[wake]\nmodel_files = ['/no/such.json']",
            "wake.model_files",
            "cannot be read",
        ),
        ("[wake]\nprobability_cutoff = 0.3", "wake.probability_cutoff", "0.5 to 0.99"),
        ("[wake]\nlisten_s = 0", "wake.listen_s", "between 1 and 30"),
        ("[dify]\nbase_url = 'api.dify.ai'", "dify.base_url", "http:// or https://"),
        ("[dify]\nresponse_mode = 'batch'", "dify.response_mode", "streaming, blocking"),
        ("[button]\npin = 40", "button.pin", "between 0 and 27"),
        ("[audio]\nperiod_ms = true", "audio.period_ms", "whole number"),
        ("[vad]\npreroll_ms = 310", "vad.preroll_ms", "multiple of frame_ms"),
        ("[speech]\nmin_sentence_chars = 500", "speech.min_sentence_chars", "between"),
        ("vad = 3", "vad", "must be a table"),
        ("[providers]\ntts = 'polly'", "providers.tts", "dify, dify-stream, openai, convai"),
        ("[providers]\ntts_fallback = ['openai', 'x']", "providers.tts_fallback", "'x' is not"),
        ("[providers]\nstt_fallback = 'openai'", "providers.stt_fallback", "list of strings"),
        ("[openai]\nspeed = 5.0", "openai.speed", "between 0.25 and 4"),
        ("[openai]\nresponse_format = 'ogg'", "openai.response_format", "mp3, opus"),
        ("[openai]\nvoice = 'verse'", "openai.voice", "tts-1 offers alloy"),
        ("[openai]\nstt_model = 'whisper-2'", "openai.stt_model", "whisper-1"),
        ("[convai]\nencoding = 'ogg'", "convai.encoding", "wav, mp3"),
        ("[dify]\napp = 'agent'", "dify.app", "completion, chat"),
        ("[dify]\nquestion_variable = 'the question'", "dify.question_variable", '"auto", ""'),
        (
            "[dify]\nquestion_variable = 'city'\n[dify.inputs]\ncity = 'Paris'",
            "dify.question_variable",
            "also given in [dify.inputs]",
        ),
        ("[vad\n", "--config", "not valid TOML"),
    ],
)
def test_bad_values_name_key_and_reason(tmp_path: Path, toml: str, key: str, reason: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert caught.value.key == key
    assert reason in str(caught.value)


def test_cli_exits_2_naming_key_value_and_reason(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[vad]\naggressiveness = 7\n")
    env = clean_environment()
    done = subprocess.run(
        [sys.executable, "-m", "assistant", "run", "--config", str(path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 2
    assert "vad.aggressiveness = 7: must be between 0 and 3" in done.stderr
