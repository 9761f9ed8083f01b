"""The start-up check's logic on plain dicts: where the question goes, how it is cut, and
what each kind of app / configuration mismatch is found as (assistant/providers/dify_app.py).

The same checks over real HTTP against the dev server are in test_dify_app_check.py.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from assistant.providers.dify_app import (
    AppCheck,
    FormField,
    QuestionTarget,
    check_app,
    fit_to_length,
    form_fields,
    question_inputs,
    question_target,
)
from assistant.settings import DifySettings, ProviderSettings


def _form(*items: dict[str, Any]) -> dict[str, Any]:
    return {"user_input_form": list(items)}


def _text(
    variable: str, required: bool = False, max_length: int = 0, kind: str = "paragraph"
) -> dict[str, Any]:
    """A text control as Dify's /parameters gives it."""
    control = {"variable": variable, "label": variable.title(), "required": required}
    return {kind: {**control, "max_length": max_length, "default": ""}}


def _parameters(
    stt: bool = True, tts: bool = True, auto_play: bool = False, **extra: Any
) -> dict[str, Any]:
    return {
        "speech_to_text": {"enabled": stt},
        "text_to_speech": {"enabled": tts, "autoPlay": "enabled" if auto_play else "disabled"},
        "user_input_form": [],
        **extra,
    }


def _check(
    parameters: dict[str, Any],
    info: dict[str, Any] | None = None,
    providers: ProviderSettings | None = None,
    **dify: Any,
) -> AppCheck:
    return check_app(parameters, info, DifySettings(**dify), providers or ProviderSettings())


def _codes(check: AppCheck) -> list[tuple[str, bool]]:
    return [(f.code, f.fatal) for f in check.findings]


# -- the form and the question -------------------------------------------------------


def test_form_fields_are_read_from_one_key_items() -> None:
    parameters = _form(
        _text("query", required=True, max_length=256),
        {
            "select": {
                "variable": "lang",
                "label": "Language",
                "required": True,
                "options": ["en", "de"],
            }
        },
        {"text-input": {"variable": "tone", "max_length": 0}},
        {"paragraph": {"label": "no variable"}},
        {"a": {"variable": "x"}, "b": {"variable": "y"}},
        "junk",
    )
    assert form_fields(parameters) == [
        FormField("query", "paragraph", "Query", True, 256),
        FormField("lang", "select", "Language", True, None, ("en", "de")),
        FormField("tone", "text-input", "tone", False, None),
    ]
    assert form_fields({}) == []


@pytest.mark.parametrize(
    ("setting", "items", "given", "expected"),
    [
        ("", [_text("query", True)], {}, QuestionTarget()),
        ("auto", None, {}, QuestionTarget()),
        ("topic", None, {}, QuestionTarget("topic")),
        ("auto", [_text("query", False, 100), _text("q2", True)], {}, QuestionTarget("query", 100)),
        ("auto", [_text("question", True, 40), _text("tone")], {}, QuestionTarget("question", 40)),
        ("auto", [_text("a", True), _text("b", True)], {}, QuestionTarget()),
        ("auto", [_text("a", True), _text("b", True)], {"a": "x"}, QuestionTarget("b")),
        ("auto", [_text("query", True)], {"query": "fixed"}, QuestionTarget()),
        ("auto", [{"select": {"variable": "s", "required": True}}], {}, QuestionTarget()),
        ("auto", [], {}, QuestionTarget()),
        (
            "topic",
            [_text("topic", max_length=30, kind="text-input")],
            {},
            QuestionTarget("topic", 30),
        ),
    ],
)
def test_where_the_question_goes(
    setting: str,
    items: list[dict[str, Any]] | None,
    given: dict[str, str],
    expected: QuestionTarget,
) -> None:
    fields = None if items is None else form_fields(_form(*items))
    assert question_target(setting, fields, given) == expected


def test_question_inputs_keep_the_configured_ones() -> None:
    assert question_inputs(QuestionTarget(), "Hi?", {"city": "Paris"}) == {"city": "Paris"}
    target = QuestionTarget("query", 10)
    assert question_inputs(target, "Is it raining?", {"city": "Paris"}) == {
        "city": "Paris",
        "query": "Is it",
    }


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("How far is the Moon?", None, "How far is the Moon?"),
        ("How far is the Moon?", 20, "How far is the Moon?"),
        ("How far is the Moon?", 13, "How far is"),
        ("How far is the Moon?", 14, "How far is the"),
        ("How far is the Moon?", 10, "How far is"),
        ("Supercalifragilistic words", 9, "Supercali"),
    ],
)
def test_a_long_question_is_cut_at_a_word_boundary(
    text: str, limit: int | None, expected: str
) -> None:
    assert fit_to_length(text, limit) == expected
    assert limit is None or len(expected) <= limit


def test_the_cut_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, "assistant.providers.dify_app"):
        fit_to_length("How far is the Moon?", 13, "query")
    [record] = caplog.records
    assert record.getMessage() == (
        "the question has 20 characters, over the 13 the app allows in 'query': 10 are sent"
    )


# -- the app against the configuration ------------------------------------------------


def test_a_fitting_app_has_no_findings() -> None:
    check = _check(_parameters(**_form(_text("query", True))), {"mode": "completion"})
    assert check.findings == () and check.providers == ProviderSettings()


def test_speech_to_text_off_is_fatal_without_a_fallback() -> None:
    check = _check(_parameters(stt=False))
    [finding] = check.findings
    assert (finding.code, finding.setting, finding.value, finding.fatal) == (
        "stt_disabled",
        "providers.stt",
        "dify",
        True,
    )
    assert "Speech to Text turned off" in finding.message
    assert "providers.stt_fallback" in finding.message


def test_speech_to_text_off_uses_the_fallback_from_the_first_turn() -> None:
    providers = ProviderSettings(stt="dify", stt_fallback=("openai",))
    check = _check(_parameters(stt=False), providers=providers)
    assert _codes(check) == [("stt_disabled", False)]
    assert "stt uses openai" in check.findings[0].message
    assert (check.providers.stt, check.providers.stt_fallback) == ("openai", ())
    assert check.fatal == ()


def test_a_disabled_fallback_is_left_out() -> None:
    providers = ProviderSettings(stt="openai", stt_fallback=("dify",))
    check = _check(_parameters(stt=False), providers=providers)
    assert _codes(check) == [("stt_disabled", False)]
    assert check.findings[0].setting == "providers.stt_fallback"
    assert (check.providers.stt, check.providers.stt_fallback) == ("openai", ())


@pytest.mark.parametrize("tts", ["dify", "dify-stream"])
def test_text_to_speech_off_is_fatal_for_both_dify_voices(tts: str) -> None:
    check = _check(_parameters(tts=False, auto_play=True), providers=ProviderSettings(tts=tts))
    assert _codes(check) == [("tts_disabled", True)]
    assert check.findings[0].setting == "providers.tts"


def test_text_to_speech_off_leaves_no_dify_voice_to_fall_back_on() -> None:
    providers = ProviderSettings(tts="dify-stream", tts_fallback=("dify",))
    check = _check(_parameters(tts=False), providers=providers)
    assert _codes(check) == [("tts_disabled", True), ("tts_disabled", False)]


def test_auto_play_off_with_the_stream_voice() -> None:
    alone = _check(_parameters(), providers=ProviderSettings(tts="dify-stream"))
    assert _codes(alone) == [("auto_play_disabled", True)]
    assert "Auto Play off" in alone.findings[0].message
    assert '"dify"' in alone.findings[0].message
    providers = ProviderSettings(tts="dify-stream", tts_fallback=("dify", "openai"))
    helped = _check(_parameters(), providers=providers)
    assert _codes(helped) == [("auto_play_disabled", False)]
    assert (helped.providers.tts, helped.providers.tts_fallback) == ("dify", ("openai",))
    assert _check(_parameters(auto_play=True), providers=providers).findings == ()


def test_speech_switches_not_in_the_answer_are_not_judged() -> None:
    providers = ProviderSettings(tts="dify-stream")
    assert _check({}, providers=providers).findings == ()


@pytest.mark.parametrize(
    ("mode", "app", "setting"),
    [
        ("completion", "chat", "dify.app"),
        ("chat", "completion", "dify.app"),
        ("agent-chat", "completion", "dify.app"),
        ("advanced-chat", "completion", "dify.app"),
        ("agent", "completion", "dify.app"),
        ("workflow", "completion", "DIFY_API_KEY"),
        ("workflow", "chat", "DIFY_API_KEY"),
    ],
)
def test_an_app_of_the_other_type_is_fatal(mode: str, app: str, setting: str) -> None:
    [finding] = _check(_parameters(), {"mode": mode}, app=app).findings
    assert finding.fatal and finding.setting == setting
    assert finding.code == ("workflow_app" if mode == "workflow" else "wrong_app_type")


@pytest.mark.parametrize("mode", ["chat", "agent-chat", "advanced-chat", "agent"])
def test_chat_modes_fit_a_chat_config(mode: str) -> None:
    assert _check(_parameters(), {"mode": mode}, app="chat").findings == ()


def test_an_unknown_or_missing_mode_is_not_judged() -> None:
    assert _check(_parameters(), {"name": "old Dify"}, app="chat").findings == ()
    assert _check(_parameters(), None, app="chat").findings == ()
    assert _check(_parameters(), {"mode": "future-mode"}).findings == ()


def test_agents_answer_only_streaming() -> None:
    check = _check(_parameters(), {"mode": "agent-chat"}, app="chat", response_mode="blocking")
    [finding] = check.findings
    assert (finding.code, finding.setting, finding.value) == (
        "streaming_only",
        "dify.response_mode",
        "blocking",
    )


def test_required_inputs_nobody_fills() -> None:
    parameters = _parameters(
        user_input_form=[
            _text("query", True),
            {
                "select": {
                    "variable": "city",
                    "label": "City",
                    "required": True,
                    "options": ["Paris", "Rome"],
                }
            },
            _text("tone"),
        ]
    )
    [finding] = _check(parameters).findings
    assert (finding.code, finding.setting, finding.value) == ("missing_inputs", "dify.inputs", {})
    assert "city ('City')" in finding.message and "query" not in finding.message
    assert _check(parameters, inputs={"city": "Rome"}).findings == ()
    # The question fills `query` only while it is the question's variable.
    [finding] = _check(parameters, inputs={"city": "Rome"}, question_variable="").findings
    assert "query ('Query')" in finding.message


def test_several_required_text_variables_ask_for_the_question_variable() -> None:
    parameters = _parameters(user_input_form=[_text("a", True), _text("b", True)])
    [finding] = _check(parameters).findings
    assert finding.code == "missing_inputs"
    assert "dify.question_variable" in finding.message
    assert _check(parameters, question_variable="a", inputs={"b": "x"}).findings == ()


def test_question_variable_must_be_a_text_variable_of_the_app() -> None:
    parameters = _parameters(
        user_input_form=[_text("query"), {"select": {"variable": "lang", "options": ["en"]}}]
    )
    [unknown] = _check(parameters, question_variable="topic").findings
    assert (unknown.code, unknown.setting, unknown.value) == (
        "unknown_question_variable",
        "dify.question_variable",
        "topic",
    )
    assert "its variables: query, lang" in unknown.message
    [not_text] = _check(parameters, question_variable="lang").findings
    assert not_text.code == "question_not_text"


def test_configured_inputs_dify_would_refuse() -> None:
    parameters = _parameters(
        user_input_form=[
            _text("tone", max_length=5, kind="text-input"),
            {"select": {"variable": "lang", "options": ["en", "de"]}},
        ]
    )
    check = _check(parameters, inputs={"tone": "cheerful", "lang": "fr", "other": "x"})
    assert [(f.code, f.setting) for f in check.findings] == [
        ("input_too_long", "dify.inputs.tone"),
        ("input_not_an_option", "dify.inputs.lang"),
    ]
