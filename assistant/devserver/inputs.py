"""The app's input variables (`user_input_form`) and Dify's checks of a request's `inputs`.

A current Text Generator app reads its prompt's variables from `inputs`; its question is
usually the `query` paragraph variable, and the top-level `query` field is legacy (an app
whose prompt uses the variable ignores it). Dify checks each form variable before anything
is generated (`BaseAppGenerator._validate_inputs`) and answers a ValueError as 400
`invalid_param`: a required variable missing, a text longer than its `max_length`, a
`select` value not among its options. Keys the form does not have are dropped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from assistant.devserver.errors import invalid_param

TEXT_KINDS = ("text-input", "paragraph")


@dataclass(frozen=True, slots=True)
class InputVariable:
    """One form variable, as the app's console defines it."""

    variable: str
    kind: str = "paragraph"
    """`text-input`, `paragraph` or `select`."""
    label: str = ""
    required: bool = False
    max_length: int = 0
    """0 = no limit (Dify's `if max_length and ...`)."""
    default: str = ""
    options: tuple[str, ...] = ()
    """A `select`'s values."""

    def as_json(self) -> dict[str, Any]:
        """The `user_input_form` item: `{kind: {label, variable, required, ...}}`."""
        control: dict[str, Any] = {
            "label": self.label or self.variable,
            "variable": self.variable,
            "required": self.required,
            "default": self.default,
        }
        if self.kind in TEXT_KINDS:
            control["max_length"] = self.max_length
        if self.kind == "select":
            control["options"] = list(self.options)
        return {self.kind: control}


QUESTION_FORM: tuple[InputVariable, ...] = (
    InputVariable("query", "paragraph", "Query", required=True, max_length=256),
    InputVariable("tone", "text-input", "Tone", required=False, max_length=48),
)
"""A current Text Generator's form: the question in a required `query` paragraph (what the
console's template makes), and an optional second variable."""


def form_json(form: Sequence[InputVariable]) -> list[dict[str, Any]]:
    return [variable.as_json() for variable in form]


def checked_inputs(form: Sequence[InputVariable], inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The inputs the app keeps (its form's variables), or 400 `invalid_param` as Dify says it.

    A missing or null required variable is refused as by every Dify version; an empty
    string too, as older versions refuse it (the stricter of the two).
    """
    kept: dict[str, Any] = {}
    for variable in form:
        name = variable.variable
        value = inputs.get(name)
        if value is None or value == "":
            if variable.required:
                raise invalid_param(f"{name} is required in input form")
            kept[name] = variable.default
            continue
        if not isinstance(value, str):
            raise invalid_param(f"(type '{variable.kind}') {name} in input form must be a string")
        if variable.kind == "select" and value not in variable.options:
            raise invalid_param(
                f"{name} in input form must be one of the following: {list(variable.options)}"
            )
        if variable.max_length and len(value) > variable.max_length:
            raise invalid_param(
                f"{name} in input form must be less than {variable.max_length} characters"
            )
        kept[name] = value
    return kept


def asked_question(form: Sequence[InputVariable], inputs: Mapping[str, Any], query: str) -> str:
    """What the app's prompt asks the model: the `query` variable when the form has one (the
    legacy field is then ignored, as a current app ignores it), else the legacy `query`."""
    if any(variable.variable == "query" for variable in form):
        return str(inputs.get("query") or "")
    return query
